//! Weight quantizers: generalized (Lloyd-Max) quantization and uniform / LSQ baselines.
pub mod exact;
pub mod gq;
pub mod learn;
pub mod levels;
pub mod lloyd;
pub mod lsq;
pub mod uniform;

pub use exact::{
    exact_kmeans_1d, exact_kmeans_1d_binned, exact_kmeans_1d_full, exact_kmeans_1d_sorted,
};
pub use levels::{
    quantize_to_levels, sqnr_db, squared_error, thresholds, SortedWeights, MAX_LEVELS,
};
pub use lloyd::{
    lloyd_max, lloyd_max_per_channel, lloyd_max_sorted, lloyd_max_with_init, LloydOptions,
    LloydResult,
};
pub use uniform::{uniform_minmax, uniform_mse, uniform_mse_sorted};
pub mod deploy;
pub mod noise_aware;
pub mod paths;
pub mod radix;
