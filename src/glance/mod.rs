//! "8-level vs 32-bit at a glance" (issue 20): what a comparison grid shows its user. Merge
//! hands the merged cells here as [`points::GridPoint`]s; this module turns them into
//! TensorBoard sub-runs and tags (`tb_grid`), the Markdown and terminal tables with a
//! Δ-vs-fp32 column (`table`), PNG charts with an explicit layout (`plot`, `layout`,
//! `charts`) and captioned sample pictures composed side by side across networks
//! (`picture`, `samples`); units log their deployed network (`grid`) and the grid prints
//! progress lines with an ETA (`progress`).
//!
//! Error bars are 95% confidence intervals of the mean with Student's t (Montgomery &
//! Runger, "Applied Statistics and Probability for Engineers", ch. 8), over fine-tuning
//! seeds when there are several, else over Monte-Carlo trials (`sweep::stats`); they are not
//! shown below [`points::MIN_CI_TRIALS`] replications, where t with 1 degree of freedom
//! (12.7) makes them meaningless. Colours are the Okabe-Ito colour-blind-safe palette (Okabe
//! & Ito, "Color Universal Design", 2008).
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
