//! Classification as an engine `Task`: cross-entropy on augmented batches (with the configured
//! label smoothing when training from scratch), top-1 accuracy on the test split.
use super::quantize::load_classifier;
use super::{evaluate, train_batch};
use crate::config::Config;
use crate::data::{self, Dataset, Normalizer};
use crate::engine::task::{Loss, Metrics, PerEpoch, Task};
use crate::error::Result;
use crate::nets::{build_classifier, Network};
use crate::tb::Tb;
use serde_json::json;
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor};

/// Classification as a task harness: cross-entropy on augmented batches, top-1 accuracy.
pub struct ClassifyTask {
    pub cfg: Config,
    pub train: Dataset,
    pub test: Dataset,
    pub norm: Normalizer,
}

impl ClassifyTask {
    /// The task for evaluation only: the test split, no training images read.
    pub fn for_eval(cfg: &Config, device: Device) -> Result<ClassifyTask> {
        let test = data::load_split(&cfg.data, false)?;
        data::check_against_model(&test, cfg.model.in_channels, cfg.model.num_classes)?;
        let test = test.to_device(device);
        let norm = Normalizer::new(&cfg.data, device);
        let train = Dataset {
            images: test.images.narrow(0, 0, 0),
            labels: test.labels.narrow(0, 0, 0),
            num_classes: test.num_classes,
        };
        Ok(ClassifyTask { cfg: cfg.clone(), train, test, norm })
    }
}

impl Task for ClassifyTask {
    crate::task_config_methods!("classify");

    fn metric_name(&self) -> &'static str {
        "top-1 accuracy (%)"
    }

    fn load_network(&self, cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network> {
        load_classifier(cfg, checkpoint, device)
    }

    fn train_len(&self) -> i64 {
        self.train.len()
    }

    fn batch_loss(&self, net: &Network, idx: &Tensor) -> Tensor {
        let (x, y) = train_batch(&self.train, idx, &self.cfg, &self.norm);
        net.forward_t(&x, true).cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0)
    }

    fn evaluate(&self, net: &Network) -> Result<f64> {
        Ok(evaluate(net, &self.test, &self.norm, self.cfg.eval.batch_size)?.accuracy)
    }

    fn eval_len(&self) -> i64 {
        self.test.len()
    }

    fn build_network(&self, device: Device) -> Result<Network> {
        Ok(build_classifier(&self.cfg.model, device))
    }

    /// Cross-entropy with the configured label smoothing (fine-tuning uses none), and the
    /// count of correct labels for the training accuracy.
    fn train_loss(&self, net: &Network, idx: &Tensor) -> Loss {
        let (x, y) = train_batch(&self.train, idx, &self.cfg, &self.norm);
        let logits = net.forward_t(&x, true);
        let smoothing = self.cfg.train.label_smoothing;
        let total = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, smoothing);
        let correct = tch::no_grad(|| logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Float));
        Loss { total, parts: vec![("accuracy", correct, PerEpoch::PerImage)] }
    }

    fn metrics(&self, net: &Network, _log: Option<(&mut Tb, usize)>) -> Result<Metrics> {
        let r = evaluate(net, &self.test, &self.norm, self.cfg.eval.batch_size)?;
        Ok(Metrics {
            primary: r.accuracy,
            scalars: vec![("accuracy", r.accuracy), ("loss", r.loss)],
            json: json!({"test_accuracy": r.accuracy, "test_loss": r.loss, "test_images": r.images}),
            summary: format!("test accuracy {:.2}% ({} images)", 100.0 * r.accuracy, r.images),
        })
    }

    fn describe_training(&self) -> String {
        format!("{} images ({} test)", self.train.len(), self.test.len())
    }
}

/// The classification harness of a config for the comparison grid (test set cut to
/// `compare.eval_limit`).
pub fn classify_harness(cfg: &Config, device: Device) -> Result<Box<dyn Task>> {
    let train = data::load_split(&cfg.data, true)?;
    let mut test = data::load_split(&cfg.data, false)?;
    data::check_same_image_size(&train, &test, &cfg.data.root)?;
    data::check_against_model(&test, cfg.model.in_channels, cfg.model.num_classes)?;
    if cfg.compare.eval_limit > 0 {
        test = test.limit(cfg.compare.eval_limit);
    }
    Ok(Box::new(ClassifyTask {
        cfg: cfg.clone(),
        train: train.to_device(device),
        test: test.to_device(device),
        norm: Normalizer::new(&cfg.data, device),
    }))
}
