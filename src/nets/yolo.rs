//! A small single-stage, anchor-free detector in the YOLOX style (Ge, Liu, Wang, Li, Sun,
//! "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430) with FCOS's box coding (Tian,
//! Shen, Chen, He, "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019):
//!
//! - `backbone.*`: a CIFAR-style ResNet of basic blocks with torchvision names (`conv1`,
//!   `bn1`, `layer1.0.conv1`, ..., `downsample.0/1`): a stride-1 3x3 stem, then four stages
//!   that each halve the map (strides 2, 4, 8, 16: 48/24/12/6 on a 96x96 scene).
//! - `neck.*`: an FPN (Lin et al., CVPR 2017) over the stages named in `levels`: a 1x1 lateral
//!   conv + BN per level, top-down nearest upsampling and addition, a 3x3 conv + BN + ReLU.
//! - `head.<i>.*`: YOLOX's decoupled head, one per level (BatchNorm statistics differ between
//!   scales, so the head is not shared): a 3x3 classification branch ending in `cls_pred`
//!   (C logits) and a 3x3 regression branch ending in `reg_pred` (4 box distances) and
//!   `obj_pred` (1 objectness logit).
//!
//! Why anchor-free: the scenes hold 1-6 items of one aspect-ratio family at sizes spread over
//! 10-56 px, so anchors would add shape priors to tune (and k-means to fit) for nothing; one
//! prediction per cell and level, assigned by centre sampling and size range (FCOS), keeps the
//! output a plain [b, cells, 5 + C] tensor that the loss, decoding and NMS handle without
//! per-anchor bookkeeping. The box is coded as the distances (l, t, r, b) from the cell
//! centre to the sides, in units of the level's stride, through softplus (positive, smooth,
//! no overflow unlike FCOS's exp): exactly what an IoU-family loss consumes.
//!
//! Every conv (the prediction convs included) is built through `layers::conv2d*`, so
//! quantizers and the analog crossbar reach the whole detector; BatchNorm stays digital.
use super::layers::LayerRegistry;
use super::layers::{batch_norm2d, conv2d, conv2d_grouped, BatchNorm2d, HookedLayer};
use super::Network;
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// The detector's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct YoloConfig {
    pub in_channels: i64,
    pub num_classes: i64,
    /// Channels of the four backbone stages `layer1..layer4` (strides 2, 4, 8, 16).
    pub widths: Vec<i64>,
    /// Basic blocks per stage.
    pub blocks: usize,
    /// Channels of the FPN and of the head branches.
    pub neck_width: i64,
    /// Backbone stages (1-based: 2 = `layer2`, stride 4) that get a detection level.
    pub levels: Vec<usize>,
}

impl Default for YoloConfig {
    fn default() -> Self {
        YoloConfig {
            in_channels: 1,
            num_classes: 10,
            widths: vec![16, 32, 64, 128],
            blocks: 1,
            neck_width: 64,
            levels: vec![2, 3, 4],
        }
    }
}

impl YoloConfig {
    /// The stride of each detection level, finest first.
    pub fn strides(&self) -> Vec<i64> {
        self.levels.iter().map(|&l| 1i64 << l).collect()
    }

    pub fn validate(&self, section: &str) -> Result<()> {
        let f = |k: &str| format!("{section}.{k}");
        if !(1..=64).contains(&self.in_channels) {
            return Err(invalid(
                f("in_channels"),
                format!("expected 1..=64, got {}", self.in_channels),
            ));
        }
        if !(1..=1000).contains(&self.num_classes) {
            return Err(invalid(
                f("num_classes"),
                format!("expected 1..=1000, got {}", self.num_classes),
            ));
        }
        if self.widths.len() != 4 || self.widths.iter().any(|w| !(1..=4096).contains(w)) {
            return Err(invalid(
                f("widths"),
                format!("expected four stage widths in 1..=4096, got {:?}", self.widths),
            ));
        }
        if !(1..=16).contains(&self.blocks) {
            return Err(invalid(f("blocks"), format!("expected 1..=16, got {}", self.blocks)));
        }
        if !(1..=4096).contains(&self.neck_width) {
            return Err(invalid(
                f("neck_width"),
                format!("expected 1..=4096, got {}", self.neck_width),
            ));
        }
        let sorted = self.levels.windows(2).all(|w| w[0] < w[1]);
        if self.levels.is_empty() || !sorted || self.levels.iter().any(|l| !(1..=4).contains(l)) {
            return Err(invalid(
                f("levels"),
                format!("expected increasing stage numbers in 1..=4, got {:?}", self.levels),
            ));
        }
        Ok(())
    }

    /// Number of prediction cells on an `h` x `w` input (the second dim of the output).
    pub fn cells(&self, h: i64, w: i64) -> i64 {
        self.strides().iter().map(|s| (h / s) * (w / s)).sum()
    }

    /// Cell centres in input pixels [N, 2] (x, y) and the stride of each cell [N], in the
    /// order of the network output: level by level (finest first), row-major within a level.
    pub fn grid(&self, h: i64, w: i64, device: Device) -> (Tensor, Tensor) {
        let (mut centres, mut strides) = (Vec::new(), Vec::new());
        for s in self.strides() {
            let (gh, gw) = (h / s, w / s);
            let opts = (Kind::Float, device);
            let ys = (Tensor::arange(gh, opts) + 0.5) * s as f64;
            let xs = (Tensor::arange(gw, opts) + 0.5) * s as f64;
            let yy = ys.view([gh, 1]).expand([gh, gw], false);
            let xx = xs.view([1, gw]).expand([gh, gw], false);
            centres.push(Tensor::stack(&[xx.reshape([-1]), yy.reshape([-1])], 1));
            strides.push(Tensor::full([gh * gw], s as f64, opts));
        }
        (Tensor::cat(&centres, 0), Tensor::cat(&strides, 0))
    }
}

/// Conv + BN (+ ReLU), named `<p>.0` / `<p>.1` like a torchvision `Sequential`.
#[derive(Debug)]
struct ConvBn {
    conv: HookedLayer,
    bn: BatchNorm2d,
    relu: bool,
}

impl ConvBn {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, k: i64, relu: bool) -> Self {
        ConvBn {
            conv: conv2d(&p / "0", reg, c_in, c_out, k, 1, k / 2, 1),
            bn: batch_norm2d(&p / "1", c_out),
            relu,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.conv.forward_bn(xs, &self.bn, self.relu, train)
    }
}

/// torchvision's `BasicBlock`: two 3x3 convs, a 1x1 + BN projection when the shape changes.
#[derive(Debug)]
struct BasicBlock {
    conv1: HookedLayer,
    bn1: BatchNorm2d,
    conv2: HookedLayer,
    bn2: BatchNorm2d,
    downsample: Option<(HookedLayer, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            (conv2d(&d / "0", reg, c_in, c_out, 1, stride, 0, 1), batch_norm2d(&d / "1", c_out))
        });
        BasicBlock {
            conv1: conv2d(&p / "conv1", reg, c_in, c_out, 3, stride, 1, 1),
            bn1: batch_norm2d(&p / "bn1", c_out),
            conv2: conv2d(&p / "conv2", reg, c_out, c_out, 3, 1, 1, 1),
            bn2: batch_norm2d(&p / "bn2", c_out),
            downsample,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        let projection =
            self.downsample.as_ref().map(|(conv, bn)| || conv.forward_bn(xs, bn, false, train));
        self.conv2.forward_block_end(&ys, &self.bn2, xs, projection, train)
    }
}

/// The backbone: stem + four stages of basic blocks, each stage halving the map.
#[derive(Debug)]
pub struct Backbone {
    conv1: HookedLayer,
    bn1: BatchNorm2d,
    stages: Vec<Vec<BasicBlock>>,
}

impl Backbone {
    /// Builds `<p>.conv1`, `<p>.bn1`, `<p>.layer{1..4}.{block}.*`.
    pub fn new(p: &nn::Path, reg: &LayerRegistry, cfg: &YoloConfig) -> Backbone {
        let stem = cfg.widths[0];
        let mut c_in = stem;
        let stages = cfg
            .widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let sp = p / format!("layer{}", i + 1);
                (0..cfg.blocks)
                    .map(|b| {
                        let block =
                            BasicBlock::new(&sp / b, reg, c_in, w, if b == 0 { 2 } else { 1 });
                        c_in = w;
                        block
                    })
                    .collect()
            })
            .collect();
        Backbone {
            conv1: conv2d(p / "conv1", reg, cfg.in_channels, stem, 3, 1, 1, 1),
            bn1: batch_norm2d(p / "bn1", stem),
            stages,
        }
    }

    /// xs: [b, c_in, h, w] -> the four stage outputs [b, widths[k], h / 2^(k+1), w / 2^(k+1)].
    pub fn stage_outputs(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        let mut outs = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            ys = stage.iter().fold(ys, |acc, b| b.forward_t(&acc, train));
            outs.push(ys.shallow_clone());
        }
        outs
    }
}

/// YOLOX's decoupled head for one level.
#[derive(Debug)]
struct Head {
    cls: ConvBn,
    reg: ConvBn,
    cls_pred: HookedLayer,
    reg_pred: HookedLayer,
    obj_pred: HookedLayer,
}

/// log((1 - p) / p) for p = 0.01: the RetinaNet / YOLOX prior, so that the thousands of
/// background cells start with a small loss.
const PRIOR_BIAS: f64 = -4.595_119_850_134_59;

impl Head {
    fn new(p: nn::Path, reg: &LayerRegistry, width: i64, classes: i64) -> Self {
        let pred = |name: &str, c_out: i64, bias: f64| {
            let layer = conv2d_grouped(&p / name, reg, width, c_out, 1, 1, 0, 1, 1, true);
            // kaiming fan-out on a 1- or 4-channel output would give logits of std ~10;
            // prediction convs start small (RetinaNet / FCOS: normal std 0.01).
            let q = &p / name;
            tch::no_grad(|| {
                if let (Some(mut w), Some(mut b)) = (q.get("weight"), q.get("bias")) {
                    let _ = w.normal_(0.0, 0.01);
                    let _ = b.fill_(bias);
                }
            });
            layer
        };
        Head {
            cls: ConvBn::new(&p / "cls", reg, width, width, 3, true),
            reg: ConvBn::new(&p / "reg", reg, width, width, 3, true),
            cls_pred: pred("cls_pred", classes, PRIOR_BIAS),
            reg_pred: pred("reg_pred", 4, 0.0),
            obj_pred: pred("obj_pred", 1, PRIOR_BIAS),
        }
    }

    /// xs: [b, width, h, w] -> [b, h * w, 5 + C] as (l, t, r, b, objectness, classes...).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let c = self.cls.forward_t(xs, train);
        let r = self.reg.forward_t(xs, train);
        let out = Tensor::cat(
            &[
                self.reg_pred.forward_t(&r, train),
                self.obj_pred.forward_t(&r, train),
                self.cls_pred.forward_t(&c, train),
            ],
            1,
        );
        out.flatten(2, 3).transpose(1, 2)
    }
}

/// The detector. forward: [b, c_in, h, w] (h, w multiples of the coarsest stride) ->
/// raw predictions [b, N, 5 + C], N = `YoloConfig::cells(h, w)`, laid out as `grid` says.
#[derive(Debug)]
pub struct Yolo {
    backbone: Backbone,
    lateral: Vec<ConvBn>,
    output: Vec<ConvBn>,
    heads: Vec<Head>,
    levels: Vec<usize>,
}

impl Yolo {
    pub fn new(p: &nn::Path, reg: &LayerRegistry, cfg: &YoloConfig) -> Yolo {
        let backbone = Backbone::new(&(p / "backbone"), reg, cfg);
        let (neck, f) = (p / "neck", cfg.neck_width);
        let lateral = cfg
            .levels
            .iter()
            .enumerate()
            .map(|(i, &l)| ConvBn::new(&neck / "lateral" / i, reg, cfg.widths[l - 1], f, 1, false))
            .collect();
        let output = (0..cfg.levels.len())
            .map(|i| ConvBn::new(&neck / "output" / i, reg, f, f, 3, true))
            .collect();
        let heads = (0..cfg.levels.len())
            .map(|i| Head::new(p / "head" / i, reg, f, cfg.num_classes))
            .collect();
        Yolo { backbone, lateral, output, heads, levels: cfg.levels.clone() }
    }

    /// The FPN maps, finest first: [b, neck_width, h / s, w / s] per level.
    pub fn pyramid(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let stages = self.backbone.stage_outputs(xs, train);
        let lat: Vec<Tensor> = self
            .levels
            .iter()
            .zip(&self.lateral)
            .map(|(&l, conv)| conv.forward_t(&stages[l - 1], train))
            .collect();
        let mut merged: Vec<Tensor> = Vec::with_capacity(lat.len());
        let mut above: Option<Tensor> = None;
        for x in lat.iter().rev() {
            let m = match &above {
                Some(a) => {
                    let size = x.size();
                    x + a.upsample_nearest2d(&size[2..], None, None)
                }
                None => x.shallow_clone(),
            };
            above = Some(m.shallow_clone());
            merged.push(m);
        }
        merged.reverse();
        merged.iter().zip(&self.output).map(|(m, conv)| conv.forward_t(m, train)).collect()
    }
}

impl ModuleT for Yolo {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let levels = self.pyramid(xs, train);
        let outs: Vec<Tensor> =
            levels.iter().zip(&self.heads).map(|(x, h)| h.forward_t(x, train)).collect();
        Tensor::cat(&outs, 1)
    }
}

/// Builds the detector (initialisation draws from the global generator; seed it first).
pub fn build_detector(cfg: &YoloConfig, device: Device) -> Network {
    let vs = nn::VarStore::new(device);
    let layers = LayerRegistry::default();
    let model = Yolo::new(&vs.root(), &layers, cfg);
    Network { vs, model: Box::new(model), layers, arch: "yolo-resnet".to_string() }
}
