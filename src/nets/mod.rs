//! Networks. Model code only builds layers; the weight path of each layer is set elsewhere.
pub mod deeplab;
pub mod layers;
pub mod resnet;
pub mod yolo;

use crate::config::{Arch, ModelConfig};
use layers::LayerRegistry;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

/// A network with its variables and the registry of its hooked layers.
pub struct Network {
    pub vs: nn::VarStore,
    pub model: Box<dyn ModuleT>,
    pub layers: LayerRegistry,
    pub arch: String,
}

impl Network {
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.model.forward_t(xs, train)
    }
}

/// Builds a classification network from its config (initialisation draws from the global
/// generator; seed it first).
pub fn build_classifier(cfg: &ModelConfig, device: Device) -> Network {
    let vs = nn::VarStore::new(device);
    let layers = LayerRegistry::default();
    let root = vs.root();
    let (c, k) = (cfg.in_channels, cfg.num_classes);
    let model = match cfg.arch {
        Arch::Resnet20 => resnet::cifar_resnet(&root, &layers, 20, c, k),
        Arch::Resnet32 => resnet::cifar_resnet(&root, &layers, 32, c, k),
        Arch::Resnet44 => resnet::cifar_resnet(&root, &layers, 44, c, k),
        Arch::Resnet56 => resnet::cifar_resnet(&root, &layers, 56, c, k),
        Arch::Resnet18 => {
            resnet::torchvision_resnet(&root, &layers, resnet::TvDepth::R18, c, k, [false; 3])
        }
        Arch::Resnet34 => {
            resnet::torchvision_resnet(&root, &layers, resnet::TvDepth::R34, c, k, [false; 3])
        }
        Arch::Resnet50 => {
            resnet::torchvision_resnet(&root, &layers, resnet::TvDepth::R50, c, k, [false; 3])
        }
    };
    Network { vs, model: Box::new(model), layers, arch: cfg.arch.name().to_string() }
}
