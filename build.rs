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
    // Record the commit the binary was built from, for results.json when git is unavailable.
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GQCIM_BUILD_COMMIT={commit}");
}
