//! Image classification on Fashion-MNIST / MNIST / CIFAR-10 (ResNet): the top-1 evaluation,
//! training batches, and the train and eval commands (through the engine); `task` is the
//! engine's `Task`, `quantize` the classification quantize/finetune/export commands.
use crate::config::Config;
use crate::data::{self, augment, Dataset, Normalizer};
use crate::engine::task::Task;
use crate::error::{GqcimError, Result};
use crate::nets::Network;
use crate::run::setup_device;
use crate::tasks::Purpose;
pub mod quantize;
pub mod task;
use std::time::Instant;
pub use task::{classify_harness, ClassifyTask};
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

/// The classification task opened for `purpose` (tasks::Purpose), and its device.
pub fn open(cfg: &Config, purpose: Purpose) -> Result<(Box<dyn Task>, Device)> {
    let device = setup_device(cfg)?;
    let task: Box<dyn Task> = match purpose {
        Purpose::Train => {
            let (train, test) = load_data(cfg, device)?;
            let norm = Normalizer::new(&cfg.data, device);
            Box::new(ClassifyTask { cfg: cfg.clone(), train, test, norm })
        }
        Purpose::Eval => Box::new(ClassifyTask::for_eval(cfg, device)?),
        Purpose::Grid => classify_harness(cfg, device)?,
    };
    Ok((task, device))
}
