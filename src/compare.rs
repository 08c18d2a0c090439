//! The method comparison grid (`gqcim compare`, the main job of `make classify`): fp32
//! against each quantizer at each level count, post-training or after straight-through
//! fine-tuning with or without device noise, each evaluated on the crossbar under a sweep of
//! programming noise with Monte-Carlo trials.
use crate::analog::montecarlo::{monte_carlo_times, time_label, McStats};
use crate::analog::path::{AnalogPath, NoisyTrainPath};
use crate::checkpoint::write_text_atomic;
use crate::config::{Config, ProgrammingNoise, QuantMethod, TuneMode};
use crate::data::{self, Normalizer};
use crate::error::Result;
use crate::quant::deploy::{apply_quantization, make_path, QuantDeployment};
use crate::report::{line_chart, markdown_table, Series};
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
    /// Seconds after programming (the time axis, `analog.t_inference`); None without.
    pub t_inference: Option<f64>,
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

fn mean_std(s: &McStats) -> String {
    format!("{:.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.std)
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
    let noise_at = |sigma: f64| {
        if cc.device_noise {
            // The device's own programming noise (a preset's sigma(g)); sigmas is [0].
            cfg.analog.programming_noise.clone()
        } else if sigma > 0.0 {
            ProgrammingNoise::Gaussian { sigma }
        } else {
            ProgrammingNoise::None
        }
    };
    for (ui, u) in units.iter().enumerate() {
        let row_start = Instant::now();
        if u.method == QuantMethod::GqNoise
            && u.fit_sigma == Some(0.0)
            && !cc.device_noise
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
                println!("[{}/{}] gq-noise        N={:<3} {:<9} σ=0: identical to gq by construction (cell reused)", ui + 1, units.len(), u.levels, u.mode.name());
                cells.push(Cell { method: "gq-noise".into(), same_as: Some("gq".into()), ..gq });
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
                let loss_tag =
                    format!("finetune/{}-{}/N{}/loss", u.method.name(), u.mode.name(), u.levels);
                let tb = &mut run.tb;
                ft = Some(finetune_loop(&net, task, &c, &dep, |epoch, loss| {
                    tb.scalar(&loss_tag, loss, epoch)
                })?);
            }
        }
        let tag = format!("{}-{}", u.method.name(), u.mode.name());
        task.log_samples(&net, &mut run.tb, &format!("samples/{tag}-N{}", u.levels), 0);
        // On an ideal crossbar (no non-ideality besides the swept programming noise) the
        // sigma = 0 cell is the digital network within 1e-5 (tests/analog.rs): its one trial
        // gives the digital metric, so the network is not evaluated twice.
        let ideal_at_zero = u.sigmas.contains(&0.0) && {
            let mut a = c.analog.clone();
            a.programming_noise = noise_at(0.0);
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
            let by_time = monte_carlo_times(&net, &a, seed, true, |n| task.evaluate(n))?;
            for (k, ts) in by_time.into_iter().enumerate() {
                let stats = ts.stats;
                if sigma == 0.0 && ideal_at_zero && k == 0 {
                    digital = stats.mean;
                }
                let time_tag = ts.t_inference.map(|t| format!("/t{t}s")).unwrap_or_default();
                run.tb.scalar(
                    &format!("compare/{tag}/N{}{time_tag}", u.levels),
                    stats.mean,
                    (sigma * 1000.0).round() as usize,
                );
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
                });
            }
        }
        for cell in &mut cells[first..] {
            cell.digital_accuracy = digital;
        }
        run.tb.flush();
        let mine: Vec<String> = cells[first..]
            .iter()
            .map(|c| match c.t_inference {
                Some(t) => {
                    format!("σ={} t={}: {}", c.sigma, time_label(Some(t)), mean_std(&c.stats))
                }
                None => format!("σ={}: {}", c.sigma, mean_std(&c.stats)),
            })
            .collect();
        println!(
            "[{}/{}] {:<15} N={:<3} {:<9} digital {:.2}%  {}  ({:.0} s)",
            ui + 1,
            units.len(),
            u.method.name(),
            u.levels,
            u.mode.name(),
            100.0 * digital,
            mine.join("  "),
            row_start.elapsed().as_secs_f64()
        );
    }
    let wall_s = wall.elapsed().as_secs_f64();
    write_outputs(&run, cfg, &cells, task.metric_name())?;
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
    let table = std::fs::read_to_string(run.path.join("table.md")).unwrap_or_default();
    println!("\n{table}\nwall time {wall_s:.0} s; run folder {}", run.path.display());
    Ok(results)
}

/// `mAP@0.5 (%)` -> `mAP@0.5`, for plot titles.
fn short_metric(metric: &str) -> &str {
    metric.split(" (").next().unwrap_or(metric)
}

fn write_outputs(run: &RunDir, cfg: &Config, cells: &[Cell], metric: &str) -> Result<()> {
    let cc = &cfg.compare;
    let mut csv =
        String::from("method,levels,mode,sigma,trials,mean,std,ci95,min,max,digital,t_inference\n");
    for c in cells {
        let s = &c.stats;
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{}\n",
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
            c.t_inference.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    write_text_atomic(&run.path.join("results.csv"), &csv)?;
    // Markdown: one row per (method, N, mode), one column per sigma.
    let mut header = vec!["method".to_string(), "N".into(), "fine-tuning".into()];
    // The time axis: one column per (sigma, time).
    let times: Vec<Option<f64>> = if cfg.analog.t_inference.is_empty() {
        vec![None]
    } else {
        cfg.analog.t_inference.iter().map(|t| Some(*t)).collect()
    };
    for s in &cc.sigmas {
        for t in &times {
            let sig =
                if cc.device_noise { "device".to_string() } else { format!("σ = {}%", 100.0 * s) };
            header.push(match t {
                Some(_) => format!("{sig}, t = {}", time_label(*t)),
                None => sig,
            });
        }
    }
    let mut rows = Vec::new();
    for chunk in cells.chunks(cc.sigmas.len() * times.len()) {
        let f = &chunk[0];
        let n = if f.method == "fp32" { "32-bit".to_string() } else { f.levels.to_string() };
        let mut r =
            vec![f.method.clone(), n, if f.method == "fp32" { "-".into() } else { f.mode.clone() }];
        r.extend(chunk.iter().map(|c| mean_std(&c.stats)));
        rows.push(r);
    }
    let md = format!(
        "Test {metric} on the crossbar, mean ± std over Monte-Carlo trials; σ = \
         programming noise relative to the conductance window.\n\n{}",
        markdown_table(&header, &rows)
    );
    write_text_atomic(&run.path.join("table.md"), &md)?;
    // Plots: accuracy against N at σ = 0, per method and mode; accuracy against σ per N.
    let fp32: Vec<&Cell> = cells.iter().filter(|c| c.method == "fp32").collect();
    let mut by_levels = Vec::new();
    for m in &cc.methods {
        for mode in &cc.modes {
            let pts: Vec<(f64, f64, f64)> = cells
                .iter()
                .filter(|c| {
                    c.method == m.name()
                        && c.mode == mode.name()
                        && c.sigma == cc.sigmas[0]
                        && c.t_inference == times[0]
                })
                .map(|c| (c.levels as f64, 100.0 * c.stats.mean, 100.0 * c.stats.std))
                .collect();
            by_levels.push(Series { label: format!("{} {}", m.name(), mode.name()), points: pts });
        }
    }
    if let Some(f) = fp32.first() {
        let xs: Vec<usize> = cc.levels.clone();
        by_levels.push(Series {
            label: "fp32".into(),
            points: xs.iter().map(|n| (*n as f64, 100.0 * f.stats.mean, 0.0)).collect(),
        });
    }
    let _ = line_chart(
        &run.path.join("accuracy_vs_levels.png"),
        &format!("{} vs analog levels (σ = {}%)", short_metric(metric), 100.0 * cc.sigmas[0]),
        "levels N",
        metric,
        &by_levels,
        true,
    )
    .map_err(|e| log::warn!("plot accuracy_vs_levels: {e}"));
    for &n in &cc.levels {
        let mut series = Vec::new();
        for m in &cc.methods {
            for mode in &cc.modes {
                let pts: Vec<(f64, f64, f64)> = cells
                    .iter()
                    .filter(|c| {
                        c.method == m.name()
                            && c.mode == mode.name()
                            && c.levels == n
                            && c.t_inference == times[0]
                    })
                    .map(|c| (100.0 * c.sigma, 100.0 * c.stats.mean, 100.0 * c.stats.std))
                    .collect();
                series.push(Series { label: format!("{} {}", m.name(), mode.name()), points: pts });
            }
        }
        series.push(Series {
            label: "fp32".into(),
            points: fp32
                .iter()
                .filter(|c| c.t_inference == times[0])
                .map(|c| (100.0 * c.sigma, 100.0 * c.stats.mean, 100.0 * c.stats.std))
                .collect(),
        });
        let _ = line_chart(
            &run.path.join(format!("accuracy_vs_sigma_N{n}.png")),
            &format!("{} vs programming noise, N = {n}", short_metric(metric)),
            "σ (% of conductance window)",
            metric,
            &series,
            false,
        )
        .map_err(|e| log::warn!("plot accuracy_vs_sigma_N{n}: {e}"));
    }
    Ok(())
}
