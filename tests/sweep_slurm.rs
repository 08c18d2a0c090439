//! The grid as a Slurm job array on a single-node cluster started for the test (Debian's
//! slurmctld/slurmd/munge; `make test` installs them): the merged results.csv equals the
//! in-process one byte for byte, and every daemon the test started is stopped by PID.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Cluster {
    dir: PathBuf,
}

fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(name)
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let t = Instant::now();
        let o = Command::new(script("slurm-local.sh"))
            .arg("start")
            .env("GQCIM_SLURM_DIR", dir)
            .output()
            .expect("cannot run scripts/slurm-local.sh");
        assert!(
            o.status.success(),
            "single-node Slurm did not start: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        eprintln!("slurm bring-up: {:.1} s", t.elapsed().as_secs_f64());
        Cluster { dir: dir.to_path_buf() }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("slurm-local.sh"))
            .arg("stop")
            .env("GQCIM_SLURM_DIR", &self.dir)
            .status();
        for pid in ["slurmctld.pid", "slurmd.pid"] {
            assert!(!self.dir.join(pid).exists(), "{pid} left behind: a daemon was not stopped");
        }
    }
}

#[test]
fn slurm_array_gives_the_in_process_results_csv() {
    let d = tempfile::tempdir().unwrap();
    let sig = "[0.0, 0.02]";
    let local = d.path().join("local");
    let mut args = vec!["compare".to_string()];
    args.extend(grid_args(&d.path().join("out-local"), sig));
    args.extend(["--run-dir".to_string(), local.display().to_string()]);
    ok(&Command::new(bin()).args(&args).env("RUST_LOG", "warn").output().unwrap());
    let expected = std::fs::read_to_string(local.join("results.csv")).unwrap();

    let cluster = Cluster::start(&d.path().join("slurm"));
    let t = Instant::now();
    let run = d.path().join("slurm-run");
    let mut plan = vec!["compare".to_string(), "--plan".into()];
    plan.extend(grid_args(&d.path().join("out-slurm"), sig));
    plan.extend(["--run-dir".to_string(), run.display().to_string()]);
    ok(&Command::new(bin()).args(&plan).env("RUST_LOG", "warn").output().unwrap());
    let o = Command::new(script("slurm-grid.sh"))
        .arg(&run)
        .arg("--wait")
        .current_dir(repo_root())
        .env("SLURM_CONF", cluster.conf())
        .env("GQCIM_BIN", bin())
        .output()
        .unwrap();
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("submitted units 0-3"), "{out}");
    eprintln!("4-cell grid through slurm: {:.1} s", t.elapsed().as_secs_f64());
    let merged = std::fs::read_to_string(run.join("results.csv")).unwrap();
    assert_eq!(merged, expected, "the Slurm array's merged results.csv differs");
    // Every unit ran as its own array task.
    for i in 0..4 {
        assert!(run.join(format!("slurm/cell-{i}.out")).exists(), "no output of array task {i}");
    }
    drop(cluster);
}
