//! Image classification: training (SGD + cosine schedule with warm-up), evaluation (top-1),
//! checkpoints with resume, TensorBoard logging and results.json.
use crate::config::Config;
use crate::data::{self, augment, Dataset, Normalizer};
use crate::engine::task::{Loss, Metrics, PerEpoch, Task, TrainSetup};
use crate::error::{GqcimError, Result};
use crate::nets::{build_classifier, Network};
use crate::run::{setup_device, RunDir, RunPlace};
use crate::tasks::quantize::load_classifier;
use crate::tb::Tb;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// Top-1 accuracy and mean cross-entropy of a network on a dataset (eval mode, no grad).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub loss: f64,
    pub images: i64,
    pub seconds: f64,
}

/// Evaluates in batches; metrics accumulate as f64 on the host, one sync per batch.
/// An empty set, or logits that are NaN or infinite (argmax would still pick a class and
/// report a plausible-looking accuracy), are errors.
pub fn evaluate(
    net: &Network,
    ds: &Dataset,
    norm: &Normalizer,
    batch_size: i64,
) -> Result<EvalResult> {
    let start = Instant::now();
    let n = ds.len();
    if n == 0 {
        return Err(GqcimError::Invalid {
            field: "data".into(),
            msg: "the evaluation set has no images (check data.test_limit and the test files)"
                .into(),
        });
    }
    let (mut correct, mut loss_sum) = (0i64, 0f64);
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = batch_size.min(n - i);
            let x = norm.normalize(&Normalizer::to_unit(&ds.images.narrow(0, i, b)));
            let y = ds.labels.narrow(0, i, b);
            let logits = net.forward_t(&x, false);
            check_finite_output(&logits, net, i)?;
            loss_sum += logits
                .cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)
                .double_value(&[]);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            i += b;
        }
        Ok(())
    })?;
    Ok(EvalResult {
        accuracy: correct as f64 / n as f64,
        loss: loss_sum / n as f64,
        images: n,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Stops an evaluation whose network output holds NaN or infinite values; the message
/// names the first hooked layer whose effective weight is non-finite, when one is.
pub fn check_finite_output(out: &Tensor, net: &Network, first_image: i64) -> Result<()> {
    let bad = out.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
    if bad == 0 {
        return Ok(());
    }
    let culprit = net.layers.layers().iter().find_map(|l| {
        let w = l.effective_weight();
        let finite = w.isfinite().all().int64_value(&[]) == 1;
        (!finite).then(|| l.spec.name.clone())
    });
    let why = match &culprit {
        Some(name) => format!("the effective weight of layer `{name}` is not finite"),
        None => "the weights are finite, so an activation overflowed".to_string(),
    };
    Err(GqcimError::Layer {
        layer: culprit.unwrap_or_else(|| "<network output>".into()),
        msg: format!(
            "{bad} network outputs are NaN or infinite in the batch starting at test image \
             {first_image} ({why}); no metric is reported"
        ),
    })
}

/// Train-mode input batch: gather, scale, augment, normalise — all on the tensor side.
pub fn train_batch(
    ds: &Dataset,
    idx: &Tensor,
    cfg: &Config,
    norm: &Normalizer,
) -> (Tensor, Tensor) {
    let mut x = Normalizer::to_unit(&ds.images.index_select(0, idx));
    if cfg.data.augment.crop_padding > 0 {
        x = augment::random_crop(&x, cfg.data.augment.crop_padding);
    }
    if cfg.data.augment.horizontal_flip {
        x = augment::random_hflip(&x);
    }
    (norm.normalize(&x), ds.labels.index_select(0, idx))
}

/// Loads both splits, checks them against the model config, moves them to the device.
pub fn load_data(cfg: &Config, device: Device) -> Result<(Dataset, Dataset)> {
    let train = data::load_split(&cfg.data, true)?;
    let test = data::load_split(&cfg.data, false)?;
    data::check_same_image_size(&train, &test, &cfg.data.root)?;
    data::check_against_model(&train, cfg.model.in_channels, cfg.model.num_classes)?;
    Ok((train.to_device(device), test.to_device(device)))
}

/// Trains a classifier from scratch (or resumes a run folder) through the engine's loop.
pub fn train(
    cfg: &Config,
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    let device = setup_device(cfg)?;
    let (train, test) = load_data(cfg, device)?;
    let norm = Normalizer::new(&cfg.data, device);
    let mut task = ClassifyTask { cfg: cfg.clone(), train, test, norm };
    crate::engine::train::train(&mut task, device, config_path, run_dir, resume)
}

/// `gqcim eval` (and `--analog`): a checkpoint on the test split, through the engine.
pub fn eval(
    cfg: &Config,
    config_path: &Path,
    checkpoint_path: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    let device = setup_device(cfg)?;
    let task = ClassifyTask::for_eval(cfg, device)?;
    let net = load_classifier(cfg, checkpoint_path, device)?;
    let run = RunDir::create(cfg, "eval", config_path, run_dir)?;
    crate::engine::evaluate::evaluate(&task, &net, checkpoint_path, run, device)
}

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
    fn task(&self) -> &'static str {
        "classify"
    }

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

    fn deploy_config(&self) -> Config {
        self.cfg.clone()
    }

    fn config_yaml(&self) -> String {
        self.cfg.to_yaml()
    }

    fn train_setup(&self) -> TrainSetup<'_> {
        let c = &self.cfg;
        TrainSetup {
            train: &c.train,
            seed: c.seed,
            place: RunPlace { out_dir: &c.out_dir, task: "classify", name: &c.run_name },
        }
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
