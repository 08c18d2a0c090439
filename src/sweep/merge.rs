//! Merging a grid: cells ordered by plan index, aliases resolved, seeds aggregated, then
//! the same tables and plots as a one-process grid. Missing cells are an error that lists
//! them in the form `sbatch --array=` takes, so the fix is one command away.
use super::cell::{read_cell, CellFile};
use super::plan::Plan;
use super::stats::{against_best_uniform, aggregate, spread, PairedDifference, SeedSpread};
use crate::checkpoint::write_text_atomic;
use crate::costreport::{write_cost_outputs, CostPoint};
use crate::error::{GqcimError, Result};
use crate::glance::points::sigma_pct;
use crate::glance::tb_grid::{table_text, tb_root, write_network_runs, GridTags, MERGE_WALL_TIME};
use crate::grid::{write_outputs, Cell};
use crate::report::markdown_table;
use crate::tb::Tb;
use serde_json::{json, Value};
use std::path::Path;

/// Indices as ranges: [0, 1, 2, 5, 7, 8] -> `0-2,5,7-8`.
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The runnable units whose cell is not there yet (a corrupt or foreign cell is an error).
pub fn missing_units(run: &Path, plan: &Plan) -> Result<Vec<usize>> {
    let mut missing = Vec::new();
    for u in plan.runnable() {
        if read_cell(run, plan, u)?.is_none() {
            missing.push(u.index);
        }
    }
    Ok(missing)
}

/// Every unit's cell file, in plan order, aliases resolved to their source's cells.
fn collect(run: &Path, plan: &Plan) -> Result<Vec<(usize, CellFile)>> {
    let missing = missing_units(run, plan)?;
    if !missing.is_empty() {
        let spec = array_spec(&missing);
        return Err(GqcimError::Config {
            path: run.join("cells").display().to_string(),
            msg: format!(
                "{} of {} units have no result yet: indices {spec}. Run them with \
                 `gqcim compare-cell --run-dir {} --index I` or `sbatch --array={spec} ...` \
                 (scripts/slurm-grid.sh submits exactly these), then merge again",
                missing.len(),
                plan.runnable().count(),
                run.display()
            ),
        });
    }
    let mut out = Vec::new();
    for u in &plan.units {
        let src = plan.unit(run, u.alias_of.unwrap_or(u.index))?;
        let mut cf = read_cell(run, plan, src)?.ok_or_else(|| GqcimError::Config {
            path: run.join("cells").display().to_string(),
            msg: format!("unit {} vanished while merging", src.index),
        })?;
        if u.alias_of.is_some() {
            cf = relabel_alias(u, src, cf);
        }
        out.push((u.index, cf));
    }
    Ok(out)
}

/// An alias unit's cells: the source unit's cells at the alias's σ values only (gq-noise at
/// σ = 0 is gq's σ = 0 cell), relabelled with the alias's method.
fn relabel_alias(u: &super::plan::Unit, src: &super::plan::Unit, mut cf: CellFile) -> CellFile {
    cf.cells.retain(|c| u.sigmas.iter().any(|s| s.to_bits() == c.sigma.to_bits()));
    for c in &mut cf.cells {
        c.method = u.method.name().into();
        c.same_as = Some(src.method.name().into());
    }
    cf
}

/// Rows of the table: per (method, N, mode, σ) in plan order, the per-seed cells.
fn rows(files: &[(usize, CellFile)]) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for (_, f) in files {
        for c in &f.cells {
            let same = |r: &Vec<Cell>| {
                let h = &r[0];
                h.method == c.method
                    && h.levels == c.levels
                    && h.mode == c.mode
                    && h.sigma.to_bits() == c.sigma.to_bits()
                    && h.cost.programming == c.cost.programming
                    && h.fp32_layers == c.fp32_layers
                    && h.t_inference.map(f64::to_bits) == c.t_inference.map(f64::to_bits)
            };
            match rows.iter_mut().find(|r| same(r)) {
                Some(r) => r.push(c.clone()),
                None => rows.push(vec![c.clone()]),
            }
        }
    }
    rows
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.2}", 100.0 * x)
    } else {
        "n/a".into()
    }
}

/// The programming variant and layer policy of a paired difference, when not the default.
fn variant_label(d: &PairedDifference) -> String {
    let mut out = String::new();
    if !d.programming.is_empty() && d.programming != "single-shot" {
        out.push_str(&format!(", {}", d.programming));
    }
    if !d.fp32_layers.is_empty() {
        out.push_str(&format!(" (fp32: {})", d.fp32_layers.replace('+', ", ")));
    }
    if let Some(t) = d.t_inference {
        out.push_str(&format!(" @ {}", crate::analog::montecarlo::time_label(Some(t))));
    }
    out
}

/// The paired differences for the terminal (table.txt): one line each, within 100 columns.
fn differences_text(diffs: &[PairedDifference]) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nPaired difference against the best uniform method at the same N and σ (points, \
         95% CI):\n",
    );
    for d in diffs {
        let ci =
            if d.ci95.is_finite() { format!(" ±{:.2}", 100.0 * d.ci95) } else { String::new() };
        out.push_str(&format!(
            "N={:<3} σ {:>4}%  {:<22} vs {:<20} {}{ci}  {}\n",
            d.levels,
            sigma_pct(d.sigma),
            format!("{} {}{}", d.method, d.mode, variant_label(d)),
            format!("{} {}", d.baseline_method, d.baseline_mode),
            pct(d.mean),
            d.verdict
        ));
    }
    out
}

fn differences_md(diffs: &[PairedDifference], seeds: usize) -> String {
    let header: Vec<String> =
        ["N", "σ", "method", "vs best uniform", "Δ (points)", "95% CI", "CI over", "verdict"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let rows: Vec<Vec<String>> = diffs
        .iter()
        .map(|d| {
            vec![
                d.levels.to_string(),
                format!("{}%", sigma_pct(d.sigma)),
                format!("{} {}{}", d.method, d.mode, variant_label(d)),
                format!("{} {}", d.baseline_method, d.baseline_mode),
                pct(d.mean),
                if d.ci95.is_finite() { format!("±{:.2}", 100.0 * d.ci95) } else { "n/a".into() },
                serde_json::to_value(d.basis)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                d.verdict.clone(),
            ]
        })
        .collect();
    format!(
        "\n\nPaired difference of each method against the best uniform method (uniform-*, \
         lsq) at each N and σ, over {seeds} fine-tuning seed(s) × the same Monte-Carlo trial \
         seeds; \"level\" where the 95% CI includes zero. With one seed the interval covers \
         device draws only, not fine-tuning spread.\n\n{}",
        markdown_table(&header, &rows)
    )
}

/// Merges the run folder's cells into results.csv, results.json, table.md, table.txt, plots
/// and the TensorBoard runs under `tb/`; `extra` is added to results.json (the in-process
/// command's wall time, say). Every output is rewritten whole: merging again gives the same
/// files.
pub fn merge_run(run_dir: &mut crate::run::RunDir, extra: Value) -> Result<Value> {
    let run_path = run_dir.path.clone();
    let run = run_path.as_path();
    let plan = Plan::read(run)?;
    let files = collect(run, &plan)?;
    let rows = rows(&files);
    let cells: Vec<Cell> = rows.iter().map(|r| aggregate(&r.iter().collect::<Vec<_>>())).collect();
    let spreads: Vec<SeedSpread> =
        rows.iter().map(|r| spread(&r.iter().collect::<Vec<_>>())).collect();
    let per_seed: Vec<Vec<&Cell>> = rows.iter().map(|r| r.iter().collect()).collect();
    let diffs = against_best_uniform(&per_seed);
    // The tables need only the compare section (levels, modes, sigmas to lay out).
    let cfg = crate::config::Config { compare: plan.compare.clone(), ..Default::default() };
    write_outputs(run_dir, &cfg, &cells, &plan.metric)?;
    // The grid's own TensorBoard run (text table, cost charts), rewritten whole by every
    // merge (glance::tb_grid has the layout).
    let mut grid_tb = Tb::replaceable(&tb_root(run), MERGE_WALL_TIME);
    // Programming effort and inference energy against accuracy (issue "What the analog
    // weights cost"): Pareto fronts per method over N and tolerance.
    let fp32_pct = cells.iter().find(|c| c.method == "fp32").map(|c| 100.0 * c.digital_accuracy);
    let points: Vec<CostPoint> = cells
        .iter()
        .filter(|c| c.method != "fp32")
        .map(|c| CostPoint {
            method: &c.method,
            levels: c.levels,
            mode: &c.mode,
            accuracy: 100.0 * c.stats.mean,
            cost: &c.cost,
        })
        .collect();
    write_cost_outputs(&run_dir.path, &mut grid_tb, &points, fp32_pct, &plan.metric)?;
    let seeds = plan.compare.seeds.len().max(1);
    let table_path = run.join("table.md");
    let mut table = std::fs::read_to_string(&table_path).unwrap_or_default();
    if plan.compare.device_noise {
        // σ = 0 names the grid's Gaussian sweep, which the device's own noise replaces.
        table = format!(
            "Device noise (`compare.device_noise`): every cell is read under the `analog` \
             section's own device model (preset's σ(g), drift, read noise); the σ = 0% column \
             is that device, not an ideal crossbar.\n\n{table}"
        );
    }
    table.push_str(&differences_md(&diffs, seeds));
    write_text_atomic(&table_path, &table)?;
    let text_path = run.join("table.txt");
    let mut text = std::fs::read_to_string(&text_path).unwrap_or_default();
    text.push_str(&differences_text(&diffs));
    write_text_atomic(&text_path, &text)?;
    let seeds_pooled = plan.compare.seeds.len().max(1);
    let grid_points = crate::glance::grid::points(&cells, seeds_pooled);
    let tags = GridTags::new(&plan.task, &plan.metric, &plan.compare.sigmas);
    grid_tb.text(&tags.table_tag(), &table_text(&tags, &table), 0);
    crate::glance::samples::write_grid_samples(&mut grid_tb, run, &plan)?;
    grid_tb.commit()?;
    write_network_runs(run, &tags, &grid_points, &plan.compare.levels)?;
    let mut csv = String::from(
        "method,mode,levels,sigma,baseline,delta,ci95,basis,verdict,programming,fp32_layers,\
         t_inference\n",
    );
    for d in &diffs {
        csv.push_str(&format!(
            "{},{},{},{},{} {},{:.6},{:.6},{},{},{},{},{}\n",
            d.method,
            d.mode,
            d.levels,
            d.sigma,
            d.baseline_method,
            d.baseline_mode,
            d.mean,
            d.ci95,
            serde_json::to_value(d.basis)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            d.verdict,
            d.programming,
            d.fp32_layers,
            d.t_inference.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    write_text_atomic(&run.join("differences.csv"), &csv)?;
    let config: Value = serde_yaml::from_str(&plan.config_yaml).unwrap_or(Value::Null);
    let unit_seconds: f64 = files
        .iter()
        .filter(|(i, _)| plan.units[*i].alias_of.is_none())
        .map(|(_, f)| f.seconds)
        .sum();
    let first = files.first().map(|(_, f)| f);
    let mut results = json!({
        "command": "compare",
        "task": plan.task,
        "metric": plan.metric,
        "config": config,
        "seed": config.get("seed").cloned().unwrap_or(Value::Null),
        "seeds": plan.compare.seeds,
        "git_commit": plan.commit,
        "plan_hash": plan.hash,
        "threads": plan.threads,
        "device": first.map(|f| f.device.clone()),
        "hosts": files.iter().map(|(_, f)| f.host.clone()).collect::<std::collections::BTreeSet<_>>(),
        "checkpoint": plan.checkpoint.display().to_string(),
        "checkpoint_sha256": plan.checkpoint_sha256,
        "eval_samples": plan.eval_samples,
        "cells": cells,
        "seed_spread": spreads,
        "paired_differences": diffs,
        "units_cached": files.iter().filter(|(_, f)| f.cached).count(),
        "unit_seconds_total": unit_seconds,
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut results, extra) {
        r.extend(e);
    }
    run_dir.write_results(&results)?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::array_spec;

    #[test]
    fn an_alias_takes_only_its_own_sigmas() {
        use crate::config::{CompareConfig, QuantMethod, TuneMode};
        let cc = CompareConfig {
            methods: vec![QuantMethod::Gq, QuantMethod::GqNoise],
            levels: vec![2],
            modes: vec![TuneMode::Qat],
            sigmas: vec![0.0, 0.02],
            include_fp32: false,
            ..Default::default()
        };
        let units = crate::sweep::plan::expand_units(&cc, &[1]);
        let alias = units.iter().find(|u| u.alias_of.is_some()).unwrap();
        let src = &units[alias.alias_of.unwrap()];
        assert_eq!(src.method, QuantMethod::Gq);
        let cell = |sigma: f64| crate::grid::Cell {
            method: "gq".into(),
            levels: 2,
            mode: "qat".into(),
            sigma,
            stats: crate::analog::montecarlo::McStats::from_trials(vec![]),
            digital_accuracy: 0.9,
            finetune: None,
            same_as: None,
            cost: Default::default(),
            fp32_layers: String::new(),
            t_inference: None,
        };
        let cf = super::CellFile {
            plan_hash: String::new(),
            index: src.index,
            key: src.key.clone(),
            cells: vec![cell(0.0), cell(0.02)],
            seconds: 0.0,
            host: String::new(),
            threads: 1,
            device: String::new(),
            cached: false,
        };
        let out = super::relabel_alias(alias, src, cf);
        assert_eq!(out.cells.len(), 1);
        assert_eq!(out.cells[0].sigma, 0.0);
        assert_eq!(out.cells[0].method, "gq-noise");
        assert_eq!(out.cells[0].same_as.as_deref(), Some("gq"));
    }

    #[test]
    fn differences_fit_the_terminal() {
        let d = super::PairedDifference {
            method: "gq-noise".into(),
            mode: "qat-noise".into(),
            levels: 16,
            sigma: 0.07,
            programming: String::new(),
            fp32_layers: String::new(),
            t_inference: None,
            baseline_method: "uniform-mse".into(),
            baseline_mode: "qat-noise".into(),
            mean: 0.0123,
            ci95: 0.0045,
            basis: crate::sweep::stats::CiBasis::Seeds,
            verdict: "ahead".into(),
        };
        let t = super::differences_text(&[d]);
        assert!(t.contains("σ    7%") && t.contains("+1.23 ±0.45  ahead"), "{t}");
        assert!(t.lines().all(|l| l.chars().count() <= 100), "{t}");
        assert_eq!(super::differences_text(&[]), "");
    }

    #[test]
    fn array_spec_folds_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_spec(&[3]), "3");
        assert_eq!(array_spec(&[]), "");
    }
}
