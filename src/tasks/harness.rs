//! What fine-tuning and the comparison grid need from a vision task: build a network from a
//! checkpoint, draw training batches and their loss, and score a network on the test set.
//! Classification, detection and segmentation each implement it, so quantization, the
//! crossbar and the comparison grid apply to every task unchanged.
use crate::config::Config;
use crate::error::Result;
use crate::glance::picture::Picture;
use crate::nets::Network;
use std::path::Path;
use tch::{Device, Tensor};

pub trait TaskHarness {
    /// Task folder name under `runs/` (`classify`, `detect`, `segment`).
    fn task(&self) -> &'static str;

    /// The primary metric's name for tables (e.g. `top-1 accuracy (%)`, `mAP@0.5 (%)`).
    fn metric_name(&self) -> &'static str;

    /// A network of the config's architecture with the checkpoint loaded strictly.
    fn load_network(&self, cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network>;

    /// Number of training samples (batches are index tensors into them).
    fn train_len(&self) -> i64;

    /// The training loss of one batch of sample indices, in train mode (augmentation is the
    /// task's business; draws come from the global generator, seeded per epoch by the caller).
    fn batch_loss(&self, net: &Network, idx: &Tensor) -> Tensor;

    /// The primary metric (a fraction, higher is better) on the task's evaluation set; an
    /// error when the set is empty or the network's output is not finite.
    fn evaluate(&self, net: &Network) -> Result<f64>;

    /// Number of evaluation samples.
    fn eval_len(&self) -> i64;

    /// Captioned pictures shared by every network for the first few evaluation samples
    /// (the input and the ground truth); the grid shows them left of the predictions.
    fn sample_inputs(&self) -> Vec<Vec<(String, Picture)>> {
        Vec::new()
    }

    /// This network's predictions drawn on those samples (boxes, coloured masks), one
    /// picture per sample; tasks without a picture to show keep the default.
    fn sample_pictures(&self, _net: &Network) -> Vec<Picture> {
        Vec::new()
    }
}
