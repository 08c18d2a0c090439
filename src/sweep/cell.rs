//! One unit's result on disk: `cells/<key>/cell.json`, written last and atomically (a
//! temporary name unique across hosts, fsync, rename, fsync of the folder), so a cell file
//! is either whole or absent — on a local disk or a cluster's shared file system alike.
use super::plan::{Plan, Unit};
use crate::error::{GqcimError, Result};
use crate::grid::Cell;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellFile {
    /// The plan this cell was computed under; another plan's cell is refused.
    pub plan_hash: String,
    pub index: usize,
    pub key: String,
    /// One entry per σ of the unit.
    pub cells: Vec<Cell>,
    pub seconds: f64,
    pub host: String,
    pub threads: usize,
    pub device: String,
    /// The fine-tuned network came from the cache.
    pub cached: bool,
}

pub fn unit_dir(run: &Path, unit: &Unit) -> PathBuf {
    run.join("cells").join(&unit.key)
}

pub fn cell_path(run: &Path, unit: &Unit) -> PathBuf {
    unit_dir(run, unit).join("cell.json")
}

/// This machine's name, for temporary file names and the cell record.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> GqcimError {
    GqcimError::Config {
        path: path.to_path_buf().display().to_string(),
        msg: format!("cannot {what}: {e}"),
    }
}

/// Writes a unit's result atomically: temp file named by host, pid and time, fsync,
/// rename, fsync of the folder.
pub fn write_cell(run: &Path, unit: &Unit, cell: &CellFile) -> Result<()> {
    let path = cell_path(run, unit);
    let dir = unit_dir(run, unit);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create the cell folder", e))?;
    let text = serde_json::to_string_pretty(cell).map_err(|e| GqcimError::Config {
        path: path.clone().display().to_string(),
        msg: e.to_string(),
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".cell.json.tmp.{}.{}.{nanos}", host_name(), std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err(&tmp, "write", e))?;
    f.sync_all().map_err(|e| io_err(&tmp, "fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, "move the cell into place", e))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The unit's result if it was computed under this plan; `None` when absent. A corrupt file
/// or one from another plan is an error naming the file (nothing is overwritten: delete it
/// to recompute the unit).
pub fn read_cell(run: &Path, plan: &Plan, unit: &Unit) -> Result<Option<CellFile>> {
    let path = cell_path(run, unit);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read", e)),
    };
    let cell: CellFile = serde_json::from_str(&text).map_err(|e| GqcimError::Config {
        path: path.clone().display().to_string(),
        msg: format!("corrupt cell result ({e}); delete it to recompute unit {}", unit.index),
    })?;
    if cell.plan_hash != plan.hash {
        return Err(GqcimError::Config {
            path: path.display().to_string(),
            msg: format!(
                "computed under another plan (hash {}…, this plan {}…); delete it to recompute",
                &cell.plan_hash[..cell.plan_hash.len().min(12)],
                &plan.hash[..12.min(plan.hash.len())]
            ),
        });
    }
    // One cell per σ and programming variant.
    let whole = !cell.cells.is_empty() && cell.cells.len().is_multiple_of(unit.sigmas.len().max(1));
    if cell.index != unit.index || cell.key != unit.key || !whole {
        return Err(GqcimError::Config {
            path: path.display().to_string(),
            msg: format!(
                "holds unit {} `{}` with {} σ values; the plan's unit {} is `{}` with {}",
                cell.index,
                cell.key,
                cell.cells.len(),
                unit.index,
                unit.key,
                unit.sigmas.len()
            ),
        });
    }
    Ok(Some(cell))
}

/// Claims a unit for this process: an exclusive flock on `cells/<key>/.running.lock`, or
/// `None` when another process (a local worker, a Slurm task) holds it. The kernel drops
/// the lock however the holder ends, so a killed worker never leaves a unit claimed.
pub fn try_claim_unit(run: &Path, unit: &Unit) -> Result<Option<std::fs::File>> {
    let dir = unit_dir(run, unit);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create the cell folder", e))?;
    crate::run::try_lock_file(&dir.join(".running.lock"))
}

/// `gqcim compare-cell`: runs units `index..index + count` of the plan in `run`, with the
/// plan's thread count (Slurm's `SLURM_CPUS_PER_TASK` only warns when it differs: results
/// depend on the thread count, so the plan's wins).
pub fn cell_command(run: &Path, index: usize, count: usize) -> Result<()> {
    let plan = Plan::read(run)?;
    let last = index.saturating_add(count.max(1)) - 1;
    plan.unit(run, index)?;
    plan.unit(run, last)?;
    plan.check_runnable(run, &crate::run::git_commit())?;
    let setup = crate::tasks::grid_setup(&plan.task, &plan.config_yaml, "plan.json")?;
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse::<usize>().ok())
    {
        if n != plan.threads {
            log::warn!(
                "SLURM_CPUS_PER_TASK={n} but the plan fixes {} threads (results depend on it); \
                 using {}",
                plan.threads,
                plan.threads
            );
        }
    }
    tch::set_num_threads(plan.threads as i32);
    for i in index..=last {
        let started = std::time::Instant::now();
        match crate::grid::run_cell(
            &setup.cfg,
            setup.harness.as_ref(),
            &plan,
            run,
            i,
            setup.device,
        )? {
            Some(done) => {
                let s = started.elapsed().as_secs_f64();
                let head = format!("unit {i} {}:", plan.units[i].key);
                for line in
                    crate::glance::progress::unit_lines(&head, &done.points, done.digital, s, None)
                {
                    println!("{line}");
                }
            }
            None => {
                println!(
                    "unit {i} {}: result present, alias, or running in another process",
                    plan.units[i].key
                )
            }
        }
    }
    Ok(())
}
