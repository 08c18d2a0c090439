//! Sweeps that scale out: the grid as plan → cells → merge gives the same results.csv in one
//! process, cell by cell, after a kill at a random moment, and from the network cache; bad
//! run folders are named errors.
mod common;
use common::grid_args;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn gqcim(args: &[String]) -> std::process::Output {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").output().expect("cannot start gqcim")
}

fn with(mut a: Vec<String>, more: &[&str]) -> Vec<String> {
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The TensorBoard event files under `dir` (path relative to it -> bytes).
fn event_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains("tfevents") {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn plan_cells_merge_kill_and_cache_all_give_one_results_csv() {
    let d = tempfile::tempdir().unwrap();
    let sig = "[0.0, 0.02]";

    // In one process.
    let a = d.path().join("a");
    let mut args = vec!["compare".to_string()];
    args.extend(grid_args(&d.path().join("out-a"), sig));
    ok(&gqcim(&with(args.clone(), &["--run-dir", a.to_str().unwrap()])));
    let csv_a = read(a.join("results.csv"));
    assert_eq!(csv_a.lines().count(), 1 + 4, "fp32 and gq at two sigmas: {csv_a}");
    let res: serde_json::Value = serde_json::from_str(&read(a.join("results.json"))).unwrap();
    assert_eq!(res["seeds"], serde_json::json!([1, 2]));
    assert_eq!(res["threads"], 1);
    assert_eq!(res["seed_spread"][0]["seeds"], 2);
    assert!(res["paired_differences"].as_array().is_some());
    assert!(
        read(a.join("table.md")).contains("best uniform")
            || res["paired_differences"].as_array().unwrap().is_empty()
    );

    // Plan, cells one by one (a fresh cache), merge.
    let b = d.path().join("b");
    let mut pargs = vec!["compare".to_string(), "--plan".into()];
    pargs.extend(grid_args(&d.path().join("out-b"), sig));
    ok(&gqcim(&with(pargs, &["--run-dir", b.to_str().unwrap()])));
    let plan: serde_json::Value = serde_json::from_str(&read(b.join("plan.json"))).unwrap();
    assert_eq!(plan["units"].as_array().unwrap().len(), 4);
    let merge = |r: &Path| gqcim(&["merge".into(), "--run-dir".into(), r.display().to_string()]);
    // Merging an incomplete grid fails and lists the missing units in sbatch form.
    let early = merge(&b);
    assert_eq!(early.status.code(), Some(2));
    assert!(stderr(&early).contains("indices 0-3"), "{}", stderr(&early));
    let cell = |i: &str, n: &str| {
        gqcim(&[
            "compare-cell".into(),
            "--run-dir".into(),
            b.display().to_string(),
            "--index".into(),
            i.into(),
            "--count".into(),
            n.into(),
        ])
    };
    ok(&cell("0", "3"));
    let missing = gqcim(&[
        "merge".into(),
        "--run-dir".into(),
        b.display().to_string(),
        "--list-missing".into(),
    ]);
    assert_eq!(String::from_utf8_lossy(&missing.stdout).trim(), "3");
    ok(&cell("3", "1"));
    ok(&cell("3", "1")); // a unit whose result exists returns at once
    let oob = cell("4", "1");
    assert_eq!(oob.status.code(), Some(2));
    assert!(stderr(&oob).contains("out of range"), "{}", stderr(&oob));
    ok(&merge(&b));
    assert_eq!(read(b.join("results.csv")), csv_a, "cell-by-cell differs from one process");
    // TensorBoard (issue 20's layout, glance::tb_grid): merge writes the grid's and every
    // network's run as the same bytes however the cells ran; each unit (one per seed) logs
    // into its own run under its network.
    let (tb_a, tb_b) = (event_files(&a.join("tb")), event_files(&b.join("tb")));
    assert_eq!(tb_a.keys().collect::<Vec<_>>(), tb_b.keys().collect::<Vec<_>>());
    for (rel, bytes) in tb_a.iter().filter(|(r, _)| r.ends_with("gqcim-merge")) {
        assert!(tb_b[rel] == *bytes, "tb/{rel}: merged in one process vs cell by cell");
    }
    for run in ["", "fp32/", "gq-qat-N2/", "fp32/s1/", "fp32/s2/", "gq-qat-N2/s1/", "gq-qat-N2/s2/"]
    {
        assert!(
            tb_a.keys().any(|k| k.strip_prefix(run).is_some_and(|f| !f.contains('/'))),
            "no run tb/{run}: {:?}",
            tb_a.keys()
        );
    }

    // Two worker processes on this machine (a fresh cache): each unit runs once, in either.
    let w = d.path().join("w");
    let mut wargs = vec!["compare".to_string(), "--workers".into(), "2".into()];
    wargs.extend(grid_args(&d.path().join("out-w"), sig));
    let wo = gqcim(&with(wargs, &["--run-dir", w.to_str().unwrap()]));
    ok(&wo);
    assert_eq!(read(w.join("results.csv")), csv_a, "two workers differ from one process");
    let res_w: serde_json::Value = serde_json::from_str(&read(w.join("results.json"))).unwrap();
    assert_eq!(res_w["workers"], 2);
    // Every unit ran exactly once: the parent prints `[k/n] key (t s)` for its own units,
    // the child `unit i key: ... (t s)`; skipped ones say so instead of a time.
    let out = String::from_utf8_lossy(&wo.stdout).to_string();
    let ran = out
        .lines()
        .filter(|l| (l.starts_with('[') || l.starts_with("unit ")) && l.trim_end().ends_with(" s)"))
        .count();
    assert_eq!(ran, 4, "each of the 4 units once across both workers:\n{out}");

    // Killed at a random moment, then the same command again.
    let c = d.path().join("c");
    let cargs = with(
        {
            let mut v = vec!["compare".to_string()];
            v.extend(grid_args(&d.path().join("out-c"), sig));
            v
        },
        &["--run-dir", c.to_str().unwrap()],
    );
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let delay = Duration::from_millis(1500 + (nanos % 6000) as u64);
    let mut child = Command::new(bin()).args(&cargs).env("RUST_LOG", "warn").spawn().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    ok(&gqcim(&cargs));
    assert_eq!(read(c.join("results.csv")), csv_a, "resumed after a kill at {delay:?}, differs");

    // More sigmas in out-a: the fine-tuned networks come from the cache, the shared rows agree.
    let e = d.path().join("e");
    let mut eargs = vec!["compare".to_string()];
    eargs.extend(grid_args(&d.path().join("out-a"), "[0.0, 0.01, 0.02]"));
    ok(&gqcim(&with(eargs, &["--run-dir", e.to_str().unwrap()])));
    let res_e: serde_json::Value = serde_json::from_str(&read(e.join("results.json"))).unwrap();
    assert_eq!(res_e["units_cached"], 2, "both gq networks from the cache");
    // Trial seeds follow the σ's position in the list, so the σ = 0 rows (first in both)
    // must be unchanged, and every network's digital metric too.
    let rows_e: Vec<String> = read(e.join("results.csv")).lines().map(String::from).collect();
    for line in csv_a.lines().skip(1).filter(|l| l.split(',').nth(3) == Some("0")) {
        assert!(rows_e.contains(&line.to_string()), "row `{line}` changed with the cache");
    }
    let digital = |csv: &str| -> Vec<String> {
        let col = csv.lines().next().unwrap().split(',').position(|h| h == "digital").unwrap();
        csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap().to_string()).collect()
    };
    assert_eq!(digital(&csv_a)[0], digital(&rows_e.join("\n"))[0]);
    assert_eq!(digital(&csv_a).last(), digital(&rows_e.join("\n")).last());

    // Another config in a planned folder is refused, and nothing is overwritten.
    let before = read(a.join("plan.json"));
    let mut other = vec!["compare".to_string()];
    other.extend(grid_args(&d.path().join("out-a"), "[0.0, 0.05]"));
    let o = gqcim(&with(other, &["--run-dir", a.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("another config") || stderr(&o).contains("another grid"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read(a.join("plan.json")), before);
    assert_eq!(read(a.join("results.csv")), csv_a);

    // A corrupt cell is a named error, left in place.
    let cell_json = std::fs::read_dir(b.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path().join("cell.json"))
        .find(|p| p.exists())
        .unwrap();
    std::fs::write(&cell_json, "{ not json").unwrap();
    let o = merge(&b);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("corrupt cell result"), "{}", stderr(&o));
    assert_eq!(read(cell_json), "{ not json");
}

/// A refit schedule that can never fire is refused when the grid is planned, before any unit
/// runs (it used to surface at the first fine-tuned unit, after the fp32 one).
#[test]
fn a_refit_that_never_triggers_is_refused_at_planning() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("r");
    let mut args = vec!["compare".to_string(), "--plan".into()];
    args.extend(grid_args(&d.path().join("out"), "[0.0]"));
    args.extend(["--set".into(), "quant.refit_every=1000".into()]);
    let o = gqcim(&with(args, &["--run-dir", run.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("quant.refit_every") && stderr(&o).contains("never triggers"));
    assert!(!run.join("plan.json").exists(), "nothing planned");
}
