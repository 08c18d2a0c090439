//! gqcim: generalized quantization and analog crossbar (CACIM) deployment of vision networks
//! on libtorch. See DESIGN notes in the README for the weight-path architecture.
pub mod analog;
pub mod bench;
pub mod checkpoint;
pub mod checkpoint_set;
pub mod config;
pub mod costreport;
pub mod data;
pub mod deploy;
pub mod device;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod glance;
pub mod grid;
pub mod kernels;
pub mod memory;
pub mod nets;
pub mod quant;
pub mod report;
pub mod run;
pub mod sgd;
pub mod sweep;
pub mod tasks;
pub mod tb;
pub mod tb_events;
