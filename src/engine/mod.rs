//! The task-agnostic engine: the `Task` trait every vision task implements, and what is
//! written once against it — the training loop, its schedule and its progress display.
//! Nothing here names a concrete task (`tasks/` depends on the engine, never the reverse).
pub mod evaluate;
pub mod finetune;
pub mod progress;
pub mod quantize;
pub mod schedule;
pub mod task;
pub mod train;
