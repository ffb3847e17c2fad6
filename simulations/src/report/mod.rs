//! Outputs of a run (filled in shortly).

mod model;

pub use model::*;
