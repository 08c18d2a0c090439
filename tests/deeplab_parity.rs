//! DeepLabv3 parity with torchvision: a Python script in the test venv builds
//! `deeplabv3_resnet50` with a fixed seed and random weights and exports its state dict, an
//! odd-sized input and its eval-mode logits; the Rust model loads the file strictly (no
//! missing or unexpected key, `num_batches_tracked` included) and matches within 1e-4.
mod common;
use common::*;
use gqcim::checkpoint::{load_strict, read_tensors};
use gqcim::nets::deeplab::{build_deeplab, deeplabv3};
use gqcim::nets::layers::{LayerOp, LayerRegistry};
use gqcim::nets::resnet::TvDepth;
use std::process::Command;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[test]
fn deeplabv3_resnet50_matches_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let script = repo_root().join("tests/python/export_torchvision_deeplab.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("cannot run the venv python");
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut net = build_deeplab("deeplabv3_resnet50", 3, 21, Device::Cpu).unwrap();
    load_strict(&mut net.vs, &dir.path().join("deeplabv3_resnet50.safetensors")).unwrap();
    let io = read_tensors(&dir.path().join("deeplabv3_resnet50_io.safetensors")).unwrap();
    let logits = tch::no_grad(|| net.forward_t(&io["input"], false));
    assert_eq!(logits.size(), vec![1, 21, 65, 65]);
    let diff = (&logits - &io["logits"]).abs().max().double_value(&[]);
    let scale = io["logits"].abs().max().double_value(&[]);
    println!("deeplabv3_resnet50: max |logit difference| {diff:e} (logit scale {scale})");
    assert!(scale > 1e-3, "degenerate reference logits");
    assert!(diff < 1e-4, "max |logit difference| {diff} (logit scale {scale})");
    // Backbone (53 convs incl. 4 projections) + 5 ASPP branches + projection + 2 head convs.
    assert_eq!(net.layers.names().len(), 53 + 5 + 1 + 2);
}

/// The small CPU variant: ResNet-18 at output stride 8 on one-channel input.
#[test]
fn deeplabv3_resnet18_os8_shapes_and_hooked_dilation() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let reg = LayerRegistry::default();
    let model = deeplabv3(&vs.root(), &reg, TvDepth::R18, 1, 11, 8, 64, [2, 4, 6]);
    let x = Tensor::randn([2, 1, 64, 64], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.forward_t(&x, false));
    assert_eq!(y.size(), vec![2, 11, 64, 64]);
    // Train mode runs too (dropout and batch statistics) and is differentiable.
    let loss = model.forward_t(&x, true).square().mean(Kind::Float);
    loss.backward();

    let dilation = |name: &str| match reg.get(name).unwrap_or_else(|| panic!("no {name}")).spec.op {
        LayerOp::Conv2d { dilation, .. } => dilation,
        LayerOp::Linear => panic!("{name} is not a conv"),
    };
    // Output stride 8: layer3 dilates by 2, layer4 by 4 (first blocks keep the previous rate).
    assert_eq!(dilation("backbone.layer2.0.conv1"), 1);
    assert_eq!(dilation("backbone.layer3.0.conv1"), 1);
    assert_eq!(dilation("backbone.layer3.1.conv1"), 2);
    assert_eq!(dilation("backbone.layer4.0.conv1"), 2);
    assert_eq!(dilation("backbone.layer4.1.conv2"), 4);
    for (i, rate) in [(1, 2), (2, 4), (3, 6)] {
        assert_eq!(dilation(&format!("classifier.0.convs.{i}.0")), rate);
    }
    let names = reg.names();
    assert!(names.iter().all(|n| !n.contains("fc")), "{names:?}");
    assert_eq!(names.last().unwrap(), "classifier.4");
    assert!(reg.get("classifier.4").unwrap().spec.bias.is_some());
    assert!(reg.get("classifier.1").unwrap().spec.bias.is_none());
    // The ASPP pooling branch sits at index 1 of its Sequential, as in torchvision.
    assert!(names.contains(&"classifier.0.convs.4.1".to_string()));
    assert!(names.contains(&"classifier.0.project.0".to_string()));
}

#[test]
fn deeplabv3_output_stride_16_and_unknown_name() {
    let vs = nn::VarStore::new(Device::Cpu);
    let reg = LayerRegistry::default();
    let model = deeplabv3(&vs.root(), &reg, TvDepth::R18, 3, 5, 16, 32, [1, 2, 3]);
    let x = Tensor::zeros([1, 3, 33, 47], (Kind::Float, Device::Cpu));
    assert_eq!(tch::no_grad(|| model.forward_t(&x, false)).size(), vec![1, 5, 33, 47]);
    assert_eq!(model.logits_at_stride(&x, false).size(), vec![1, 5, 3, 3]);
    let err = build_deeplab("deeplabv3_vgg", 3, 21, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("deeplabv3_vgg") && err.contains("model.arch"), "{err}");
}
