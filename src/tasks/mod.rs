//! Vision tasks: losses, metrics, training and evaluation loops.
pub mod classify;
pub mod detect;
pub mod detect_metrics;
pub mod harness;
pub mod quantize;
pub mod seg_metrics;
pub mod segment;
