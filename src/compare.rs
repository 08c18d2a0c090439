//! The method comparison grid (`gqcim compare`, the main job of `make classify`): fp32
//! against each quantizer at each level count, post-training or after straight-through
//! fine-tuning with or without device noise, each evaluated on the crossbar under a sweep of
//! programming noise with Monte-Carlo trials.
use crate::analog::montecarlo::{monte_carlo, McStats};
use crate::analog::path::{AnalogPath, NoisyTrainPath};
use crate::checkpoint::write_text_atomic;
use crate::config::{Config, ProgrammingNoise, QuantMethod, TuneMode};
use crate::data::{self, Normalizer};
use crate::error::Result;
use crate::glance::grid::{net_label, points, GridView};
use crate::glance::points::sigma_pct;
use crate::quant::deploy::{apply_quantization, make_path, QuantDeployment};
use crate::run::{device_info, git_commit, setup_device, RunDir};
use crate::tasks::harness::TaskHarness;
use crate::tasks::quantize::{finetune_loop, ClassifyHarness, FinetuneStats};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::Tensor;

/// One evaluated cell of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub method: String,
    pub levels: usize,
    pub mode: String,
    pub sigma: f64,
    pub stats: McStats,
    pub digital_accuracy: f64,
    pub finetune: Option<FinetuneStats>,
    /// Set when the cell is another method's cell computed once (gq-noise at σ = 0 is gq:
    /// the same fit, the same refits, the same seeds).
    pub same_as: Option<String>,
}

/// Wraps every quantizing path with training-time device noise.
fn add_train_noise(net: &crate::nets::Network, cfg: &Config) -> Result<QuantDeployment> {
    let dep = QuantDeployment::default();
    for l in net.layers.layers() {
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
pub fn classify_harness(cfg: &Config, device: tch::Device) -> Result<Box<dyn TaskHarness>> {
    let train = data::load_split(&cfg.data, true)?;
    let mut test = data::load_split(&cfg.data, false)?;
    data::check_against_model(&test, cfg.model.in_channels, cfg.model.num_classes)?;
    if cfg.compare.eval_limit > 0 {
        test = test.limit(cfg.compare.eval_limit);
    }
    Ok(Box::new(ClassifyHarness {
        cfg: cfg.clone(),
        train: train.to_device(device),
        test: test.to_device(device),
        norm: Normalizer::new(&cfg.data, device),
    }))
}

/// `gqcim compare` for classification: loads the data, then runs the grid.
pub fn compare_command(
    cfg: &Config,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    let wall = Instant::now();
    cfg.validate_compare()?;
    let device = setup_device(cfg)?;
    let task = classify_harness(cfg, device)?;
    let run = RunDir::create(cfg, "compare", config_path, run_dir)?;
    run_grid(cfg, task.as_ref(), checkpoint, device, run, wall)
}

/// Runs the grid of `cfg.compare` on any task; writes results.csv, results.json, table.md
/// and plots into the run folder, TensorBoard scalars per cell and sample predictions per
/// network. `wall` is when the command started (data loading counts).
pub fn run_grid(
    cfg: &Config,
    task: &dyn TaskHarness,
    checkpoint: &Path,
    device: tch::Device,
    mut run: RunDir,
    wall: Instant,
) -> Result<Value> {
    cfg.validate_compare()?;
    let cc = &cfg.compare;
    let mut cells: Vec<Cell> = Vec::new();

    // A unit is one network (method, N, fine-tuning) evaluated at some sigmas. gq-noise
    // chooses its quanta for the device that will hold them, so it gets one unit per sigma.
    struct Unit {
        method: QuantMethod,
        levels: usize,
        mode: TuneMode,
        sigmas: Vec<f64>,
        fit_sigma: Option<f64>,
    }
    let mut units: Vec<Unit> = Vec::new();
    if cc.include_fp32 {
        units.push(Unit {
            method: QuantMethod::Fp32,
            levels: 32,
            mode: TuneMode::Ptq,
            sigmas: cc.sigmas.clone(),
            fit_sigma: None,
        });
    }
    // gq before gq-noise, so that gq-noise at σ = 0 can reuse gq's cell.
    let mut methods = cc.methods.clone();
    methods.sort_by_key(|m| if *m == QuantMethod::Gq { 0 } else { 1 });
    for &m in &methods {
        for &n in &cc.levels {
            for &mode in &cc.modes {
                if m == QuantMethod::GqNoise {
                    for &s in &cc.sigmas {
                        units.push(Unit {
                            method: m,
                            levels: n,
                            mode,
                            sigmas: vec![s],
                            fit_sigma: Some(s),
                        });
                    }
                } else {
                    units.push(Unit {
                        method: m,
                        levels: n,
                        mode,
                        sigmas: cc.sigmas.clone(),
                        fit_sigma: None,
                    });
                }
            }
        }
    }
    println!(
        "comparison grid: {} networks, {} sigmas, {} test images, up to {} trials per cell",
        units.len(),
        cc.sigmas.len(),
        task.eval_len(),
        cfg.analog.trials
    );
    let mut view = GridView::new(&run, task, &cc.levels, &cc.sigmas);
    // What is left after unit i, for the ETA: (cells, fine-tuned networks).
    let left_after = |i: usize| {
        let rest = &units[i + 1..];
        let cells = rest.iter().map(|u| u.sigmas.len()).sum::<usize>();
        let tuned =
            rest.iter().filter(|u| u.method != QuantMethod::Fp32 && u.mode != TuneMode::Ptq);
        (cells, tuned.count())
    };
    let noise_at = |sigma: f64| {
        if sigma > 0.0 {
            ProgrammingNoise::Gaussian { sigma }
        } else {
            ProgrammingNoise::None
        }
    };
    for (ui, u) in units.iter().enumerate() {
        let row_start = Instant::now();
        if u.method == QuantMethod::GqNoise
            && u.fit_sigma == Some(0.0)
            && cc.methods.contains(&QuantMethod::Gq)
        {
            // An ideal device makes gq-noise's fit and refits exactly gq's: reuse that cell.
            if let Some(gq) = cells
                .iter()
                .find(|c| {
                    c.method == "gq"
                        && c.levels == u.levels
                        && c.mode == u.mode.name()
                        && c.sigma == 0.0
                })
                .cloned()
            {
                println!(
                    "[{}/{}] gq-noise {} N={}, σ = 0%: gq's cell (identical by construction)",
                    ui + 1,
                    units.len(),
                    u.mode.name(),
                    u.levels
                );
                cells.push(Cell { method: "gq-noise".into(), same_as: Some("gq".into()), ..gq });
                let all = points(&cells);
                view.tb.log_network(&all[all.len() - 1..], &all);
                continue;
            }
        }
        let mut c = cfg.clone();
        c.quant.method = u.method;
        c.quant.levels = u.levels;
        if let Some(s) = u.fit_sigma {
            c.analog.programming_noise = noise_at(s);
        }
        let net = task.load_network(&c, checkpoint, device)?;
        let mut ft = None;
        if u.method != QuantMethod::Fp32 {
            let dep = match u.mode {
                TuneMode::QatNoise => add_train_noise(&net, &c)?,
                _ => apply_quantization(&net, &c.quant, &c.analog)?,
            };
            if u.mode != TuneMode::Ptq {
                let label = net_label(u.method.name(), u.mode.name(), u.levels);
                // gq-noise fits one network per σ: one loss curve each.
                let tag = match u.fit_sigma {
                    Some(s) => format!("finetune/loss_fit_sigma_{}pct", sigma_pct(s)),
                    None => "finetune/loss".to_string(),
                };
                let mut first_step = 0;
                ft = Some(finetune_loop(&net, task, &c, &dep, |_, _, losses| {
                    view.log_losses(&label, &tag, first_step, losses);
                    first_step += losses.len();
                })?);
            }
        }
        let tune_s = ft.as_ref().map(|f| f.seconds);
        let eval_start = Instant::now();
        let label = net_label(u.method.name(), u.mode.name(), u.levels);
        let levels = (u.method != QuantMethod::Fp32).then_some(u.levels);
        let step = u.fit_sigma.map(|s| view.tb.step(s)).unwrap_or(0);
        view.network_ready(&net, task, &label, levels, step);
        // On an ideal crossbar (no non-ideality besides the swept programming noise) the
        // sigma = 0 cell is the digital network within 1e-5 (tests/analog.rs): its one trial
        // gives the digital metric, so the network is not evaluated twice.
        let ideal_at_zero = u.sigmas.contains(&0.0) && {
            let mut a = c.analog.clone();
            a.programming_noise = ProgrammingNoise::None;
            a.is_ideal()
        };
        let mut digital = if ideal_at_zero { f64::NAN } else { task.evaluate(&net) };
        let targets: Vec<(Tensor, String)> =
            net.layers.layers().iter().map(|l| (l.effective_weight(), l.describe())).collect();
        let first = cells.len();
        for &sigma in &u.sigmas {
            let si = cc.sigmas.iter().position(|s| *s == sigma).unwrap_or(0);
            let mut a = c.analog.clone();
            a.programming_noise = noise_at(sigma);
            for (l, (t, src)) in net.layers.layers().iter().zip(&targets) {
                l.set_path(Box::new(AnalogPath::new(t.shallow_clone(), src.clone(), &a)));
            }
            // The same trial seeds for every network at a given sigma.
            let seed = cfg.seed.wrapping_add(1000 * si as u64);
            let stats = monte_carlo(&net, &a, seed, |n| task.evaluate(n))?;
            if sigma == 0.0 && ideal_at_zero {
                digital = stats.mean;
            }
            cells.push(Cell {
                method: u.method.name().into(),
                levels: u.levels,
                mode: u.mode.name().into(),
                sigma,
                stats,
                digital_accuracy: f64::NAN,
                finetune: ft.clone(),
                same_as: None,
            });
        }
        for cell in &mut cells[first..] {
            cell.digital_accuracy = digital;
        }
        let all = points(&cells);
        view.network_done(
            ui + 1,
            units.len(),
            &all[first..],
            &all,
            digital,
            (row_start.elapsed().as_secs_f64(), eval_start.elapsed().as_secs_f64(), tune_s),
            left_after(ui),
        );
    }
    let wall_s = wall.elapsed().as_secs_f64();
    write_outputs(&run, cfg, &cells, task.metric_name())?;
    let table = view.finish(&mut run, &points(&cells), task)?;
    let results = json!({
        "command": "compare",
        "config": serde_json::to_value(cfg).unwrap_or(Value::Null),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "device": device_info(device),
        "checkpoint": checkpoint.display().to_string(),
        "task": task.task(),
        "metric": task.metric_name(),
        "eval_samples": task.eval_len(),
        "cells": cells,
        "wall_seconds": wall_s,
    });
    run.write_results(&results)?;
    println!("\n{table}\nwall time {wall_s:.0} s; run folder {}", run.path.display());
    Ok(results)
}

fn write_outputs(run: &RunDir, _cfg: &Config, cells: &[Cell], _metric: &str) -> Result<()> {
    let mut csv = String::from("method,levels,mode,sigma,trials,mean,std,ci95,min,max,digital\n");
    for c in cells {
        let s = &c.stats;
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
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
            c.digital_accuracy
        ));
    }
    write_text_atomic(&run.path.join("results.csv"), &csv)?;
    // table.md, the terminal table and the charts: crate::glance (GridView::finish).
    Ok(())
}
