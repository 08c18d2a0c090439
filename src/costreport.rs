//! The cost side of the comparison grid: programming variants (single-shot, write-verify at
//! each tolerance and verify fraction), per-cell programming and inference cost from the
//! first-order model of `analog::cost`, the Pareto fronts (accuracy against programming
//! pulses and against inference energy per image, per method over N and tolerance) as PNGs
//! in the run folder and TensorBoard, energy by ADC bits, and the pulses each method needs
//! to stay within 0.5 points of fp32. Trade-off plots in the manner of SWIM (Yan et al.,
//! arXiv:2202.08395) and NeuroSim's accuracy-vs-energy benchmarks.
use crate::analog::cost::{
    converter_bits, network_cost, network_geometry, program_cost, CostPreset,
};
use crate::analog::writeverify::{ProgramStats, ProgrammingConfig, ProgrammingMode};
use crate::checkpoint::write_text_atomic;
use crate::config::{AnalogConfig, Config};
use crate::error::Result;
use crate::glance::charts;
use crate::glance::picture::Picture;
use crate::glance::plot::{render, Chart, Draw, Line, Marker, PlotPoint, XAxis};
use crate::nets::Network;
use crate::report::markdown_table;
use crate::tb::Tb;
use serde::Serialize;
use std::path::Path;

/// One way of programming the crossbar in the grid.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub programming: ProgrammingConfig,
}

/// The programming variants of a config: `analog.programming` alone, or (with
/// `compare.tolerances`) an optional single-shot baseline and write-verify at every
/// tolerance × verify fraction.
pub fn programming_variants(cfg: &Config) -> Vec<Variant> {
    let base = &cfg.analog.programming;
    let label = |p: &ProgrammingConfig| match p.mode {
        ProgrammingMode::SingleShot => "single-shot".to_string(),
        ProgrammingMode::WriteVerify => {
            let f = if p.verify_fraction < 1.0 {
                format!("-f{}", p.verify_fraction)
            } else {
                String::new()
            };
            format!("wv-{}{f}", p.tolerance.value())
        }
    };
    let cc = &cfg.compare;
    if cc.tolerances.is_empty() {
        return vec![Variant { label: label(base), programming: base.clone() }];
    }
    let mut out = Vec::new();
    if cc.single_shot_baseline {
        let p = ProgrammingConfig { mode: ProgrammingMode::SingleShot, ..base.clone() };
        out.push(Variant { label: label(&p), programming: p });
    }
    let fractions = if cc.verify_fractions.is_empty() {
        vec![base.verify_fraction]
    } else {
        cc.verify_fractions.clone()
    };
    for &t in &cc.tolerances {
        for &f in &fractions {
            let p = ProgrammingConfig {
                mode: ProgrammingMode::WriteVerify,
                tolerance: base.tolerance.with_value(t),
                verify_fraction: f,
                ..base.clone()
            };
            out.push(Variant { label: label(&p), programming: p });
        }
    }
    out
}

/// Programming and inference cost of one grid cell (programming: mean over trials).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct CellCost {
    pub programming: String,
    /// Write-verify tolerance (NaN for single-shot).
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub tolerance: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub verify_fraction: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub pulses: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub verify_reads: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub unconverged: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub program_time_s: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub program_energy_j: f64,
    /// Wall time the simulator spent programming all layers (one trial, this machine).
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub program_sim_s: f64,
    pub adc_bits: u32,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub inference_energy_j: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub inference_latency_s: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub area_m2: f64,
    pub tiles: i64,
    /// Inference energy per image at each of `cost.adc_bits`.
    pub energy_by_adc_bits: Vec<(u32, f64)>,
}

/// The cost of a programmed, evaluated network; `stats` are the per-trial programming
/// statistics (averaged here).
pub fn cell_cost(
    net: &Network,
    a: &AnalogConfig,
    cfg: &Config,
    preset: &CostPreset,
    v: &Variant,
    stats: &[ProgramStats],
) -> Result<CellCost> {
    let geoms = network_geometry(net)?;
    let (adc_bits, dac_bits) = converter_bits(a, preset);
    let inf = network_cost(&geoms, a, preset, adc_bits, dac_bits);
    let n = stats.len().max(1) as f64;
    let mut mean = ProgramStats::default();
    for s in stats {
        mean.add(s);
    }
    let scale = |x: f64| x / n;
    let mean = ProgramStats {
        pulses: scale(mean.pulses),
        verify_reads: scale(mean.verify_reads),
        sim_seconds: scale(mean.sim_seconds),
        ..mean
    };
    let pc = program_cost(&mean, a, preset, adc_bits);
    let wv = v.programming.mode == ProgrammingMode::WriteVerify;
    Ok(CellCost {
        programming: v.label.clone(),
        tolerance: if wv { v.programming.tolerance.value() } else { f64::NAN },
        verify_fraction: if wv { v.programming.verify_fraction } else { 0.0 },
        pulses: pc.pulses,
        verify_reads: pc.verify_reads,
        unconverged: stats.iter().map(|s| s.unconverged as f64).sum::<f64>() / n,
        program_time_s: pc.time_s,
        program_energy_j: pc.energy_j,
        program_sim_s: mean.sim_seconds,
        adc_bits,
        inference_energy_j: inf.energy_j(),
        inference_latency_s: inf.latency_s,
        area_m2: inf.area_m2,
        tiles: inf.tiles,
        energy_by_adc_bits: cfg
            .cost
            .adc_bits
            .iter()
            .map(|&b| (b, network_cost(&geoms, a, preset, b, dac_bits).energy_j()))
            .collect(),
    })
}

/// Indices of the Pareto-optimal points (smaller x, larger y), ordered by x.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).filter(|&i| points[i].0.is_finite()).collect();
    idx.sort_by(|&a, &b| {
        points[a].0.total_cmp(&points[b].0).then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in idx {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

/// What the cost plots need of a cell.
pub struct CostPoint<'a> {
    pub method: &'a str,
    pub levels: usize,
    pub mode: &'a str,
    pub accuracy: f64,
    pub cost: &'a CellCost,
}

/// One cost chart series: (method, mode) and its (cost, accuracy %) points.
type CostSeries = ((String, String), Vec<(f64, f64)>);

/// Accuracy (%) against a cost (log x) per method and fine-tuning mode: every cell a marker,
/// each series' Pareto front a line, fp32 a dashed reference; drawn by the grid's chart code
/// (`glance::plot`: legend beside the axes). Returns the picture for TensorBoard.
fn pareto_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[CostSeries],
    fp32: Option<f64>,
) -> std::result::Result<Picture, String> {
    let mut lines = Vec::new();
    let mut xs = Vec::new();
    for ((method, mode), pts) in series {
        let pts: Vec<(f64, f64)> =
            pts.iter().filter(|p| p.0 > 0.0 && p.0.is_finite()).copied().collect();
        xs.extend(pts.iter().map(|p| p.0));
        let at = |p: &(f64, f64)| PlotPoint { x: p.0, y: p.1, ci: None };
        let (colour, marker) = (charts::colour(method), charts::marker(mode));
        let mut front: Vec<(f64, f64)> = pareto_front(&pts).iter().map(|&j| pts[j]).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(Line {
            label: format!("{method} {mode}"),
            colour,
            marker,
            draw: Draw::Markers,
            points: pts.iter().map(at).collect(),
        });
        // The front has no legend entry of its own: it is the series' line.
        lines.push(Line {
            label: String::new(),
            colour,
            marker,
            draw: Draw::Line,
            points: front.iter().map(at).collect(),
        });
    }
    let chart = Chart {
        title: title.into(),
        x_label: format!("{x_label} (log scale)"),
        y_label: y_label.into(),
        caption: vec![
            "Markers: every cell of a method (levels N, σ, programming variant); line: its \
             Pareto front (no other cell of the method is both cheaper and more accurate)."
                .into(),
            "Dashed: fp32, the digital 32-bit network. First-order cost model (docs/cost.md)."
                .into(),
        ],
        x: XAxis::Log10(xs),
        lines,
        reference: fp32.map(|f| Line {
            label: "fp32 (digital)".into(),
            colour: plotters::style::RGBColor(0, 0, 0),
            marker: Marker::Circle,
            draw: Draw::Line,
            points: vec![PlotPoint { x: 1.0, y: f, ci: None }],
        }),
        y_bounds: Some((0.0, 100.0)),
    };
    render(path, &chart)?;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Picture::from_png(&bytes)
}

/// The smallest cost at which a method stays within `points_below` accuracy points of fp32.
pub fn cost_at_matched_accuracy(
    pts: &[(f64, f64)],
    fp32_pct: f64,
    points_below: f64,
) -> Option<f64> {
    pts.iter().filter(|p| p.1 >= fp32_pct - points_below).map(|p| p.0).min_by(f64::total_cmp)
}

/// Pareto plots (PNG + TensorBoard), energy by ADC bits, and the matched-accuracy table.
pub fn write_cost_outputs(
    dir: &Path,
    tb: &mut Tb,
    cells: &[CostPoint],
    fp32_pct: Option<f64>,
    metric: &str,
) -> Result<()> {
    if cells.is_empty() {
        return Ok(());
    }
    let mut methods: Vec<(String, String)> = Vec::new();
    for c in cells {
        let key = (c.method.to_string(), c.mode.to_string());
        if !methods.contains(&key) {
            methods.push(key);
        }
    }
    let series = |f: &dyn Fn(&CellCost) -> f64| -> Vec<CostSeries> {
        methods
            .iter()
            .map(|m| {
                let pts = cells
                    .iter()
                    .filter(|c| c.method == m.0 && c.mode == m.1)
                    .map(|c| (f(c.cost), c.accuracy))
                    .collect();
                (m.clone(), pts)
            })
            .collect()
    };
    let pulses = series(&|c: &CellCost| c.pulses);
    let energy = series(&|c: &CellCost| c.inference_energy_j * 1e9);
    let short = crate::glance::points::short_metric(metric);
    for (name, title, xl, s) in [
        ("pareto_accuracy_vs_pulses", "programming pulses", "total pulses", &pulses),
        (
            "pareto_accuracy_vs_energy",
            "inference energy per image",
            "energy per image (nJ)",
            &energy,
        ),
    ] {
        let title = format!("{short} vs {title}, Pareto front per method");
        match pareto_chart(&dir.join(format!("{name}.png")), &title, xl, metric, s, fp32_pct) {
            Ok(p) => tb.image(&format!("cost/{name}"), &p.to_chw(), p.h, p.w, 0),
            Err(e) => log::warn!("plot {name}: {e}"),
        }
    }
    // TensorBoard scalars: accuracy against pulses (step = thousands of pulses) per cell.
    for c in cells {
        tb.scalar(
            &format!("cost/accuracy_vs_kpulses/{}-{}/N{}", c.method, c.mode, c.levels),
            c.accuracy,
            (c.cost.pulses / 1000.0).round() as usize,
        );
    }
    tb.flush()?;
    // Matched accuracy: the fewest pulses and the least energy within 0.5 points of fp32.
    let mut md = format!(
        "First-order cost estimates (see docs/cost.md): programming pulses, time and energy; \
         inference energy per image. {metric} in %.\n\n"
    );
    if let Some(f) = fp32_pct {
        let header: Vec<String> = [
            "method",
            "fewest pulses within 0.5 pt of fp32",
            "least energy/image (nJ) within 0.5 pt",
            "best accuracy (%)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows: Vec<Vec<String>> = pulses
            .iter()
            .zip(&energy)
            .map(|((m, p), (_, e))| {
                let fmt =
                    |v: Option<f64>| v.map(|x| format!("{x:.4e}")).unwrap_or("not reached".into());
                let best = p.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
                vec![
                    format!("{} {}", m.0, m.1),
                    fmt(cost_at_matched_accuracy(p, f, 0.5)),
                    fmt(cost_at_matched_accuracy(e, f, 0.5)),
                    format!("{best:.2}"),
                ]
            })
            .collect();
        md.push_str(&format!("fp32 (digital): {f:.2}%\n\n{}\n", markdown_table(&header, &rows)));
    }
    // Energy per image by N and ADC bits.
    let mut bits: Vec<u32> = Vec::new();
    for c in cells {
        for (b, _) in &c.cost.energy_by_adc_bits {
            if !bits.contains(b) {
                bits.push(*b);
            }
        }
    }
    let mut header =
        vec!["method".to_string(), "N".into(), "fine-tuning".into(), "programming".into()];
    header.extend(bits.iter().map(|b| format!("{b}-bit ADC (nJ/image)")));
    header.push("area (mm²)".into());
    header.push("latency (µs/image)".into());
    let mut csv = String::from("method,levels,mode,programming,adc_bits,energy_per_image_j\n");
    let mut rows = Vec::new();
    for c in cells {
        let mut r = vec![
            c.method.to_string(),
            c.levels.to_string(),
            c.mode.to_string(),
            c.cost.programming.clone(),
        ];
        for b in &bits {
            let e = c.cost.energy_by_adc_bits.iter().find(|x| x.0 == *b).map(|x| x.1);
            r.push(e.map(|e| format!("{:.2}", e * 1e9)).unwrap_or_default());
            if let Some(e) = e {
                csv.push_str(&format!(
                    "{},{},{},{},{b},{e:e}\n",
                    c.method, c.levels, c.mode, c.cost.programming
                ));
            }
        }
        r.push(format!("{:.3}", c.cost.area_m2 * 1e6));
        r.push(format!("{:.1}", c.cost.inference_latency_s * 1e6));
        rows.push(r);
    }
    md.push_str(&format!(
        "\nInference energy per image by ADC resolution (first order):\n\n{}",
        markdown_table(&header, &rows)
    ));
    write_text_atomic(&dir.join("energy_by_adc_bits.csv"), &csv)?;
    write_text_atomic(&dir.join("cost.md"), &md)?;
    Ok(())
}
