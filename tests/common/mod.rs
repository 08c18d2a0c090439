//! Helpers shared by the integration tests: the binary, the test venv's python, and small
//! datasets and configs written to temporary folders.
#![allow(dead_code)]
use gqcim::data::idx::write_idx;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gqcim"))
}

/// The venv python (`make test` exports GQCIM_PYTHON; else the Makefile's default venv).
/// Tests that need it fail without it.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GQCIM_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cache/gqcim/venv-torch-2.11.0/bin/python");
    assert!(p.is_file(), "GQCIM_PYTHON is not set and {} is missing: run `make test`", p.display());
    p
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with arguments; returns its output.
pub fn run_gqcim(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot start the gqcim binary")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A learnable 28x28 toy set: class k draws a bright horizontal bar at row 2+2k plus noise,
/// written as MNIST-style IDX files (gzip not needed here).
pub fn write_toy_idx(dir: &Path, n_train: usize, n_test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, salt) in [("train", n_train, 1u64), ("t10k", n_test, 2u64)] {
        let mut images = vec![0u8; n * 28 * 28];
        let mut labels = vec![0u8; n];
        let mut state = 0x2545F4914F6CDD1Du64 ^ salt;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..n {
            let k = (next() % 10) as usize;
            labels[i] = k as u8;
            let img = &mut images[i * 784..(i + 1) * 784];
            for p in img.iter_mut() {
                *p = (next() % 60) as u8;
            }
            let row = 2 + 2 * k;
            for c in 4..24 {
                img[row * 28 + c] = 255;
                img[(row + 1) * 28 + c] = 200;
            }
        }
        write_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), &[n, 28, 28], &images).unwrap();
        write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &[n], &labels).unwrap();
    }
}

/// A small training config on a toy IDX folder.
pub fn toy_config(dir: &Path, data_root: &Path, epochs: usize, extra: &str) -> PathBuf {
    let text = format!(
        "seed: 3\ndevice: cpu\nthreads: 1\nout_dir: {out}\ndata:\n  dataset: mnist\n  root: {root}\n\
         model:\n  arch: resnet20\ntrain:\n  epochs: {epochs}\n  batch_size: 32\n  lr: 0.05\n  \
         warmup_epochs: 0\n  histogram_every: 1\n  nan_check_every: 1\neval:\n  batch_size: 256\n{extra}",
        out = dir.join("runs").display(),
        root = data_root.display(),
    );
    let path = dir.join("toy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// libtorch's default generator is global and the tests of one binary run in parallel
/// threads: tests whose assertions depend on seeded draws hold this lock.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn fmnist() -> String {
    std::env::var("GQCIM_FMNIST_DIR").unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into())
}

/// A 4-unit grid on the reference ResNet-20: fp32 and gq N=2 (qat), two fine-tuning seeds,
/// σ ∈ {0, 2%}, 2 trials, 200 test images, a few fine-tuning steps, one thread.
pub fn grid_args(out: &Path, sigmas: &str) -> Vec<String> {
    let root = repo_root();
    let mut v: Vec<String> = vec![
        "--config".into(),
        root.join("configs/classify_fmnist.yaml").display().to_string(),
        "--checkpoint".into(),
        root.join("models/resnet20_fmnist.safetensors").display().to_string(),
    ];
    for s in [
        format!("data.root={}", fmnist()),
        format!("out_dir={}", out.display()),
        "threads=1".into(),
        "device=cpu".into(),
        "compare.methods=[gq]".into(),
        "compare.levels=[2]".into(),
        "compare.modes=[qat]".into(),
        format!("compare.sigmas={sigmas}"),
        "compare.seeds=[1, 2]".into(),
        "compare.eval_limit=200".into(),
        "analog.trials=2".into(),
        "finetune.epochs=0.006".into(),
        "finetune.batch_size=64".into(),
    ] {
        v.push("--set".into());
        v.push(s);
    }
    v
}

/// Asserts that a command succeeded, showing its output when it did not.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}
