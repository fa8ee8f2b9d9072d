//! (to be written)
mod model;
pub use model::*;
