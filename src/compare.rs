//! The method comparison grid (`gqcim compare`, the main job of `make classify`): fp32
//! against each quantizer at each level count, post-training or after straight-through
//! fine-tuning with or without device noise, each evaluated on the crossbar under a sweep of
//! programming noise with Monte-Carlo trials.
use crate::analog::cost::network_program_stats;
use crate::analog::montecarlo::{monte_carlo_times, McStats};
use crate::analog::path::{AnalogPath, NoisyTrainPath};
use crate::analog::writeverify::{fisher_scores, top_fraction_masks};
use crate::checkpoint::write_text_atomic;
use crate::config::{Config, ProgrammingNoise, QuantMethod, TuneMode};
use crate::costreport::{cell_cost, programming_variants, CellCost};
use crate::engine::task::Task;
use crate::error::Result;
use crate::glance::points::{net_label, policy_suffix, GridPoint};
use crate::glance::progress::{unit_lines, Eta};
use crate::glance::tb_grid::unit_dir;
use crate::quant::deploy::{apply_quantization, check_layer_names, make_path, QuantDeployment};
use crate::run::{git_commit, setup_device, RunDir};
use crate::sweep::plan::{expand_units, layers_label};
use crate::sweep::{merge_run, read_cell, write_cell, CellFile, Plan, Unit};
use crate::tasks::quantize::{finetune_loop, recalibrate_bn, FinetuneStats};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::Tensor;

/// One evaluated cell of the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub method: String,
    pub levels: usize,
    pub mode: String,
    pub sigma: f64,
    /// Seconds after programming (the time axis, `analog.t_inference`); None without.
    pub t_inference: Option<f64>,
    pub stats: McStats,
    /// The digital (noise-free) metric; NaN (null in JSON) when not measured.
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub digital_accuracy: f64,
    pub finetune: Option<FinetuneStats>,
    /// Set when the cell is another method's cell computed once (gq-noise at σ = 0 is gq:
    /// the same fit, the same refits, the same seeds).
    pub same_as: Option<String>,
    /// Programming and first-order inference cost (src/analog/cost.rs).
    #[serde(default)]
    pub cost: CellCost,
    /// Layers kept digital fp32, `+`-joined (empty: every conv/linear layer quantized). A
    /// policy of `compare.keep_fp32_sets` forms its own rows.
    #[serde(default)]
    pub fp32_layers: String,
}

impl Cell {
    /// How the devices were read: the programming variant, and with a time axis the time
    /// after programming (`single-shot t=1 h`). Rows, pairings and sub-runs split on it.
    pub fn reading(&self) -> String {
        match self.t_inference {
            Some(t) => format!(
                "{} t={}",
                self.cost.programming,
                crate::analog::montecarlo::time_label(Some(t))
            ),
            None => self.cost.programming.clone(),
        }
    }
}

/// Wraps every quantizing path with training-time device noise; layers in `quant.keep_fp32`
/// stay digital fp32 (no quantizer, no noise), as in the other modes.
pub fn add_train_noise(net: &crate::nets::Network, cfg: &Config) -> Result<QuantDeployment> {
    check_layer_names(net, "quant.keep_fp32", &cfg.quant.keep_fp32)?;
    let mut dep = QuantDeployment::default();
    for l in net.layers.layers() {
        if cfg.quant.keep_fp32.contains(&l.spec.name) {
            l.set_path(Box::new(crate::nets::layers::Identity));
            dep.kept_fp32.push(l.spec.name.clone());
            continue;
        }
        dep.quantized.push(l.spec.name.clone());
        let inner = tch::no_grad(|| make_path(&l.spec, &cfg.quant, &cfg.analog, &dep.clock))?;
        l.set_path(Box::new(NoisyTrainPath {
            inner,
            noise: cfg.train_noise.clone(),
            g_min: cfg.analog.g_min,
            g_max: cfg.analog.g_max,
            per_column: cfg.analog.per_column_scale,
        }));
    }
    Ok(dep)
}

/// The classification harness of a config (test set cut to `compare.eval_limit`).
pub use crate::tasks::classify::classify_harness;

/// `gqcim compare` for classification: loads the data, then runs the grid.
pub fn compare_command(
    cfg: &Config,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
    how: GridRun,
) -> Result<Value> {
    let wall = Instant::now();
    cfg.validate_compare()?;
    let device = setup_device(cfg)?;
    let task = classify_harness(cfg, device)?;
    let run = RunDir::create(cfg, "compare", config_path, run_dir)?;
    run_grid_steps(cfg, task.as_ref(), checkpoint, device, run, wall, how)
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
        let total = crate::tasks::quantize::finetune_steps(cfg, task.train_len());
        for &m in &cfg.compare.methods {
            crate::tasks::quantize::refit_schedule(cfg, m, total)?;
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

/// The programming noise of a σ cell: Gaussian σ of the window, or with
/// `compare.device_noise` the `analog` section's own (a device preset's σ(g); σ is then 0).
fn noise_at(cfg: &Config, sigma: f64) -> ProgrammingNoise {
    if cfg.compare.device_noise {
        cfg.analog.programming_noise.clone()
    } else if sigma > 0.0 {
        ProgrammingNoise::Gaussian { sigma }
    } else {
        ProgrammingNoise::None
    }
}

/// The config a unit's network is built, fine-tuned and fitted with.
fn unit_config(cfg: &Config, u: &Unit) -> Config {
    let mut c = cfg.clone();
    c.quant.method = u.method;
    c.quant.levels = u.levels;
    c.seed = u.seed;
    if let Some(layers) = &u.keep_fp32 {
        c.quant.keep_fp32 = layers.clone();
    }
    if let Some(s) = u.fit_sigma {
        c.analog.programming_noise = noise_at(cfg, s);
    }
    c
}

/// The unit's network, quantized and fine-tuned as its mode says (or from the cache).
fn prepare_network(
    c: &Config,
    task: &dyn Task,
    plan: &Plan,
    u: &Unit,
    device: tch::Device,
    tb: &mut crate::tb::Tb,
) -> Result<(crate::nets::Network, Option<FinetuneStats>, bool)> {
    let net = task.load_network(c, &plan.checkpoint, device)?;
    if u.method == QuantMethod::Fp32 {
        return Ok((net, None, false));
    }
    let key = plan.cache_dir.as_ref().map(|d| (d, crate::sweep::cache::key(plan, u)));
    if let Some((dir, key)) = &key {
        if let Some(ft) = crate::sweep::cache::load(dir, key, &net)? {
            return Ok((net, ft, true));
        }
    }
    // Every draw of the unit comes from its own seed, whatever ran before in this process.
    tch::manual_seed(u.seed as i64);
    let dep = match u.mode {
        TuneMode::QatNoise => add_train_noise(&net, c)?,
        _ => apply_quantization(&net, &c.quant, &c.analog)?,
    };
    // Post-training cells re-estimate BatchNorm for the quantized weights (not when folded).
    if u.mode == TuneMode::Ptq && c.quant.bn_recalibrate_images > 0 && !c.quant.fold_bn {
        recalibrate_bn(&net, task, c.quant.bn_recalibrate_images, c.finetune.batch_size, u.seed)?;
    }
    let mut ft = None;
    if u.mode != TuneMode::Ptq {
        // The loss at every step (x = global step from 0), in the unit's own run.
        let mut first_step = 0;
        ft = Some(finetune_loop(&net, task, c, &dep, |_, _, losses| {
            for (i, l) in losses.iter().enumerate() {
                tb.scalar("finetune/loss", *l, first_step + i);
            }
            first_step += losses.len();
        })?);
    }
    if let Some((dir, key)) = &key {
        crate::sweep::cache::store(dir, key, u, &net, &ft)?;
    }
    Ok((net, ft, false))
}

/// The network label of a unit, as merge names its TensorBoard run (`glance::points`): the
/// layer policy is part of it when the grid compares several.
fn unit_label(plan: &Plan, u: &Unit, c: &Config) -> String {
    let mut label = net_label(u.method.name(), u.mode.name(), u.levels);
    if plan.compare.keep_fp32_sets.len() > 1 && u.method != QuantMethod::Fp32 {
        label.push_str(&policy_suffix(&layers_label(&c.quant.keep_fp32)));
    }
    label
}

/// What a unit that ran reports for the progress lines.
pub struct UnitDone {
    /// Its cells (one seed), as the tables show them.
    pub points: Vec<GridPoint>,
    pub digital: f64,
    /// Fine-tuning seconds (None: not fine-tuned, or the network came from the cache).
    pub tune_s: Option<f64>,
    pub cached: bool,
    /// Programming variants per σ.
    pub variants: usize,
}

/// Runs one unit of the plan and writes its cell; `None` when its result is already there
/// (or it is an alias, resolved at merge time).
pub fn run_cell(
    cfg: &Config,
    task: &dyn Task,
    plan: &Plan,
    run: &Path,
    index: usize,
    device: tch::Device,
) -> Result<Option<UnitDone>> {
    let u = plan.unit(run, index)?;
    if u.alias_of.is_some() || read_cell(run, plan, u)?.is_some() {
        return Ok(None);
    }
    // Another worker may hold the unit, or have finished it between the check and the claim.
    let Some(_claim) = crate::sweep::cell::try_claim_unit(run, u)? else {
        return Ok(None);
    };
    if read_cell(run, plan, u)?.is_some() {
        return Ok(None);
    }
    let started = Instant::now();
    let c = unit_config(cfg, u);
    let variants = programming_variants(cfg);
    let any_wv = variants.iter().any(|v| v.programming.is_write_verify());
    let preset = cfg.cost.load_preset()?;
    // The unit's own TensorBoard run, under its network's sub-run (layout: glance::tb_grid).
    let label = unit_label(plan, u, &c);
    let mut tb =
        crate::tb::Tb::at_file(&unit_dir(run, &label, u.seed, u.fit_sigma), crate::tb::UNIT_EVENTS);
    let (net, ft, cached) = prepare_network(&c, task, plan, u, device, &mut tb)?;
    crate::glance::grid::log_deployed(&mut tb, &net, u.method != QuantMethod::Fp32);
    // Pictures of the first test samples, composed side by side across networks by merge.
    crate::glance::samples::save_unit_samples(
        &crate::sweep::cell::unit_dir(run, u),
        &task.sample_inputs(),
        &task.sample_pictures(&net),
    )?;
    // On an ideal crossbar (no non-ideality besides the swept programming noise) the
    // sigma = 0 cell is the digital network within 1e-5 (tests/analog.rs): its one trial
    // gives the digital metric, so the network is not evaluated twice.
    let ideal_at_zero = !any_wv && u.sigmas.contains(&0.0) && {
        let mut a = c.analog.clone();
        a.programming_noise = noise_at(cfg, 0.0);
        a.is_ideal()
    };
    let mut digital = if ideal_at_zero { f64::NAN } else { task.evaluate(&net)? };
    let targets: Vec<(Tensor, String)> =
        net.layers.layers().iter().map(|l| (l.effective_weight(), l.describe())).collect();
    // Selective write-verify ranks the weights once per network (quantizing paths on).
    let scores = if variants
        .iter()
        .any(|v| v.programming.is_write_verify() && v.programming.verify_fraction < 1.0)
    {
        let p = &c.analog.programming;
        Some(fisher_scores(&net, task, p.sensitivity_batches, c.finetune.batch_size, c.seed)?)
    } else {
        None
    };
    let mut cells = Vec::new();
    for &sigma in &u.sigmas {
        let si = plan.compare.sigmas.iter().position(|s| *s == sigma).unwrap_or(0);
        for v in &variants {
            let mut a = c.analog.clone();
            a.programming_noise = noise_at(cfg, sigma);
            a.programming = v.programming.clone();
            let masks = match (&scores, a.programming.is_write_verify()) {
                (Some(s), true) if a.programming.verify_fraction < 1.0 => {
                    Some(top_fraction_masks(s, a.programming.verify_fraction)?)
                }
                _ => None,
            };
            for (i, (l, (t, src))) in net.layers.layers().iter().zip(&targets).enumerate() {
                let mut path = AnalogPath::new(t.shallow_clone(), src.clone(), &a);
                path.verify_mask = masks.as_ref().map(|m| m[i].shallow_clone());
                l.set_path(Box::new(path));
            }
            // The same trial seeds for every network of a fine-tuning seed at a given sigma.
            let seed = u.seed.wrapping_add(1000 * si as u64);
            // Programming statistics per evaluation: trials x times, in that order (a
            // trial's devices are programmed once and read at every time).
            let mut prog_stats = Vec::new();
            let by_time = monte_carlo_times(&net, &a, seed, true, |n| {
                prog_stats.push(network_program_stats(n));
                task.evaluate(n)
            })?;
            let times = by_time.len();
            for (k, ts) in by_time.into_iter().enumerate() {
                let stats = ts.stats;
                if sigma == 0.0 && ideal_at_zero && k == 0 {
                    digital = stats.mean;
                }
                let at_k: Vec<_> = prog_stats.iter().skip(k).step_by(times).cloned().collect();
                let cost = cell_cost(&net, &a, cfg, &preset, v, &at_k)?;
                cells.push(Cell {
                    method: u.method.name().into(),
                    levels: u.levels,
                    mode: u.mode.name().into(),
                    sigma,
                    t_inference: ts.t_inference,
                    stats,
                    digital_accuracy: f64::NAN,
                    finetune: ft.clone(),
                    same_as: None,
                    cost,
                    fp32_layers: if u.method == QuantMethod::Fp32 {
                        String::new()
                    } else {
                        layers_label(&c.quant.keep_fp32)
                    },
                });
            }
        }
    }
    for cell in &mut cells {
        cell.digital_accuracy = digital;
    }
    tb.flush()?;
    let points = crate::glance::grid::points(&cells, 1);
    let done = UnitDone {
        points,
        digital,
        tune_s: ft.as_ref().filter(|_| !cached).map(|f| f.seconds),
        cached,
        variants: variants.len(),
    };
    let file = CellFile {
        plan_hash: plan.hash.clone(),
        index,
        key: u.key.clone(),
        cells,
        seconds: started.elapsed().as_secs_f64(),
        host: crate::sweep::cell::host_name(),
        threads: tch::get_num_threads().max(1) as usize,
        device: format!("{device:?}"),
        cached,
    };
    write_cell(run, u, &file)?;
    Ok(Some(done))
}

/// The cost columns of results.csv (see the header in `write_outputs`). The simulator's own
/// programming time stays in results.json: results.csv holds only what the seed determines.
fn cost_columns(k: &CellCost) -> String {
    format!(
        "{},{},{},{},{},{},{:e},{:e},{},{:e},{:e},{:.6}",
        k.programming,
        k.tolerance,
        k.verify_fraction,
        k.pulses,
        k.verify_reads,
        k.unconverged,
        k.program_time_s,
        k.program_energy_j,
        k.adc_bits,
        k.inference_energy_j,
        k.inference_latency_s,
        k.area_m2 * 1e6
    )
}

/// results.csv, table.md, table.txt and the charts of the merged cells (`cfg.compare.seeds`
/// fine-tuning seeds pooled in each); returns table.md's text.
pub fn write_outputs(run: &RunDir, cfg: &Config, cells: &[Cell], metric: &str) -> Result<String> {
    let cc = &cfg.compare;
    let mut csv = String::from(
        "method,levels,mode,sigma,trials,mean,std,ci95,min,max,digital,programming,tolerance,\
         verify_fraction,pulses,verify_reads,unconverged,program_time_s,program_energy_j,\
         adc_bits,inference_energy_j,inference_latency_s,area_mm2,fp32_layers,t_inference\n",
    );
    for c in cells {
        let s = &c.stats;
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{}\n",
            c.method,
            c.levels,
            c.mode,
            c.sigma,
            s.trials.len(),
            s.mean,
            s.std,
            s.ci95,
            s.min,
            s.max,
            c.digital_accuracy,
            cost_columns(&c.cost),
            c.fp32_layers,
            c.t_inference.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    write_text_atomic(&run.path.join("results.csv"), &csv)?;
    let points = crate::glance::grid::points(cells, cc.seeds.len().max(1));
    crate::glance::grid::write_tables_and_charts(&run.path, &points, metric, &cc.levels, &cc.sigmas)
}
