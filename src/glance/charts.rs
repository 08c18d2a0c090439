//! The grid's charts, named by metric (after an optional prefix): `<metric>_vs_levels.png` (at the first σ),
//! `<metric>_vs_sigma_N<n>.png` and `<metric>_gap_vs_sigma_N<n>.png` (difference from fp32)
//! per N. Colour = quantizer, marker = fine-tuning mode, dashed = fp32.
use super::layout::ChartLayout;
use super::plot::{render, Chart, Draw, Line, Marker, PlotPoint, XAxis, OKABE_ITO};
use super::points::{
    fp32_at, metric_key, short_metric, sigma_pct, some_ci_withheld, trial_summary, GridPoint,
    MIN_CI_TRIALS,
};
use super::table::wrap;
use std::path::{Path, PathBuf};

/// The colour of a quantizer, the same in every chart.
pub fn colour(method: &str) -> plotters::style::RGBColor {
    let i = ["gq", "gq-noise", "uniform-mse", "lsq", "uniform"].iter().position(|m| *m == method);
    OKABE_ITO[i.unwrap_or(5) % OKABE_ITO.len()]
}

/// The marker of a fine-tuning mode, the same in every chart.
pub fn marker(mode: &str) -> Marker {
    match mode {
        "ptq" => Marker::Circle,
        "qat" => Marker::Square,
        "qat-noise" => Marker::Triangle,
        _ => Marker::Diamond,
    }
}

fn pt(x: f64, p: &GridPoint) -> PlotPoint {
    PlotPoint { x, y: p.mean_pct(), ci: p.ci_pct() }
}

/// (method, mode) series in grid order.
fn series_keys(points: &[GridPoint]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in points.iter().filter(|p| !p.is_fp32()) {
        let k = (p.method.clone(), p.mode.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// Characters per caption line: 15 px sans-serif over the chart's width.
const CAPTION_CHARS: usize = 125;

fn caption(points: &[GridPoint], gap: bool) -> Vec<String> {
    let bars = if some_ci_withheld(points) {
        format!(
            "No bars: fewer than {MIN_CI_TRIALS} replications ({}), too few for a CI.",
            trial_summary(points)
        )
    } else {
        format!(
            "Bars: 95% CI of the mean (Student t), {}; series offset 7 px sideways so equal \
             values stay visible.",
            trial_summary(points)
        )
    };
    let reference = if gap {
        "Δ = metric minus fp32's at the same σ (points); band = fp32's own 95% CI around 0. \
         σ in % of the conductance window."
    } else {
        "Dashed: fp32 (32-bit float) with its 95% CI band. σ = programming noise in % of the \
         conductance window."
    };
    let mut lines = wrap(&bars, CAPTION_CHARS);
    lines.extend(wrap(reference, CAPTION_CHARS));
    lines
}

fn reference(label: &str, points: Vec<PlotPoint>) -> Option<Line> {
    (!points.is_empty()).then(|| Line {
        label: label.into(),
        colour: plotters::style::RGBColor(0, 0, 0),
        marker: Marker::Circle,
        draw: Draw::LineAndMarkers,
        points,
    })
}

/// All charts of a grid; returns the written paths with their layouts. Failures are
/// logged and skipped: a missing plot never fails a grid. A grid with several programming
/// variants (cost grids) or layer policies is charted at its first one, named in the
/// titles; the tables and the cost outputs compare them.
pub fn write_charts(
    dir: &Path,
    points: &[GridPoint],
    prefix: &str,
    metric: &str,
    levels: &[usize],
    sigmas: &[f64],
) -> Vec<(PathBuf, ChartLayout)> {
    let key = format!("{prefix}{}", metric_key(metric));
    let first_variant = points.first().and_then(|p| p.variant.clone());
    let mut name = short_metric(metric).to_string();
    let first_policy = points.iter().find(|p| !p.is_fp32()).and_then(|p| p.policy.clone());
    match first_policy.as_deref() {
        Some("") => name.push_str(", all layers quantized"),
        Some(kept) => name.push_str(&format!(", fp32 {}", kept.replace('+', ", "))),
        None => {}
    }
    if let Some(v) = &first_variant {
        name.push_str(&format!(", {v}"));
    }
    // The first layer policy likewise (every policy has its own rows in the tables).
    let points: Vec<GridPoint> = points
        .iter()
        .filter(|p| p.variant == first_variant && (p.is_fp32() || p.policy == first_policy))
        .cloned()
        .collect();
    let points = &points[..];
    let keys = series_keys(points);
    let mut out = Vec::new();
    let mut emit = |file: String, chart: Chart| {
        let path = dir.join(file);
        match render(&path, &chart) {
            Ok(l) => out.push((path, l)),
            Err(e) => log::warn!("plot {}: {e}", path.display()),
        }
    };
    let Some(&s0) = sigmas.first() else { return Vec::new() };
    let line = |(m, mode): &(String, String), sel: &dyn Fn(&GridPoint) -> Option<PlotPoint>| Line {
        label: format!("{m} {mode}"),
        colour: colour(m),
        marker: marker(mode),
        draw: Draw::LineAndMarkers,
        points: points
            .iter()
            .filter(|p| &p.method == m && &p.mode == mode)
            .filter_map(sel)
            .collect(),
    };
    let lines: Vec<Line> = keys
        .iter()
        .map(|k| line(k, &|p| (p.sigma == s0).then(|| pt(p.levels as f64, p))))
        .collect();
    emit(
        format!("{key}_vs_levels.png"),
        Chart {
            title: format!("{name} vs analog levels N (σ = {}%)", sigma_pct(s0)),
            x_label: "levels N per weight (log scale)".into(),
            y_label: metric.into(),
            caption: caption(points, false),
            x: XAxis::Levels(levels.to_vec()),
            lines,
            reference: reference(
                "fp32 (32-bit float)",
                fp32_at(points, s0).map(|f| vec![pt(0.0, f)]).unwrap_or_default(),
            ),
            y_bounds: Some((0.0, 100.0)),
        },
    );
    let fp32: Vec<&GridPoint> = points.iter().filter(|p| p.is_fp32()).collect();
    let sig_pct: Vec<f64> = sigmas.iter().map(|s| 100.0 * s).collect();
    for &n in levels {
        let lines: Vec<Line> = keys
            .iter()
            .map(|k| line(k, &|p| (p.levels == n).then(|| pt(100.0 * p.sigma, p))))
            .collect();
        emit(
            format!("{key}_vs_sigma_N{n}.png"),
            Chart {
                title: format!("{name} vs programming noise, N = {n} levels vs fp32"),
                x_label: "σ (% of the conductance window)".into(),
                y_label: metric.into(),
                caption: caption(points, false),
                x: XAxis::Values(sig_pct.clone()),
                lines,
                reference: reference(
                    "fp32 (32-bit float)",
                    fp32.iter().map(|f| pt(100.0 * f.sigma, f)).collect(),
                ),
                y_bounds: Some((0.0, 100.0)),
            },
        );
        if fp32.is_empty() {
            continue;
        }
        let gap_lines: Vec<Line> = keys
            .iter()
            .map(|k| {
                line(k, &|p| {
                    let f = fp32_at(points, p.sigma)?;
                    (p.levels == n).then(|| PlotPoint {
                        x: 100.0 * p.sigma,
                        y: 100.0 * (p.mean - f.mean),
                        ci: p.ci_pct(),
                    })
                })
            })
            .collect();
        emit(
            format!("{key}_gap_vs_sigma_N{n}.png"),
            Chart {
                title: format!("{name} gap to fp32 vs programming noise, N = {n}"),
                x_label: "σ (% of the conductance window)".into(),
                y_label: format!("Δ {} vs fp32 (points)", short_metric(metric)),
                caption: caption(points, true),
                x: XAxis::Values(sig_pct.clone()),
                lines: gap_lines,
                reference: reference(
                    "fp32 (Δ = 0)",
                    fp32.iter()
                        .map(|f| PlotPoint { x: 100.0 * f.sigma, y: 0.0, ci: f.ci_pct() })
                        .collect(),
                ),
                y_bounds: Some((-100.0, 100.0)),
            },
        );
    }
    out
}
