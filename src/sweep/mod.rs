//! Sweeps that scale out: a comparison grid as a plan of independent, resumable units.
//!
//! `plan` expands `compare` into units — one network each: (method, N, fine-tuning mode,
//! fine-tuning seed), with its σ × Monte-Carlo evaluations inside — and records everything
//! the results depend on (commit, resolved config, checkpoint sha256, thread count). `cell`
//! runs units and writes each unit's result atomically, last; a unit whose result exists is
//! skipped, so a grid killed at any moment resumes with the same command. `merge` orders the
//! cells by plan index and writes the tables. The same three steps run in one process
//! (`gqcim compare`), on local cores, or as a Slurm job array (`make classify-slurm`, one
//! array task per unit; the design of snakemake/submitit-style "one result file per task").
//! `cache` stores each fine-tuned network once, keyed by what determines it, so a grid
//! re-run with more σ values or trials does not fine-tune again; `stats` aggregates seeds
//! and trials and pairs methods.
pub mod cache;
pub mod cell;
pub mod merge;
pub mod plan;
pub mod stats;

pub use cell::{read_cell, write_cell, CellFile};
pub use merge::{array_spec, merge_run, missing_units};
pub use plan::{Plan, Unit};
