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
use crate::nets::Network;
use crate::report::markdown_table;
use crate::tb::Tb;
use plotters::prelude::*;
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
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub tolerance: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub verify_fraction: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub pulses: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub verify_reads: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub unconverged: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub program_time_s: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub program_energy_j: f64,
    /// Wall time the simulator spent programming all layers (one trial, this machine).
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub program_sim_s: f64,
    pub adc_bits: u32,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub inference_energy_j: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub inference_latency_s: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
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

const W: u32 = 800;

/// Scatter of accuracy (%) against a cost (log x) per method, with each method's Pareto
/// front drawn as a line; into an RGB buffer (W × W) and a PNG.
fn pareto_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    points: &[(String, Vec<(f64, f64)>)],
    fp32: Option<f64>,
) -> std::result::Result<Vec<u8>, String> {
    let mut buf = vec![0u8; (W * W * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, W)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let all: Vec<(f64, f64)> =
            points.iter().flat_map(|(_, p)| p.iter().copied()).filter(|p| p.0 > 0.0).collect();
        if all.is_empty() {
            return Err("nothing to plot".into());
        }
        let lx = |x: f64| x.log10();
        let x0 = all.iter().map(|p| lx(p.0)).fold(f64::MAX, f64::min);
        let x1 = all.iter().map(|p| lx(p.0)).fold(f64::MIN, f64::max);
        let mut y0 = all.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        let mut y1 = all.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        if let Some(f) = fp32 {
            y0 = y0.min(f);
            y1 = y1.max(f);
        }
        let px = ((x1 - x0) * 0.05).max(0.05);
        let py = ((y1 - y0) * 0.05).max(0.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(format!("{x_label} (log10)"))
            .y_desc("accuracy (%)")
            .x_label_formatter(&|v| format!("1e{v:.1}"))
            .draw()
            .map_err(|e| e.to_string())?;
        if let Some(f) = fp32 {
            chart
                .draw_series(LineSeries::new(
                    vec![(x0 - px, f), (x1 + px, f)],
                    BLACK.mix(0.5).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label("fp32 (digital)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
        }
        for (i, (label, pts)) in points.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = pts.iter().filter(|p| p.0 > 0.0).copied().collect();
            let front: Vec<(f64, f64)> =
                pareto_front(&pts).iter().map(|&j| (lx(pts[j].0), pts[j].1)).collect();
            chart
                .draw_series(
                    pts.iter().map(|p| Circle::new((lx(p.0), p.1), 3, color.mix(0.6).filled())),
                )
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(front, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    // Temp file and rename, as every other output.
    let tmp = path.with_extension("png.tmp");
    image::save_buffer_with_format(
        &tmp,
        &buf,
        W,
        W,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn hwc_to_chw(hwc: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; 3 * h * w];
    for (i, px) in hwc.chunks(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = px[c];
        }
    }
    out
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
    let mut methods: Vec<String> = Vec::new();
    for c in cells {
        let key = format!("{} {}", c.method, c.mode);
        if !methods.contains(&key) {
            methods.push(key);
        }
    }
    let series = |f: &dyn Fn(&CellCost) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        methods
            .iter()
            .map(|m| {
                let pts = cells
                    .iter()
                    .filter(|c| format!("{} {}", c.method, c.mode) == *m)
                    .map(|c| (f(c.cost), c.accuracy))
                    .collect();
                (m.clone(), pts)
            })
            .collect()
    };
    let pulses = series(&|c: &CellCost| c.pulses);
    let energy = series(&|c: &CellCost| c.inference_energy_j * 1e9);
    for (name, title, xl, s) in [
        ("pareto_accuracy_vs_pulses", "accuracy vs programming pulses", "total pulses", &pulses),
        (
            "pareto_accuracy_vs_energy",
            "accuracy vs inference energy per image",
            "energy per image (nJ)",
            &energy,
        ),
    ] {
        match pareto_chart(&dir.join(format!("{name}.png")), title, xl, s, fp32_pct) {
            Ok(buf) => tb.image(
                &format!("cost/{name}"),
                &hwc_to_chw(&buf, W as usize, W as usize),
                W as usize,
                W as usize,
                0,
            ),
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
                    m.clone(),
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
