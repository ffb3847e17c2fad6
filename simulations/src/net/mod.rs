//! The in-memory network (filled in shortly).
