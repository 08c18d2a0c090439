//! One unit of the grid: the network of a method, level count, mode and seed (quantized,
//! fine-tuned, from the cache), evaluated on the crossbar at every σ cell of the plan.
use super::Cell;
use crate::analog::cost::network_program_stats;
use crate::analog::montecarlo::monte_carlo_times;
use crate::analog::sensitivity::{fisher_scores, top_fraction_masks, BatchLoss};
use crate::config::{Config, ProgrammingNoise, QuantMethod, TuneMode};
use crate::costreport::{cell_cost, programming_variants};
use crate::engine::finetune::{finetune_loop, recalibrate_bn, FinetuneStats};
use crate::engine::task::Task;
use crate::error::Result;
use crate::glance::points::{net_label, policy_suffix, GridPoint};
use crate::glance::tb_grid::unit_dir;
use crate::quant::deploy::apply_quantization;
use crate::sweep::plan::layers_label;
use crate::sweep::{read_cell, write_cell, CellFile, Plan, Unit};
use std::path::Path;
use std::time::Instant;
use tch::Tensor;

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
        TuneMode::QatNoise => crate::deploy::with_train_noise(&net, c)?,
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
    let targets = crate::deploy::crossbar_targets(&net);
    // Selective write-verify ranks the weights once per network (quantizing paths on).
    let scores = if variants
        .iter()
        .any(|v| v.programming.is_write_verify() && v.programming.verify_fraction < 1.0)
    {
        let p = &c.analog.programming;
        {
            let loss = |n: &crate::nets::Network, idx: &Tensor| task.batch_loss(n, idx);
            let data: BatchLoss = (task.train_len(), &loss);
            Some(fisher_scores(&net, data, p.sensitivity_batches, c.finetune.batch_size, c.seed)?)
        }
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
            crate::deploy::onto_crossbar(&net, &targets, &a, masks.as_deref());
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
