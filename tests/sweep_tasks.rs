//! The grid's plan → cells → merge on detection and segmentation plans: `compare-cell`
//! rebuilds each task's harness from the plan alone, and the merged results.csv equals the
//! in-process run's byte for byte (the classification grid is covered by tests/sweep.rs).
mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn gqcim(args: &[String]) -> std::process::Output {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").output().expect("cannot start gqcim")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A tiny grid of `verb` on the committed reference: fp32 and gq N = 2 (two fine-tuning
/// steps) at σ = 0 and 5%, 2 trials, a handful of generated scenes.
fn tiny_grid(verb: &str, config: &str, ckpt: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let root = repo_root();
    let mut v: Vec<String> = vec![
        verb.into(),
        "--config".into(),
        root.join(config).display().to_string(),
        "--checkpoint".into(),
        root.join(ckpt).display().to_string(),
    ];
    let sets = [
        format!("data.fmnist_root={}", fmnist()),
        format!("out_dir={}", out.display()),
        "threads=1".into(),
        "device=cpu".into(),
        "data.scenes.train_scenes=32".into(),
        "data.scenes.test_scenes=8".into(),
        "compare.eval_limit=0".into(),
        "compare.methods=[gq]".into(),
        "compare.levels=[2]".into(),
        "compare.modes=[qat]".into(),
        "compare.sigmas=[0.0, 0.05]".into(),
        "analog.trials=2".into(),
        "finetune.epochs=0.5".into(),
        "finetune.batch_size=8".into(),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        v.push("--set".into());
        v.push(s.into());
    }
    v
}

fn plan_cells_merge_equals_one_process(verb: &str, config: &str, ckpt: &str, extra: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let mut args = tiny_grid(verb, config, ckpt, &d.path().join("out-a"), extra);
    args.extend(["--run-dir".into(), a.display().to_string()]);
    ok(&gqcim(&args));
    let csv_a = read(&a.join("results.csv"));
    assert_eq!(csv_a.lines().count(), 1 + 4, "fp32 and gq at two sigmas: {csv_a}");

    let b = d.path().join("b");
    let mut pargs = tiny_grid(verb, config, ckpt, &d.path().join("out-b"), extra);
    pargs.extend(["--plan".into(), "--run-dir".into(), b.display().to_string()]);
    ok(&gqcim(&pargs));
    let plan: serde_json::Value = serde_json::from_str(&read(&b.join("plan.json"))).unwrap();
    let units = plan["units"].as_array().unwrap().len();
    assert_eq!(units, 2);
    ok(&gqcim(&[
        "compare-cell".into(),
        "--run-dir".into(),
        b.display().to_string(),
        "--index".into(),
        "0".into(),
        "--count".into(),
        units.to_string(),
    ]));
    ok(&gqcim(&["merge".into(), "--run-dir".into(), b.display().to_string()]));
    assert_eq!(
        read(&b.join("results.csv")),
        csv_a,
        "{verb}: cells + merge differ from one process"
    );
    // What merge writes for TensorBoard (the grid's run with the scenes side by side, every
    // network's run) is the same bytes however the cells ran (layout: glance::tb_grid).
    let merged = "events.out.tfevents.0000000000.gqcim-merge";
    for run in ["tb", "tb/fp32", "tb/gq-qat-N2"] {
        let (ea, eb) = (a.join(run).join(merged), b.join(run).join(merged));
        let bytes = std::fs::read(&ea).unwrap_or_else(|e| panic!("{}: {e}", ea.display()));
        assert!(bytes == std::fs::read(&eb).unwrap(), "{verb}: {run} differs");
    }
    let task = verb.trim_end_matches("-compare");
    let tag = format!("samples/{task}/sample_0/N2");
    let grid_run = std::fs::read(a.join("tb").join(merged)).unwrap();
    assert!(grid_run.windows(tag.len()).any(|w| w == tag.as_bytes()), "{verb}: no {tag}");
}

#[test]
fn detection_grid_through_cells_equals_one_process() {
    plan_cells_merge_equals_one_process(
        "detect-compare",
        "configs/detect_scenes.yaml",
        "models/yolo_scenes.safetensors",
        &["eval.tb_images=1"],
    );
}

#[test]
fn segmentation_grid_through_cells_equals_one_process() {
    plan_cells_merge_equals_one_process(
        "segment-compare",
        "configs/segment_scenes.yaml",
        "models/deeplab_scenes.safetensors",
        &["eval.sample_images=1"],
    );
}
