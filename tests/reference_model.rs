//! The committed reference checkpoint: its manifest's sha256 and test accuracy hold.
mod common;
use common::*;

#[test]
fn manifest_matches_checkpoint_file_and_accuracy() {
    let root = repo_root();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("models/resnet20_fmnist.json")).unwrap(),
    )
    .unwrap();
    let ckpt = root.join(manifest["file"].as_str().unwrap());
    assert_eq!(
        gqcim::checkpoint::sha256_file(&ckpt).unwrap(),
        manifest["sha256"].as_str().unwrap()
    );
    let expected = manifest["test_accuracy"].as_f64().unwrap();
    assert!(expected >= 0.93, "reference below the 93% target: {expected}");

    // Evaluate it on the real Fashion-MNIST test set, as `make classify` does.
    let fmnist =
        std::env::var("GQCIM_FMNIST_DIR").unwrap_or("/usr/share/datasets/fashion-mnist".into());
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("eval");
    let o = run_gqcim(&[
        "eval",
        "--config",
        root.join("configs/classify_fmnist.yaml").to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        &format!("data.root={fmnist}"),
        "--set",
        "device=cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let acc = r["metrics"]["test_accuracy"].as_f64().unwrap();
    assert_eq!(r["metrics"]["test_images"], 10_000);
    assert!((acc - expected).abs() < 1e-9, "accuracy {acc} differs from the manifest's {expected}");
}
