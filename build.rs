//! Link libtorch so that CUDA is really available and the binary finds libtorch at run time.
//!
//! torch-sys links only what the linker sees as needed; `libtorch_cuda.so` is loaded through
//! static initialisers only, so `--as-needed` drops it and `tch::Cuda::is_available()` is
//! silently false. `--no-as-needed -ltorch` keeps it (tch-rs README, "CUDA not detected").
//! The rpath to the pip wheel's `torch/lib` lets `./target/release/gqcim` run with no
//! LD_LIBRARY_PATH.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    Some(PathBuf::from(dir))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(lib) = torch_lib_dir() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    } else {
        println!("cargo:warning=could not locate torch/lib; the binary will need LD_LIBRARY_PATH");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    // The code version of this binary: the commit it was built from, with `-dirty` when the
    // code that goes into it (src/, Cargo.*, build.rs) differed from that commit. Results,
    // grid plans and the network cache record it; it is fixed at build time, so committing
    // or checking out another branch while a grid runs does not change what the running
    // binary is. Re-run when HEAD or its branch moves, or a source file changes.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    for watched in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    // Worktrees keep HEAD outside `.git/`: ask git where HEAD, its reflog (appended on every
    // commit, checkout and reset, also when the branch ref is packed) and the ref live.
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b != "HEAD");
    let names = ["HEAD".to_string(), "logs/HEAD".to_string()];
    for name in names.into_iter().chain(branch) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs"])
        .status()
        .map(|s| s.code() == Some(1))
        .unwrap_or(false);
    let suffix = if dirty && commit != "unknown" { "-dirty" } else { "" };
    println!("cargo:rustc-env=GQCIM_BUILD_COMMIT={commit}{suffix}");
}
