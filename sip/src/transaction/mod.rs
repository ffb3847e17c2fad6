//! The transaction layer (RFC 3261 section 17).
