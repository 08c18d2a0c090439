//! Training end to end on a toy IDX set: it learns, it writes TensorBoard events that
//! TensorBoard's own reader parses, and a run killed with SIGKILL mid-epoch resumes to a
//! complete run whose weights equal those of an uninterrupted run.
mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn read_json(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn trains_and_tensorboard_reads_events() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 1024, 256);
    let cfg = toy_config(d.path(), &root, 3, "");
    let run = d.path().join("run");
    let o = run_gqcim(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = read_json(&run.join("results.json"));
    let acc = results["metrics"]["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "toy set not learned: accuracy {acc}");
    assert_eq!(results["seed"], 3);
    assert!(results["git_commit"].as_str().is_some());
    assert!(results["train_images_per_second"].as_f64().unwrap() > 0.0);
    assert!(run.join("config.yaml").is_file());

    let out = Command::new(python())
        .arg(repo_root().join("tests/python/read_tensorboard.py"))
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for tag in ["train/loss", "train/lr", "train/accuracy", "test/accuracy", "test/loss"] {
        let series =
            tb["scalars"][tag].as_array().unwrap_or_else(|| panic!("no scalar {tag}: {tb}"));
        // One point per epoch; the test curves start with the untrained network at step 0.
        let points = if tag.starts_with("test/") { 4 } else { 3 };
        assert_eq!(series.len(), points, "{tag}: {series:?}");
    }
    let untrained = results["untrained"]["test_accuracy"].as_f64().unwrap();
    assert_eq!(tb["scalars"]["test/accuracy"][0][0], 0);
    assert!((tb["scalars"]["test/accuracy"][0][1].as_f64().unwrap() - untrained).abs() < 1e-6);
    assert!(acc > untrained, "trained {acc} vs untrained {untrained}");
    // The logged test accuracy of the last epoch is the one in results.json.
    let last = tb["scalars"]["test/accuracy"][3][1].as_f64().unwrap();
    assert!((last - acc).abs() < 1e-6, "TensorBoard {last} vs results.json {acc}");
    assert_eq!(tb["scalars"]["test/accuracy"][3][0], 3);
    // One weight histogram per hooked layer per epoch, counting all its weights.
    let conv1 = tb["histograms"]["weights/conv1"].as_array().expect("no conv1 histogram");
    assert_eq!(conv1.len(), 3);
    assert_eq!(conv1[0][1].as_f64().unwrap(), 16.0 * 9.0);
    assert!(tb["histograms"]["weights/layer3.2.conv2"].is_array());
    assert!(tb["histograms"]["weights/fc"].is_array());
}

#[test]
fn sigkill_mid_epoch_then_resume_completes_like_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 1536, 128);
    let cfg = toy_config(d.path(), &root, 3, "");
    let cfg_s = cfg.to_str().unwrap();

    // Reference: the same run without interruption.
    let reference = d.path().join("reference");
    let o = run_gqcim(&["train", "--config", cfg_s, "--run-dir", reference.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let run = d.path().join("killed");
    let mut child = Command::new(bin())
        .args(["train", "--config", cfg_s, "--run-dir", run.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let meta = run.join("checkpoints/last.json");
    let start = Instant::now();
    while !meta.is_file() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Epoch 1 is saved; kill during epoch 2.
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = read_json(&meta)["epoch"].as_u64().unwrap();
    assert!(killed_at < 3, "the run finished before the kill");
    assert!(!run.join("results.json").exists());

    let o =
        run_gqcim(&["train", "--config", cfg_s, "--run-dir", run.to_str().unwrap(), "--resume"]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let results = read_json(&run.join("results.json"));
    assert_eq!(results["history"].as_array().unwrap().len(), 3);
    assert_eq!(read_json(&meta)["epoch"], 3);

    // The resumed model loads and equals the uninterrupted one: data order, augmentation
    // and momentum buffers are all restored.
    let a = gqcim::checkpoint::read_tensors(&run.join("model.safetensors")).unwrap();
    let b = gqcim::checkpoint::read_tensors(&reference.join("model.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let diff = (t.to_kind(tch::Kind::Double) - b[name].to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "{name} differs by {diff} after resume");
    }
    let o = run_gqcim(&[
        "eval",
        "--config",
        cfg_s,
        "--checkpoint",
        run.join("model.safetensors").to_str().unwrap(),
        "--run-dir",
        d.path().join("eval").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn nan_loss_stops_with_clear_message_and_keeps_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    write_toy_idx(&root, 256, 64);
    // Weight decay 1 at lr 10 multiplies every parameter by about -9 per step: the loss
    // overflows within a few dozen steps, deterministically.
    let cfg = toy_config(d.path(), &root, 1, "");
    let run = d.path().join("run");
    let o = run_gqcim(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "train.lr=10",
        "--set",
        "train.epochs=10",
        "--set",
        "train.weight_decay=1.0",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // The loss check of a step, or the evaluation that follows the epoch, sees it first.
    assert!(err.contains("loss became") || err.contains("NaN or infinite"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
