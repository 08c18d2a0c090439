//! Vision tasks: losses, metrics, training and evaluation loops.
pub mod classify;
pub mod quantize;
