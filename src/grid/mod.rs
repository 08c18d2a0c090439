//! The method comparison grid (`gqcim compare`, the main job of `make classify`): fp32
//! against each quantizer at each level count, post-training or after straight-through
//! fine-tuning with or without device noise, each evaluated on the crossbar under a sweep of
//! programming noise with Monte-Carlo trials.
pub mod compare;
pub mod outputs;
pub mod sensitivity;
pub mod unit;
pub use compare::{compare_command, plan_grid, run_grid, run_grid_steps, GridRun};
pub use outputs::{write_outputs, Cell};
pub use unit::{run_cell, UnitDone};
