//! Segmentation as an engine `Task`: DeepLab built from the config, seg_loss on flipped
//! batches of the pool, mIoU on the test scenes, pictures of predicted masks.
use super::metrics::seg_loss;
use super::{
    eval_json, evaluate, log_class_iou, log_samples, sample_inputs, sample_predictions,
    SegmentConfig, SegmentData,
};
use crate::checkpoint::load_strict;
use crate::config::Config;
use crate::data::voc_seg::IGNORE_INDEX;
use crate::engine::task::Metrics;
use crate::engine::task::Task;
use crate::error::Result;
use crate::glance::picture::Picture;
use crate::nets::deeplab::build_deeplab;
use crate::nets::Network;
use crate::tb::Tb;
use serde_json::{json, Value};
use std::path::Path;
use tch::{Device, Tensor};

/// Builds the configured DeepLab (initialisation from `cfg.seed`).
pub fn build_network(cfg: &SegmentConfig, device: Device) -> Result<Network> {
    tch::manual_seed(cfg.seed as i64);
    build_deeplab(cfg.model.arch.name(), cfg.model.in_channels, cfg.model.num_classes, device)
}

/// Builds the configured DeepLab and loads a checkpoint strictly.
pub fn load_network(cfg: &SegmentConfig, checkpoint: &Path, device: Device) -> Result<Network> {
    let mut net = build_network(cfg, device)?;
    load_strict(&mut net.vs, checkpoint)?;
    Ok(net)
}
/// Segmentation as a task harness: seg_loss (ignore 255) on flipped batches of one fixed
/// training pool (epoch 0's), mIoU as a fraction on the test scenes.
pub struct SegmentHarness {
    pub cfg: SegmentConfig,
    pub data: SegmentData,
    /// Seconds spent composing the scenes when the task was set up (the run's record).
    pub compose_seconds: f64,
}

impl SegmentHarness {
    /// Loads FMNIST and composes the scenes the config names.
    pub fn new(cfg: &SegmentConfig, device: Device) -> Result<SegmentHarness> {
        Ok(SegmentHarness::from_data(cfg, SegmentData::load(cfg, device)?))
    }

    /// A harness over scenes already composed (tests, other item sources).
    pub fn from_data(cfg: &SegmentConfig, data: SegmentData) -> SegmentHarness {
        SegmentHarness { cfg: cfg.clone(), data, compose_seconds: 0.0 }
    }
}

impl Task for SegmentHarness {
    crate::task_config_methods!("segment");

    fn metric_name(&self) -> &'static str {
        "mIoU (%)"
    }

    /// Builds the network from the harness's own `SegmentConfig`; the classification
    /// config's model section does not describe a segmenter and is not read.
    fn load_network(&self, _cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network> {
        load_network(&self.cfg, checkpoint, device)
    }

    fn train_len(&self) -> i64 {
        self.data.train.len()
    }

    fn batch_loss(&self, net: &Network, idx: &Tensor) -> Tensor {
        let (x, y) = self.data.train_batch(idx);
        seg_loss(&net.forward_t(&x, true), &y, IGNORE_INDEX)
    }

    fn evaluate(&self, net: &Network) -> Result<f64> {
        Ok(evaluate(net, &self.data, self.cfg.eval.batch_size)?.miou)
    }

    fn eval_len(&self) -> i64 {
        self.data.test.len()
    }

    fn sample_inputs(&self) -> Vec<Vec<(String, Picture)>> {
        sample_inputs(&self.data, self.cfg.eval.sample_images)
    }

    fn sample_pictures(&self, net: &Network) -> Vec<Picture> {
        sample_predictions(net, &self.data, self.cfg.eval.sample_images)
    }
    fn build_network(&self, device: Device) -> Result<Network> {
        build_network(&self.cfg, device)
    }

    /// A fresh pool of scenes per epoch when `data.regenerate_train` is on.
    fn begin_epoch(&mut self, epoch: usize) {
        if self.cfg.data.regenerate_train {
            self.data.set_epoch(epoch);
        }
    }

    fn metrics(&self, net: &Network, log: Option<(&mut Tb, usize)>) -> Result<Metrics> {
        let res = evaluate(net, &self.data, self.cfg.eval.batch_size)?;
        if let Some((tb, step)) = log {
            log_class_iou(tb, &res, step);
            log_samples(tb, net, &self.data, self.cfg.eval.sample_images, "test", step);
        }
        Ok(Metrics {
            primary: res.miou,
            scalars: vec![("miou", res.miou), ("pixel_accuracy", res.pixel_acc)],
            json: eval_json(&res),
            summary: format!(
                "test mIoU {:.2}%  pixel acc {:.2}% ({} scenes)",
                100.0 * res.miou,
                100.0 * res.pixel_acc,
                res.images
            ),
        })
    }

    fn describe_training(&self) -> String {
        let size = self.data.train.images.size();
        format!(
            "{} scenes of {}x{} per epoch ({} test)",
            self.data.train.len(),
            size[3],
            size[2],
            self.data.test.len()
        )
    }

    fn record(&self) -> Value {
        json!({"test_seed": self.cfg.data.test_seed, "class_names": self.data.names,
               "scene_compose_seconds": self.compose_seconds})
    }
}
