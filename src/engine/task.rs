//! What the engine needs from a vision task. Classification, detection and segmentation each
//! implement `Task` (tasks/<name>/), so training, fine-tuning, quantization, the crossbar and
//! the comparison grid are written once and apply to every task unchanged. Object safe: the
//! grid and the CLI hold a `Box<dyn Task>`.
use crate::config::{Config, TrainConfig};
use crate::error::Result;
use crate::glance::picture::Picture;
use crate::nets::Network;
use crate::run::RunPlace;
use crate::tb::Tb;
use serde_json::Value;
use std::path::Path;
use tch::{Device, Tensor};

/// How a part of the training loss is averaged over an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerEpoch {
    /// The mean over the epoch's batches (a loss term).
    BatchMean,
    /// The sum over the epoch divided by the images seen (a count such as correct labels).
    PerImage,
}

/// One batch's training loss: the total to back-propagate and named parts (detached scalar
/// tensors) that the loop averages per epoch for TensorBoard (`train/<name>`) and history.
pub struct Loss {
    pub total: Tensor,
    pub parts: Vec<(&'static str, Tensor, PerEpoch)>,
}

impl Loss {
    /// A loss without parts.
    pub fn total(total: Tensor) -> Loss {
        Loss { total, parts: Vec::new() }
    }
}

/// A full evaluation of a network on the task's test set.
pub struct Metrics {
    /// The primary metric (a fraction, higher is better): accuracy, mAP@0.5, mIoU.
    pub primary: f64,
    /// Scalars logged as `test/<name>` and kept in the history as `test_<name>`.
    pub scalars: Vec<(&'static str, f64)>,
    /// The task's metrics record for results.json and the checkpoint's side file.
    pub json: Value,
    /// One line for the console: e.g. `test acc 92.10%`.
    pub summary: String,
}

/// What the train command needs of the task's own config.
pub struct TrainSetup<'a> {
    pub train: &'a TrainConfig,
    pub seed: u64,
    /// Where the run folder goes (`<out_dir>/<task>/<run_name>`).
    pub place: RunPlace<'a>,
}

/// The `Task` methods that only read the task's config struct, for a task type that keeps
/// it in `self.cfg` (every task config has `seed`, `out_dir`, `run_name`, `train`,
/// `to_yaml()` and the deployment view `base_config()`). Used inside `impl Task for ...`.
#[macro_export]
macro_rules! task_config_methods {
    ($name:literal) => {
        fn task(&self) -> &'static str {
            $name
        }

        fn deploy_config(&self) -> $crate::config::Config {
            self.cfg.base_config()
        }

        fn config_yaml(&self) -> String {
            self.cfg.to_yaml()
        }

        fn train_setup(&self) -> $crate::engine::task::TrainSetup<'_> {
            let c = &self.cfg;
            let place =
                $crate::run::RunPlace { out_dir: &c.out_dir, task: $name, name: &c.run_name };
            $crate::engine::task::TrainSetup { train: &c.train, seed: c.seed, place }
        }
    };
}

/// Creates (or re-opens) the run folder of `command` for the task: `explicit`, else
/// `<out_dir>/<task>/<run_name or config-command-time>`, with the task's own config saved.
pub fn task_run_dir(
    task: &dyn Task,
    command: &str,
    config_path: &Path,
    explicit: Option<&Path>,
) -> Result<crate::run::RunDir> {
    let yaml = task.config_yaml();
    crate::run::RunDir::create_at(task.train_setup().place, command, config_path, explicit, &yaml)
}

/// The record every results.json of a command on `task` starts with.
pub fn run_record(task: &dyn Task, command: &str, device: tch::Device) -> crate::run::RunRecord {
    let seed = task.deploy_config().seed;
    crate::run::RunRecord::new(command, task.task(), config_record(task), seed, device)
}

/// The task's own resolved config as a JSON value (results.json's `config`).
pub fn config_record(task: &dyn Task) -> Value {
    serde_yaml::from_str::<Value>(&task.config_yaml()).unwrap_or(Value::Null)
}

pub trait Task {
    /// Task folder name under `runs/` (`classify`, `detect`, `segment`).
    fn task(&self) -> &'static str;

    /// The primary metric's name for tables (e.g. `top-1 accuracy (%)`, `mAP@0.5 (%)`).
    fn metric_name(&self) -> &'static str;

    /// A network of the config's architecture with the checkpoint loaded strictly.
    fn load_network(&self, cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network>;

    /// Number of training samples (batches are index tensors into them).
    fn train_len(&self) -> i64;

    /// The fine-tuning loss of one batch of sample indices, in train mode (augmentation is
    /// the task's business; draws come from the global generator, seeded per epoch by the
    /// caller).
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

    /// The deployment view of the task's config (seed, device, quant, finetune, analog,
    /// train_noise, compare sections) that quantization, the crossbar and the grid read.
    fn deploy_config(&self) -> Config;

    /// The task's own resolved config as YAML: saved as config.yaml, hashed for resume,
    /// recorded in results.json.
    fn config_yaml(&self) -> String;

    /// Task-specific fields for results.json (class names, scene timings).
    fn record(&self) -> Value {
        Value::Object(Default::default())
    }

    // --- training from scratch (engine::train) ---

    /// The task's training settings and run folder.
    fn train_setup(&self) -> TrainSetup<'_>;

    /// A freshly initialised network (the caller seeds the generator first).
    fn build_network(&self, device: Device) -> Result<Network>;

    /// Called before each epoch's data order is drawn: tasks with generated training pools
    /// compose the pool of `epoch` here (a function of seed and epoch only, for resume).
    fn begin_epoch(&mut self, _epoch: usize) {}

    /// The training loss of one batch, with its named parts. Defaults to the fine-tuning loss.
    fn train_loss(&self, net: &Network, idx: &Tensor) -> Loss {
        Loss::total(self.batch_loss(net, idx))
    }

    /// Full evaluation on the test set. With `log`, the task also logs what it shows beyond
    /// the scalars (per-class scores, pictures of predictions) at that step.
    fn metrics(&self, net: &Network, log: Option<(&mut Tb, usize)>) -> Result<Metrics>;

    /// One line describing the training data for the log (sizes, pools).
    fn describe_training(&self) -> String {
        format!("{} training samples, {} test", self.train_len(), self.eval_len())
    }
}
