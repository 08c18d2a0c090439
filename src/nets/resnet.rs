//! ResNets with torchvision state-dict names.
//!
//! - CIFAR-style ResNet-20/32/44/56 (He et al., "Deep Residual Learning", CVPR 2016, sec. 4.2):
//!   a 3x3 stem with 16 channels, three stages of n basic blocks (16, 32, 64 channels),
//!   global average pooling and a linear classifier; depth = 6n + 2. Shortcuts that change
//!   shape use a 1x1 conv + BN projection (option B) named `downsample.0/1` as in torchvision.
//! - torchvision ResNet-18/34/50 (v1.5: the stride sits on the 3x3 conv of a bottleneck),
//!   with `replace_stride_with_dilation` for dense prediction backbones.
//!
//! Every conv and the classifier go through the weight hook (`layers.rs`).
use super::layers::{batch_norm2d, conv2d, linear, BatchNorm2d, HookedLayer, LayerRegistry};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
struct Downsample {
    conv: HookedLayer,
    bn: BatchNorm2d,
}

impl Downsample {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, stride: i64) -> Self {
        Downsample {
            conv: conv2d(&p / "0", reg, c_in, c_out, 1, stride, 0, 1),
            bn: batch_norm2d(&p / "1", c_out),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.conv.forward_bn(xs, &self.bn, false, train)
    }
}

/// Two 3x3 convs (torchvision `BasicBlock`).
#[derive(Debug)]
struct BasicBlock {
    conv1: HookedLayer,
    bn1: BatchNorm2d,
    conv2: HookedLayer,
    bn2: BatchNorm2d,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, stride: i64) -> Self {
        Self::dilated(p, reg, c_in, c_out, stride, 1)
    }

    /// Dilation in both 3x3 convs (torchvision raises for BasicBlock dilation > 1; we allow
    /// it for small dense-prediction backbones such as a ResNet-18 at output stride 8).
    fn dilated(
        p: nn::Path,
        reg: &LayerRegistry,
        c_in: i64,
        c_out: i64,
        stride: i64,
        dilation: i64,
    ) -> Self {
        let downsample = (stride != 1 || c_in != c_out)
            .then(|| Downsample::new(&p / "downsample", reg, c_in, c_out, stride));
        let d = dilation;
        BasicBlock {
            conv1: conv2d(&p / "conv1", reg, c_in, c_out, 3, stride, d, d),
            bn1: batch_norm2d(&p / "bn1", c_out),
            conv2: conv2d(&p / "conv2", reg, c_out, c_out, 3, 1, d, d),
            bn2: batch_norm2d(&p / "bn2", c_out),
            downsample,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        let projection = self.downsample.as_ref().map(|d| || d.forward_t(xs, train));
        self.conv2.forward_block_end(&ys, &self.bn2, xs, projection, train)
    }
}

/// 1x1 -> 3x3 (stride, dilation) -> 1x1 x4 (torchvision `Bottleneck`, v1.5).
#[derive(Debug)]
struct Bottleneck {
    conv1: HookedLayer,
    bn1: BatchNorm2d,
    conv2: HookedLayer,
    bn2: BatchNorm2d,
    conv3: HookedLayer,
    bn3: BatchNorm2d,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    const EXPANSION: i64 = 4;

    #[allow(clippy::too_many_arguments)]
    fn new(
        p: nn::Path,
        reg: &LayerRegistry,
        c_in: i64,
        planes: i64,
        stride: i64,
        dilation: i64,
        needs_downsample: bool,
    ) -> Self {
        let c_out = planes * Self::EXPANSION;
        let downsample =
            needs_downsample.then(|| Downsample::new(&p / "downsample", reg, c_in, c_out, stride));
        Bottleneck {
            conv1: conv2d(&p / "conv1", reg, c_in, planes, 1, 1, 0, 1),
            bn1: batch_norm2d(&p / "bn1", planes),
            conv2: conv2d(&p / "conv2", reg, planes, planes, 3, stride, dilation, dilation),
            bn2: batch_norm2d(&p / "bn2", planes),
            conv3: conv2d(&p / "conv3", reg, planes, c_out, 1, 1, 0, 1),
            bn3: batch_norm2d(&p / "bn3", c_out),
            downsample,
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        let ys = self.conv2.forward_bn(&ys, &self.bn2, true, train);
        let projection = self.downsample.as_ref().map(|d| || d.forward_t(xs, train));
        self.conv3.forward_block_end(&ys, &self.bn3, xs, projection, train)
    }
}

/// A stack of residual blocks (`layer1` .. `layer4`).
#[derive(Debug)]
pub struct Stage(Vec<Box<dyn ModuleT>>);

impl ModuleT for Stage {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.0.iter().fold(xs.shallow_clone(), |acc, b| b.forward_t(&acc, train))
    }
}

/// The classification ResNet. forward: [b, c_in, h, w] -> logits [b, classes].
#[derive(Debug)]
pub struct ResNet {
    conv1: HookedLayer,
    bn1: BatchNorm2d,
    /// torchvision's 3x3/2 max pool after the stem; absent in CIFAR ResNets.
    maxpool: bool,
    pub stages: Vec<Stage>,
    /// The classifier; absent in backbones for detection / segmentation.
    fc: Option<HookedLayer>,
}

impl ResNet {
    /// Features before pooling: [b, c_in, h, w] -> [b, c_last, h/s, w/s].
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        if self.maxpool {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        self.stages.iter().fold(ys, |acc, s| s.forward_t(&acc, train))
    }

    /// Outputs of the stem and of every stage, for detection / segmentation necks.
    pub fn stage_outputs(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut ys = self.conv1.forward_bn(xs, &self.bn1, true, train);
        if self.maxpool {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        let mut outs = vec![ys.shallow_clone()];
        for s in &self.stages {
            ys = s.forward_t(&ys, train);
            outs.push(ys.shallow_clone());
        }
        outs
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.features(xs, train).adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        match &self.fc {
            Some(fc) => fc.forward_t(&ys, train),
            None => ys,
        }
    }
}

/// CIFAR-style ResNet of depth 6n+2 (20, 32, 44, 56, ...).
pub fn cifar_resnet(
    p: &nn::Path,
    reg: &LayerRegistry,
    depth: i64,
    in_channels: i64,
    classes: i64,
) -> ResNet {
    assert!((depth - 2) % 6 == 0, "CIFAR ResNet depth must be 6n+2");
    let n = (depth - 2) / 6;
    let widths = [16, 32, 64];
    let mut stages = Vec::new();
    let mut c_in = 16;
    for (i, &w) in widths.iter().enumerate() {
        let sp = p / format!("layer{}", i + 1);
        let blocks: Vec<Box<dyn ModuleT>> = (0..n)
            .map(|b| {
                let stride = if b == 0 && i > 0 { 2 } else { 1 };
                let block = BasicBlock::new(&sp / b, reg, c_in, w, stride);
                c_in = w;
                Box::new(block) as Box<dyn ModuleT>
            })
            .collect();
        stages.push(Stage(blocks));
    }
    ResNet {
        conv1: conv2d(p / "conv1", reg, in_channels, 16, 3, 1, 1, 1),
        bn1: batch_norm2d(p / "bn1", 16),
        maxpool: false,
        stages,
        fc: Some(linear(p / "fc", reg, 64, classes)),
    }
}

/// Which torchvision ResNet.
#[derive(Debug, Clone, Copy)]
pub enum TvDepth {
    R18,
    R34,
    R50,
}

/// torchvision ResNet-18/34/50; `dilate[i]` replaces the stride of layer i+2 by dilation.
pub fn torchvision_resnet(
    p: &nn::Path,
    reg: &LayerRegistry,
    depth: TvDepth,
    in_channels: i64,
    classes: i64,
    dilate: [bool; 3],
) -> ResNet {
    tv_resnet(p, reg, depth, in_channels, Some(classes), dilate)
}

/// The torchvision ResNet without its classifier (as torchvision's IntermediateLayerGetter
/// exposes it to DeepLab / detection heads): no `fc.*` variables.
pub fn torchvision_backbone(
    p: &nn::Path,
    reg: &LayerRegistry,
    depth: TvDepth,
    in_channels: i64,
    dilate: [bool; 3],
) -> ResNet {
    tv_resnet(p, reg, depth, in_channels, None, dilate)
}

/// Channels of the last stage: 512 (basic blocks) or 2048 (bottlenecks).
pub fn tv_out_channels(depth: TvDepth) -> i64 {
    match depth {
        TvDepth::R18 | TvDepth::R34 => 512,
        TvDepth::R50 => 2048,
    }
}

fn tv_resnet(
    p: &nn::Path,
    reg: &LayerRegistry,
    depth: TvDepth,
    in_channels: i64,
    classes: Option<i64>,
    dilate: [bool; 3],
) -> ResNet {
    let (counts, bottleneck) = match depth {
        TvDepth::R18 => ([2, 2, 2, 2], false),
        TvDepth::R34 => ([3, 4, 6, 3], false),
        TvDepth::R50 => ([3, 4, 6, 3], true),
    };
    let expansion = if bottleneck { Bottleneck::EXPANSION } else { 1 };
    let mut c_in = 64;
    let mut dilation = 1;
    let mut stages = Vec::new();
    for (i, (&planes, &count)) in [64, 128, 256, 512].iter().zip(counts.iter()).enumerate() {
        let sp = p / format!("layer{}", i + 1);
        let mut stride = if i == 0 { 1 } else { 2 };
        let previous_dilation = dilation;
        if i > 0 && dilate[i - 1] {
            dilation *= stride;
            stride = 1;
        }
        let mut blocks: Vec<Box<dyn ModuleT>> = Vec::new();
        for b in 0..count {
            let block: Box<dyn ModuleT> = if bottleneck {
                let (s, d) = if b == 0 { (stride, previous_dilation) } else { (1, dilation) };
                let needs = b == 0 && (stride != 1 || c_in != planes * expansion);
                Box::new(Bottleneck::new(&sp / b, reg, c_in, planes, s, d, needs))
            } else {
                let (s, d) = if b == 0 { (stride, previous_dilation) } else { (1, dilation) };
                Box::new(BasicBlock::dilated(&sp / b, reg, c_in, planes, s, d))
            };
            c_in = planes * expansion;
            blocks.push(block);
        }
        stages.push(Stage(blocks));
    }
    ResNet {
        conv1: conv2d(p / "conv1", reg, in_channels, 64, 7, 2, 3, 1),
        bn1: batch_norm2d(p / "bn1", 64),
        maxpool: true,
        stages,
        fc: classes.map(|k| linear(p / "fc", reg, 512 * expansion, k)),
    }
}
