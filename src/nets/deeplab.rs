//! DeepLabv3 (Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
//! Image Segmentation", arXiv:1706.05587, 2017) with torchvision's structure and state-dict
//! names (`torchvision.models.segmentation.deeplabv3_resnet50`, no auxiliary classifier):
//!
//! - `backbone.*`: a torchvision ResNet without `fc`, its last stride(s) replaced by dilation
//!   (output stride 8: `replace_stride_with_dilation=[False, True, True]`; 16: `[False, False,
//!   True]`), paper sec. 3.1 / 4.1.
//! - `classifier.0`: ASPP (paper sec. 3.3): a 1x1 branch, three 3x3 atrous branches (padding =
//!   rate, so the map size is kept), and image pooling (global average, 1x1 conv, BN, ReLU,
//!   bilinear upsampling back to the map); concatenated and projected by a 1x1 conv, BN, ReLU,
//!   Dropout(0.5).
//! - `classifier.1/2` a 3x3 conv + BN + ReLU, `classifier.4` a 1x1 conv with bias to the
//!   classes; the logits are bilinearly upsampled to the input size (align_corners=False).
//!
//! Every conv (the dilated ones included) is built through `layers::conv2d*`, so quantizers
//! and the analog crossbar reach the segmentation head exactly as they reach a classifier.
//! Weights are initialised as the rest of the crate (kaiming fan-out); torchvision's head uses
//! PyTorch's default conv init, which only matters when training from scratch.
use super::layers::{
    batch_norm2d, conv2d, conv2d_grouped, BatchNorm2d, HookedLayer, LayerRegistry,
};
use super::resnet::{torchvision_backbone, tv_out_channels, ResNet, TvDepth};
use super::Network;
use crate::error::{invalid, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

/// Conv + BN + ReLU, named `<p>.0` / `<p>.1` (torchvision's `Sequential` / `ASPPConv`).
#[derive(Debug)]
struct ConvBnRelu {
    conv: HookedLayer,
    bn: BatchNorm2d,
}

impl ConvBnRelu {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, k: i64, rate: i64) -> Self {
        // padding = rate * (k - 1) / 2 keeps the map size for both the 1x1 and 3x3 branches.
        let padding = rate * (k - 1) / 2;
        ConvBnRelu {
            conv: conv2d(&p / "0", reg, c_in, c_out, k, 1, padding, rate),
            bn: batch_norm2d(&p / "1", c_out),
        }
    }
}

impl ModuleT for ConvBnRelu {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.conv.forward_bn(xs, &self.bn, true, train)
    }
}

/// The image-pooling branch (torchvision `ASPPPooling`: index 0 is the parameter-free
/// pooling, so the conv is `.1` and the BN `.2`).
#[derive(Debug)]
struct AsppPooling {
    conv: HookedLayer,
    bn: BatchNorm2d,
}

impl ModuleT for AsppPooling {
    /// xs: [b, c_in, h, w] -> [b, c_out, h, w], constant over the map.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let size = xs.size();
        let ys = xs.adaptive_avg_pool2d([1, 1]);
        let ys = self.conv.forward_bn(&ys, &self.bn, true, train);
        ys.upsample_bilinear2d(&size[2..], false, None, None)
    }
}

/// Atrous spatial pyramid pooling (`classifier.0`).
#[derive(Debug)]
struct Aspp {
    branches: Vec<ConvBnRelu>,
    pooling: AsppPooling,
    project: ConvBnRelu,
}

impl Aspp {
    fn new(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64, rates: [i64; 3]) -> Self {
        let convs = &p / "convs";
        let mut branches = vec![ConvBnRelu::new(&convs / 0, reg, c_in, c_out, 1, 1)];
        for (i, &rate) in rates.iter().enumerate() {
            branches.push(ConvBnRelu::new(&convs / (i + 1), reg, c_in, c_out, 3, rate));
        }
        let pp = &convs / 4;
        let pooling = AsppPooling {
            conv: conv2d(&pp / "1", reg, c_in, c_out, 1, 1, 0, 1),
            bn: batch_norm2d(&pp / "2", c_out),
        };
        let project = ConvBnRelu::new(&p / "project", reg, 5 * c_out, c_out, 1, 1);
        Aspp { branches, pooling, project }
    }
}

impl ModuleT for Aspp {
    /// xs: [b, c_in, h, w] -> [b, c_out, h, w].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut outs: Vec<Tensor> = self.branches.iter().map(|b| b.forward_t(xs, train)).collect();
        outs.push(self.pooling.forward_t(xs, train));
        self.project.forward_t(&Tensor::cat(&outs, 1), train).dropout(0.5, train)
    }
}

/// DeepLabv3: dilated ResNet backbone, ASPP head, bilinear upsampling to the input size.
/// Training needs batches of at least 2, as in PyTorch: the image-pooling branch's BN sees a
/// single value per channel and sample.
#[derive(Debug)]
pub struct DeepLabV3 {
    pub backbone: ResNet,
    aspp: Aspp,
    head_conv: HookedLayer,
    head_bn: BatchNorm2d,
    classifier: HookedLayer,
}

impl DeepLabV3 {
    /// Logits at the backbone's output stride: [b, c_in, h, w] -> [b, classes, h/s, w/s].
    pub fn logits_at_stride(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.aspp.forward_t(&self.backbone.features(xs, train), train);
        let ys = self.head_conv.forward_bn(&ys, &self.head_bn, true, train);
        self.classifier.forward_t(&ys, train)
    }
}

impl ModuleT for DeepLabV3 {
    /// xs: [b, c_in, h, w] -> logits [b, classes, h, w].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let size = xs.size();
        self.logits_at_stride(xs, train).upsample_bilinear2d(&size[2..], false, None, None)
    }
}

/// Builds DeepLabv3 under `p` (`backbone.*`, `classifier.*`).
///
/// torchvision's `deeplabv3_resnet50` is `(R50, 3, 21, 8, 256, [12, 24, 36])`: the paper's
/// rates [6, 12, 18] at output stride 16, doubled at output stride 8 (sec. 3.3).
///
/// # Panics
/// If `output_stride` is not 8 or 16 (the two strides the paper and torchvision use).
#[allow(clippy::too_many_arguments)]
pub fn deeplabv3(
    p: &nn::Path,
    reg: &LayerRegistry,
    depth: TvDepth,
    in_channels: i64,
    num_classes: i64,
    output_stride: i64,
    aspp_channels: i64,
    rates: [i64; 3],
) -> DeepLabV3 {
    let dilate = match output_stride {
        8 => [false, true, true],
        16 => [false, false, true],
        s => panic!("DeepLabv3 output stride must be 8 or 16, got {s}"),
    };
    let backbone = torchvision_backbone(&(p / "backbone"), reg, depth, in_channels, dilate);
    let c = aspp_channels;
    let head = p / "classifier";
    DeepLabV3 {
        backbone,
        aspp: Aspp::new(&head / 0, reg, tv_out_channels(depth), c, rates),
        head_conv: conv2d(&head / 1, reg, c, c, 3, 1, 1, 1),
        head_bn: batch_norm2d(&head / 2, c),
        // The only conv with a bias: nothing follows it to absorb one.
        classifier: conv2d_grouped(&head / 4, reg, c, num_classes, 1, 1, 0, 1, 1, true),
    }
}

/// Builds a named DeepLabv3 network (initialisation draws from the global generator):
/// - `deeplabv3_resnet50`: torchvision's model (output stride 8, 256 ASPP channels, rates
///   [12, 24, 36]);
/// - `deeplabv3_resnet18`: a small CPU variant (output stride 8, 64 ASPP channels, rates
///   [3, 6, 9]: small crops give small maps, e.g. 16x16 for 128 px, and a rate beyond the
///   map reduces a 3x3 atrous conv to its centre tap, paper sec. 3.3).
pub fn build_deeplab(
    name: &str,
    in_channels: i64,
    num_classes: i64,
    device: Device,
) -> Result<Network> {
    let (depth, aspp_channels, rates) = match name {
        "deeplabv3_resnet50" => (TvDepth::R50, 256, [12, 24, 36]),
        "deeplabv3_resnet18" => (TvDepth::R18, 64, [3, 6, 9]),
        other => {
            let known = "deeplabv3_resnet50 or deeplabv3_resnet18";
            return Err(invalid("model.arch", format!("unknown DeepLab `{other}` ({known})")));
        }
    };
    let vs = nn::VarStore::new(device);
    let layers = LayerRegistry::default();
    let model =
        deeplabv3(&vs.root(), &layers, depth, in_channels, num_classes, 8, aspp_channels, rates);
    Ok(Network { vs, model: Box::new(model), layers, arch: name.to_string() })
}
