//! Bad input gets one clear error naming the file, field or layer: exit code 2, no panic,
//! no backtrace. One test per case of the foundation issue.
mod common;
use common::*;
use std::path::Path;

fn assert_clean_failure(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit code 2, stderr: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(!err.contains("backtrace"), "backtrace in the error: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn unknown_key_names_section_and_suggests() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.yaml", "train:\n  epocs: 3\n");
    let o = run_gqcim(&["train", "--config", &cfg]);
    assert_clean_failure(
        &o,
        &["c.yaml", "unknown key `epocs`", "`train`", "did you mean `epochs`"],
    );
}

#[test]
fn unknown_enum_value_suggests() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.yaml", "model:\n  arch: resnet21\n");
    let o = run_gqcim(&["train", "--config", &cfg]);
    assert_clean_failure(
        &o,
        &["unknown value `resnet21`", "model.arch", "did you mean `resnet20`"],
    );
}

#[test]
fn wrong_type_names_field() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.yaml", "train:\n  batch_size: lots\n");
    let o = run_gqcim(&["train", "--config", &cfg]);
    assert_clean_failure(&o, &["c.yaml", "train.batch_size", "invalid type"]);
}

#[test]
fn out_of_range_value_names_field_and_range() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.yaml", "seed: 1\n");
    let o = run_gqcim(&["train", "--config", &cfg, "--set", "train.lr=-0.5"]);
    assert_clean_failure(&o, &["train.lr", "(0, 10]", "-0.5"]);
    let o = run_gqcim(&["train", "--config", &cfg, "--set", "train.momentum=1.5"]);
    assert_clean_failure(&o, &["train.momentum", "[0, 0.999]"]);
}

#[test]
fn unknown_key_in_set_override_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.yaml", "seed: 1\n");
    let o = run_gqcim(&["train", "--config", &cfg, "--set", "data.rot=/tmp"]);
    assert_clean_failure(&o, &["unknown key `rot`", "did you mean `root`"]);
}

#[test]
fn missing_data_file_gives_install_command() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "c.yaml",
        &format!("device: cpu\ndata:\n  root: {}/nowhere\n", d.path().display()),
    );
    let o = run_gqcim(&["train", "--config", &cfg]);
    assert_clean_failure(
        &o,
        &[
            "nowhere/train-images-idx3-ubyte",
            "not found",
            "make data",
            "apt-get install dataset-fashion-mnist",
        ],
    );
}

#[test]
fn truncated_idx_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 20, 10);
    let f = root.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let cfg = toy_config(d.path(), &root, 1, "");
    let o = run_gqcim(&["train", "--config", cfg.to_str().unwrap()]);
    assert_clean_failure(&o, &["train-images-idx3-ubyte", "truncated"]);
}

#[test]
fn wrong_magic_idx_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 20, 10);
    let f = root.join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[2] = 0x0D; // float32 type code
    std::fs::write(&f, &bytes).unwrap();
    let cfg = toy_config(d.path(), &root, 1, "");
    let o = run_gqcim(&["train", "--config", cfg.to_str().unwrap()]);
    assert_clean_failure(&o, &["t10k-labels-idx1-ubyte", "wrong magic number"]);
}

/// A checkpoint trained for one shape and evaluated with another: names the tensors.
#[test]
fn mismatched_checkpoint_names_tensors() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 64, 32);
    let cfg = toy_config(d.path(), &root, 1, "");
    let run = d.path().join("run");
    let o = run_gqcim(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ckpt = run.join("model.safetensors");
    let c = ckpt.to_str().unwrap();
    // Deeper network: layer1.3 ... are missing from the file.
    let o = run_gqcim(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        c,
        "--set",
        "model.arch=resnet32",
    ]);
    assert_clean_failure(&o, &["model.safetensors", "missing tensors", "layer1.3."]);
    // Different classifier width: shape mismatch names fc.weight.
    let o = run_gqcim(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        c,
        "--set",
        "model.num_classes=12",
    ]);
    assert_clean_failure(
        &o,
        &["`fc.weight` has shape [10, 64] in the file, the model expects [12, 64]"],
    );
    // Not a safetensors file at all.
    let bogus = d.path().join("bogus.safetensors");
    std::fs::write(&bogus, b"hello").unwrap();
    let o = run_gqcim(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        bogus.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["bogus.safetensors", "not a readable safetensors file"]);
}
