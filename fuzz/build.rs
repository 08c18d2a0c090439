//! The fuzz binaries link libtorch through gqcim; give them an rpath to the venv's
//! `torch/lib` (as gqcim's own build.rs does for its binary) so they run without
//! LD_LIBRARY_PATH.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let dir = match std::env::var("LIBTORCH") {
        Ok(d) => format!("{d}/lib"),
        Err(_) => Command::new(std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or("python3".into()))
            .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
    };
    if !dir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
