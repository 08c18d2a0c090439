//! The analog crossbar: conductance mapping of each layer's quanta as differential pairs,
//! device variation (programming noise, stuck-at faults, drift with global compensation,
//! read noise), periphery (input DAC, per-tile ADC, output noise) and Monte-Carlo evaluation.
//!
//! Models follow IBM aihwkit's inference tiles (Rasch et al., "A flexible and fast PyTorch
//! toolkit for simulating training and inference on analog crossbar arrays", AICAS 2021)
//! and the PCM drift / global drift compensation of Joshi et al., Nat. Commun. 11, 2473
//! (2020); the mapping w = alpha·(G+ − G−) with zero at (g_min, g_min) is the usual
//! differential-pair scheme.
pub mod cost;
pub mod device;
pub mod export;
pub mod fused;
pub mod montecarlo;
pub mod path;
pub mod periphery;
pub mod sensitivity;
pub mod tiling;
pub mod writeverify;
