//! Architecture parity with torchvision: a Python script in the test venv builds resnet18 and
//! resnet50 with a fixed seed and random weights and exports a state dict, an input and its
//! eval-mode logits; the Rust model loads the file strictly and matches within 1e-4.
mod common;
use common::*;
use gqcim::checkpoint::{load_strict, read_tensors};
use gqcim::config::{Arch, ModelConfig};
use gqcim::nets::build_classifier;
use std::process::Command;

fn parity(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let script = repo_root().join("tests/python/export_torchvision_resnet.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(arch.name())
        .arg(dir.path())
        .output()
        .expect("cannot run the venv python");
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    let cfg = ModelConfig { arch, in_channels: 3, num_classes: 10 };
    let mut net = build_classifier(&cfg, tch::Device::Cpu);
    // Strict: no missing, no unexpected keys, same shapes (num_batches_tracked included).
    load_strict(&mut net.vs, &dir.path().join(format!("{}.safetensors", arch.name()))).unwrap();
    let io = read_tensors(&dir.path().join(format!("{}_io.safetensors", arch.name()))).unwrap();
    let logits = tch::no_grad(|| net.forward_t(&io["input"], false));
    let diff = (&logits - &io["logits"]).abs().max().double_value(&[]);
    let scale = io["logits"].abs().max().double_value(&[]);
    assert!(scale > 1e-3, "degenerate reference logits");
    assert!(diff < 1e-4, "{}: max |logit difference| {diff} (logit scale {scale})", arch.name());
}

#[test]
fn resnet18_matches_torchvision() {
    parity(Arch::Resnet18);
}

#[test]
fn resnet50_matches_torchvision() {
    parity(Arch::Resnet50);
}

/// The CIFAR ResNets have the documented depth and parameter count (He et al.: 0.27M for
/// ResNet-20 with option-A shortcuts; option-B projections add the 1x1 convs).
#[test]
fn cifar_resnet_depths_and_names() {
    for (arch, convs) in [(Arch::Resnet20, 19 + 2), (Arch::Resnet56, 55 + 2)] {
        let cfg = ModelConfig { arch, in_channels: 1, num_classes: 10 };
        let net = build_classifier(&cfg, tch::Device::Cpu);
        let hooked = net.layers.names();
        // convs in the main path + 2 projection shortcuts, plus the classifier.
        assert_eq!(hooked.len(), convs + 1, "{hooked:?}");
        assert!(hooked.contains(&"layer2.0.downsample.0".to_string()));
        assert_eq!(hooked.last().unwrap(), "fc");
        let x = tch::Tensor::zeros([2, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(net.forward_t(&x, false).size(), vec![2, 10]);
    }
    let net = build_classifier(&ModelConfig::default(), tch::Device::Cpu);
    let params: i64 = net.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    assert!((270_000..=280_000).contains(&params), "ResNet-20 has {params} parameters");
}
