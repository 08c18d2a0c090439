//! Run folders: `runs/<task>/<run>/` with the resolved config, TensorBoard events,
//! checkpoints and results.json (config, seed, git commit, device, metrics, timings).
use crate::checkpoint::{write_json_atomic, write_text_atomic};
use crate::config::{Config, DeviceChoice};
use crate::error::{file_err, invalid, GqcimError, Result};
use crate::tb::Tb;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::Device;

pub struct RunDir {
    pub path: PathBuf,
    pub tb: Tb,
    /// Held (flock) while the run folder is open; the kernel releases it when the process
    /// ends, however it ends, so a killed run leaves no stale lock behind.
    _lock: std::fs::File,
}

/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".gqcim.lock";

/// An exclusive flock(2) on `path` (created if absent), or `None` when another process holds
/// it. The kernel releases it however the holder ends, so a killed process leaves no stale
/// lock behind.
pub fn try_lock_file(path: &Path) -> Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| file_err(path, "open the lock file", e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(file_err(path, "lock", e)),
    }
}

/// Takes the run folder's lock, or names the folder another process is writing.
fn lock_run_folder(path: &Path) -> Result<std::fs::File> {
    let lock_path = path.join(LOCK_FILE);
    try_lock_file(&lock_path)?.ok_or_else(|| GqcimError::File {
        path: path.to_path_buf(),
        msg: format!(
            "run folder is in use by another gqcim process (it holds {}); wait for it to \
             finish or choose another --run-dir / run_name",
            lock_path.display()
        ),
    })
}

/// `run_name` must stay inside `<out_dir>/<task>/`: relative, no `..`, not empty.
pub fn check_run_name(name: &str) -> Result<()> {
    use std::path::Component;
    let p = Path::new(name);
    let ok = !name.trim().is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.components().next().is_some();
    if !ok {
        return Err(invalid(
            "run_name",
            format!(
                "`{name}` must be a relative folder name inside out_dir/<task>/ (no `..`, no \
                 leading `/`); use --run-dir to write elsewhere"
            ),
        ));
    }
    Ok(())
}

/// Removes temporary files (`.<name>.tmp-<pid>...`) that a killed process left behind in
/// the run folder and its `checkpoints/`; called with the folder's lock held, so no live
/// process is writing them.
fn remove_stale_temp_files(run: &Path) -> Result<()> {
    for dir in [run.to_path_buf(), run.join("checkpoints")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.contains(".tmp-") && e.path().is_file() {
                std::fs::remove_file(e.path())
                    .map_err(|err| file_err(e.path(), "remove a stale temporary file", err))?;
                log::info!("removed the stale temporary file {}", e.path().display());
            }
        }
    }
    Ok(())
}

/// Where a run folder goes: `<out_dir>/<task>/<name>`.
pub struct RunPlace<'a> {
    pub out_dir: &'a Path,
    pub task: &'static str,
    pub name: &'a Option<String>,
}

impl RunDir {
    /// Creates (or re-opens, when resuming) a run folder and saves the resolved config.
    pub fn create(
        cfg: &Config,
        command: &str,
        config_path: &Path,
        explicit: Option<&Path>,
    ) -> Result<RunDir> {
        let place = RunPlace { out_dir: &cfg.out_dir, task: task_name(cfg), name: &cfg.run_name };
        Self::create_at(place, command, config_path, explicit, &cfg.to_yaml())
    }

    /// `create` for any task's config: `explicit`, else `<out_dir>/<task>/<run_name>`, else
    /// `<out_dir>/<task>/<config stem>-<command>-<time>`; writes `config_yaml` into it.
    pub fn create_at(
        place: RunPlace,
        command: &str,
        config_path: &Path,
        explicit: Option<&Path>,
        config_yaml: &str,
    ) -> Result<RunDir> {
        let folder = place.out_dir.join(place.task);
        let path = match (explicit, place.name) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(name)) => {
                check_run_name(name)?;
                folder.join(name)
            }
            (None, None) => {
                let stem = config_path.file_stem().map(|s| s.to_string_lossy().to_string());
                let stem = stem.unwrap_or_else(|| "run".into());
                folder.join(format!("{stem}-{command}-{}", timestamp()))
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| file_err(&path, "create the run folder", e))?;
        let lock = lock_run_folder(&path)?;
        refuse_other_grid(&path, config_yaml)?;
        remove_stale_temp_files(&path)?;
        write_text_atomic(&path.join("config.yaml"), config_yaml)?;
        let mut tb = Tb::new(&path);
        tb.flush()?;
        Ok(RunDir { path, tb, _lock: lock })
    }

    /// An existing run folder (a planned grid, for `gqcim merge`), without rewriting its
    /// config.
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.is_dir() {
            return Err(crate::error::GqcimError::Config {
                path: path.to_path_buf().display().to_string(),
                msg: "no such run folder".into(),
            });
        }
        let lock = lock_run_folder(path)?;
        Ok(RunDir { path: path.to_path_buf(), tb: Tb::new(path), _lock: lock })
    }

    pub fn write_results(&self, results: &Value) -> Result<()> {
        write_json_atomic(&self.path.join("results.json"), results)
    }
}

/// A folder that holds a planned grid keeps its config: re-running with another config
/// would leave config.yaml and plan.json disagreeing.
fn refuse_other_grid(path: &Path, config_yaml: &str) -> Result<()> {
    let plan = path.join("plan.json");
    let old = path.join("config.yaml");
    if plan.exists() {
        if let Ok(text) = std::fs::read_to_string(&old) {
            if text != config_yaml {
                return Err(crate::error::GqcimError::Config {
                    path: old.display().to_string(),
                    msg: "this run folder holds a grid planned with another config; use a new \
                          --run-dir, or the same config (and --set overrides) to resume"
                        .into(),
                });
            }
        }
    }
    Ok(())
}

pub fn task_name(cfg: &Config) -> &'static str {
    cfg.task.name()
}

/// UTC time as YYYYmmdd-HHMMSS, without a date crate.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The commit this binary was built from (`-dirty` when its code differed from it), fixed at
/// build time by build.rs: the running code's version, whatever the checkout does meanwhile.
pub fn git_commit() -> String {
    env!("GQCIM_BUILD_COMMIT").to_string()
}

/// Resolves the device choice and the thread count; errors if CUDA is demanded but absent.
pub fn setup_device(cfg: &Config) -> Result<Device> {
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let device = match cfg.device {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto => Device::cuda_if_available(),
        DeviceChoice::Cuda => {
            if !tch::Cuda::is_available() {
                return Err(invalid("device", "is `cuda` but libtorch sees no CUDA device"));
            }
            Device::Cuda(0)
        }
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(device)
}

/// A description of the device for results.json.
pub fn device_info(device: Device) -> Value {
    json!({
        "device": format!("{device:?}"),
        "cuda_available": tch::Cuda::is_available(),
        "cuda_devices": tch::Cuda::device_count(),
        "cudnn": tch::Cuda::cudnn_is_available(),
        "threads": tch::get_num_threads(),
        "host_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu_info(),
    })
}

/// The host CPU as /proc/cpuinfo names it (vendor, model name, family, model; null where it
/// cannot be read) and the widest vector instructions it has (`avx512f`, `avx2` or
/// `baseline`: what the fused kernels and oneDNN's convs run on). Speed ratios depend on
/// both: the periphery trial at batch 100 measured 0.74-0.77x an fp32 evaluation on an
/// AVX-512 VM and 0.75-0.90x on an AVX2 one (README, Performance), so every result names
/// its CPU.
pub fn cpu_info() -> Value {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    json!({
        "vendor": field("vendor_id"),
        "model_name": field("model name"),
        "family": field("cpu family"),
        "model": field("model"),
        "simd": crate::kernels::simd_level(),
    })
}

/// The repository folder (for scripts under `benches/`): the working directory when it
/// holds `Cargo.toml`, else the folder the binary was built from.
pub fn repo_dir() -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("benches").is_dir() && cwd.join("Cargo.toml").is_file() {
        cwd
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

/// The fields every command's results.json starts with, in one typed record: what ran (the
/// verb), on which task and resolved config, with which seed, code, device and libtorch
/// thread count (results at different thread counts are not comparable). Each command adds
/// its own fields with `with`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub command: String,
    pub task: String,
    pub config: Value,
    pub seed: u64,
    pub git_commit: String,
    pub device: Value,
    pub threads: i32,
}

impl RunRecord {
    pub fn new(command: &str, task: &str, config: Value, seed: u64, device: Device) -> RunRecord {
        RunRecord {
            command: command.to_string(),
            task: task.to_string(),
            config,
            seed,
            git_commit: git_commit(),
            device: device_info(device),
            threads: tch::get_num_threads(),
        }
    }

    /// The record as JSON with the command's own `fields` (an object) after it.
    pub fn with(&self, fields: Value) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Value::Object(r), Value::Object(extra)) = (&mut v, fields) {
            r.extend(extra);
        }
        v
    }
}
