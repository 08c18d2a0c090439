//! The comparison grid's commands: plan the units of `compare`, run them in this process or
//! in worker processes (`compare-cell`), merge; for any task through its `Task`.
use super::run_cell;
use crate::config::{Config, QuantMethod, TuneMode};
use crate::engine::task::{task_run_dir, Task};
use crate::error::Result;
use crate::glance::progress::{unit_lines, Eta};
use crate::run::{git_commit, RunDir};
use crate::sweep::plan::expand_units;
use crate::sweep::{merge_run, Plan};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// `gqcim compare` for any task: the grid of the task's `compare` section on a checkpoint.
/// `cfg` is the task's deployment view, `task` its test set already cut to
/// `compare.eval_limit`.
pub fn compare_command(
    cfg: &Config,
    task: &dyn Task,
    device: tch::Device,
    (config_path, checkpoint, run_dir): (&Path, &Path, Option<&Path>),
    how: GridRun,
) -> Result<Value> {
    let wall = Instant::now();
    cfg.validate_compare()?;
    let run = task_run_dir(task, "compare", config_path, run_dir)?;
    run_grid_steps(cfg, task, checkpoint, device, run, wall, how)
}

/// How `compare` runs its grid.
#[derive(Debug, Clone, Copy)]
pub struct GridRun {
    /// Only write plan.json (`compare --plan`); the units then run as `compare-cell`.
    pub plan_only: bool,
    /// Processes that run units at once: this one plus `workers - 1` `compare-cell`
    /// children, each with the plan's thread count, claiming units by a lock per unit. The
    /// results do not depend on it (each unit's seed and thread count are in the plan).
    pub workers: usize,
}

impl GridRun {
    pub const IN_PROCESS: GridRun = GridRun { plan_only: false, workers: 1 };
}

/// Runs the grid of `cfg.compare` on any task in this process: plan, every unit, merge.
/// Writes results.csv, results.json, table.md and plots into the run folder, TensorBoard
/// scalars per unit and sample predictions per network. `wall` is when the command started
/// (data loading counts). A run folder interrupted at any moment resumes with the same call.
pub fn run_grid(
    cfg: &Config,
    task: &dyn Task,
    checkpoint: &Path,
    device: tch::Device,
    run: RunDir,
    wall: Instant,
) -> Result<Value> {
    run_grid_steps(cfg, task, checkpoint, device, run, wall, GridRun::IN_PROCESS)
}

/// `run_grid`, or with `plan_only` just the plan (`gqcim compare --plan`): the units then run
/// as `gqcim compare-cell` (locally or as a Slurm array) and `gqcim merge` writes the tables.
pub fn run_grid_steps(
    cfg: &Config,
    task: &dyn Task,
    checkpoint: &Path,
    device: tch::Device,
    mut run: RunDir,
    wall: Instant,
    how: GridRun,
) -> Result<Value> {
    cfg.validate_compare()?;
    if how.workers == 0 || how.workers > 256 {
        return Err(crate::error::invalid(
            "--workers",
            format!("expected 1..=256 processes, got {}", how.workers),
        ));
    }
    let plan = plan_grid(cfg, task, checkpoint, &run.path)?;
    let runnable: Vec<usize> = plan.runnable().map(|u| u.index).collect();
    // Two lines, so that the terminal keeps to 100 columns whatever the run folder's path.
    println!(
        "comparison grid: {} networks ({} seed(s)), {} sigmas, {} test images, up to {} trials \
         per cell; {} threads\nplan {}",
        runnable.len(),
        cfg.compare.seeds.len().max(1),
        cfg.compare.sigmas.len(),
        task.eval_len(),
        cfg.analog.trials,
        plan.threads,
        run.path.join(crate::sweep::plan::PLAN_FILE).display()
    );
    if how.plan_only {
        println!(
            "planned {} units; run them with `gqcim compare-cell --run-dir {} --index I` \
             (I in {}) and merge with `gqcim merge --run-dir {}`",
            runnable.len(),
            run.path.display(),
            crate::sweep::array_spec(&runnable),
            run.path.display()
        );
        return serde_json::to_value(&plan)
            .map_err(|e| crate::error::invalid("plan", e.to_string()));
    }
    let workers = spawn_workers(&run.path, how.workers - 1, plan.units.len())?;
    let mut eta = Eta::default();
    for (k, &i) in runnable.iter().enumerate() {
        let started = Instant::now();
        let ran = run_cell(cfg, task, &plan, &run.path, i, device)?;
        let Some(done) = ran else {
            println!(
                "[{}/{}] {} (result present, or run by another worker)",
                k + 1,
                runnable.len(),
                plan.units[i].key
            );
            continue;
        };
        let seconds = started.elapsed().as_secs_f64();
        eta.record(done.points.len(), seconds - done.tune_s.unwrap_or(0.0), done.tune_s);
        // What is left: (cells, networks to fine-tune) of the units after this one, shared
        // by the workers (an estimate: they run at about this process's pace).
        let rest = runnable[k + 1..].iter().map(|&j| &plan.units[j]);
        let cells: usize = rest.clone().map(|u| u.sigmas.len() * done.variants).sum();
        let tuned = rest.filter(|u| u.method != QuantMethod::Fp32 && u.mode != TuneMode::Ptq);
        let left = eta.remaining(cells, tuned.count()).map(|s| s / how.workers as f64);
        let head = format!("[{}/{}] {}", k + 1, runnable.len(), plan.units[i].key);
        for line in unit_lines(&head, &done.points, done.digital, seconds, Some(left)) {
            println!("{line}");
        }
        if done.cached {
            println!("    (network from cache)");
        }
    }
    wait_workers(workers)?;
    let results = merge_run(
        &mut run,
        json!({ "wall_seconds": wall.elapsed().as_secs_f64(), "workers": how.workers }),
    )?;
    let table = std::fs::read_to_string(run.path.join("table.txt")).unwrap_or_default();
    println!(
        "\n{table}\nwall time {:.0} s; run folder {}",
        wall.elapsed().as_secs_f64(),
        run.path.display()
    );
    Ok(results)
}

/// Starts `n` `gqcim compare-cell` processes over every unit of the plan in `run`; each
/// skips units that are done or claimed, so together with this process they share the grid.
fn spawn_workers(run: &Path, n: usize, units: usize) -> Result<Vec<std::process::Child>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let exe = std::env::current_exe()
        .map_err(|e| crate::error::invalid("--workers", format!("cannot find this binary: {e}")))?;
    (0..n)
        .map(|_| {
            std::process::Command::new(&exe)
                .arg("compare-cell")
                .arg("--run-dir")
                .arg(run)
                .args(["--index", "0", "--count", &units.to_string()])
                .spawn()
                .map_err(|e| crate::error::GqcimError::File {
                    path: exe.clone(),
                    msg: format!("cannot start a grid worker: {e}"),
                })
        })
        .collect()
}

/// Waits for the worker processes; one that failed is an error (its message went to stderr).
fn wait_workers(workers: Vec<std::process::Child>) -> Result<()> {
    let mut failed = Vec::new();
    for (k, mut w) in workers.into_iter().enumerate() {
        match w.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => failed.push(format!("worker {} ({s})", k + 1)),
            Err(e) => failed.push(format!("worker {} ({e})", k + 1)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::error::invalid(
            "--workers",
            format!(
                "{} failed (messages above); the units they left re-run with the same command",
                failed.join(", ")
            ),
        ))
    }
}

/// The plan of `cfg.compare` for this task, written into the run folder (or checked against
/// the one there: the same plan resumes, another is refused).
pub fn plan_grid(cfg: &Config, task: &dyn Task, checkpoint: &Path, run: &Path) -> Result<Plan> {
    let seeds =
        if cfg.compare.seeds.is_empty() { vec![cfg.seed] } else { cfg.compare.seeds.clone() };
    // A refit schedule that cannot work is refused before any unit runs, not at the first
    // fine-tuned unit.
    if cfg.compare.modes.iter().any(|m| *m != TuneMode::Ptq) {
        let total = crate::engine::finetune::finetune_steps(cfg, task.train_len());
        for &m in &cfg.compare.methods {
            crate::engine::finetune::refit_schedule(cfg, m, total)?;
        }
    }
    let config_yaml =
        std::fs::read_to_string(run.join("config.yaml")).unwrap_or_else(|_| cfg.to_yaml());
    let threads =
        if cfg.threads > 0 { cfg.threads } else { tch::get_num_threads().max(1) as usize };
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let plan = Plan {
        version: crate::sweep::plan::PLAN_VERSION,
        hash: String::new(),
        commit: git_commit(),
        task: task.task().into(),
        metric: task.metric_name().into(),
        config_yaml,
        compare: cfg.compare.clone(),
        trials: cfg.analog.trials,
        checkpoint: absolute(checkpoint),
        checkpoint_sha256: crate::checkpoint::sha256_file(checkpoint)?,
        threads,
        eval_samples: task.eval_len(),
        cache_dir: cfg
            .compare
            .cache
            .then(|| absolute(&cfg.out_dir.join("cache").join(task.task()))),
        units: expand_units(&cfg.compare, &seeds),
    }
    .seal();
    plan.write_or_resume(run)?;
    Ok(plan)
}
