//! "8-level vs 32-bit at a glance" (issue 20): what a comparison grid shows its user. The
//! grid (`compare::run_grid`) hands its cells here as [`points::GridPoint`]s; this module
//! turns them into TensorBoard sub-runs and tags (`tb_grid`), the Markdown and terminal
//! tables with a Δ-vs-fp32 column (`table`), progress lines with an ETA (`progress`), PNG
//! charts with an explicit layout (`plot`, `layout`) and captioned sample pictures composed
//! side by side across networks (`picture`, `samples`).
//!
//! Error bars are 95% confidence intervals of the mean with Student's t (Montgomery &
//! Runger, "Applied Statistics and Probability for Engineers", ch. 8); they are not shown
//! below [`points::MIN_CI_TRIALS`] trials, where t with 1 degree of freedom (12.7) makes them
//! meaningless. Colours are the Okabe-Ito colour-blind-safe palette (Okabe & Ito, "Color
//! Universal Design", 2008).
pub mod charts;
pub mod grid;
pub mod layout;
pub mod picture;
pub mod plot;
pub mod points;
pub mod progress;
pub mod samples;
pub mod table;
pub mod tb_grid;
