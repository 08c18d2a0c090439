//! What `gqcim fit-device` writes: the fitted device as a preset YAML (usable as
//! `analog: {preset_file: ...}`) and a data-vs-fit PNG through the grid's chart renderer.
use super::fit::{fit, DeviceFit, FitOptions, LevelStats, T_READ};
use super::measurements::read_csv;
use crate::config::ReadNoise;
use crate::config::{AnalogConfig, Clip, Drift, DriftCompensation, ProgrammingNoise};
use crate::error::{data_err, Result};
use std::path::Path;

impl DeviceFit {
    /// The fitted device as `analog` fields (a preset usable with `preset_file`).
    pub fn to_analog(&self) -> AnalogConfig {
        let mut a = AnalogConfig {
            g_min: 0.0,
            g_max: self.g_max,
            clip: Clip::NonNegative,
            programming_noise: ProgrammingNoise::Polynomial { coeffs: self.coeffs.clone() },
            ..Default::default()
        };
        if let (Some(m), Some(s)) = (&self.nu_mean, &self.nu_std) {
            a.drift =
                Drift::GPowerLaw { nu_mean: m.clone(), nu_std: s.clone(), t0: self.t0, fold: true };
            a.drift_compensation = Some(DriftCompensation::Global);
            a.t_inference = super::presets::STANDARD_TIMES.to_vec();
        }
        if let Some((q0, exponent)) = self.read {
            // Times in the preset count from t0 (the first read), as the drift's.
            a.read_noise = ReadNoise::OneOverF {
                q0,
                exponent,
                floor: 1e-3,
                q_max: 0.2,
                t_read: T_READ,
                t0: self.t0,
            };
        }
        a
    }

    /// The preset YAML: only the device fields, with a provenance comment.
    pub fn to_yaml(&self, source: &str) -> String {
        let a = self.to_analog();
        let mut m = serde_yaml::Mapping::new();
        let v = serde_yaml::to_value(&a).unwrap_or(serde_yaml::Value::Null);
        for k in [
            "g_min",
            "g_max",
            "clip",
            "programming_noise",
            "drift",
            "read_noise",
            "drift_compensation",
            "t_inference",
        ] {
            if let Some(x) = v.get(k) {
                if !x.is_null() {
                    m.insert(serde_yaml::Value::String(k.into()), x.clone());
                }
            }
        }
        format!(
            "# gqcim fit-device from {source}: {} measurements, {} target levels, t0 = {} s\n\
             # use with analog: {{preset_file: THIS_FILE}}\n{}",
            self.rows,
            self.levels.len(),
            self.t0,
            serde_yaml::to_string(&m).unwrap_or_default()
        )
    }

    /// Data against fit: sigma(g) in one PNG, nu mean and spread (×100) in `<stem>_drift.png`.
    pub fn plot(&self, path: &Path) -> std::result::Result<(), String> {
        let dm = super::DeviceModel::from_analog(&self.to_analog());
        let data: Vec<(f64, f64, f64)> = self
            .levels
            .iter()
            .filter(|s| s.sigma_prog > 0.0)
            .map(|s| (s.g_target, s.sigma_prog, 0.0))
            .collect();
        let fit: Vec<(f64, f64, f64)> =
            self.levels.iter().map(|s| (s.g_target, dm.sigma_at(s.g_target), 0.0)).collect();
        line_chart(
            path,
            "programming noise: measured vs fitted sigma(g)",
            "target conductance (µS)",
            "sigma (µS)",
            &[
                Series { label: "measured".into(), points: data },
                Series { label: "fit".into(), points: fit },
            ],
            false,
        )?;
        if self.nu_mean.is_none() {
            return Ok(());
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("fit");
        let drift_path = path.with_file_name(format!("{stem}_drift.png"));
        let pts = |f: &dyn Fn(&LevelStats) -> f64| -> Vec<(f64, f64, f64)> {
            self.levels
                .iter()
                .filter(|s| s.devices >= 3)
                .map(|s| (s.g_target, 100.0 * f(s), 0.0))
                .collect()
        };
        let fitted = |which: usize| -> Vec<(f64, f64, f64)> {
            self.levels
                .iter()
                .filter(|s| s.devices >= 3)
                .map(|s| {
                    let (m, sd) = dm.nu_stats(s.g_target).unwrap_or((0.0, 0.0));
                    (s.g_target, 100.0 * if which == 0 { m } else { sd }, 0.0)
                })
                .collect()
        };
        line_chart(
            &drift_path,
            "drift exponent nu: measured vs fitted (×100)",
            "target conductance (µS)",
            "nu × 100",
            &[
                Series { label: "mean measured".into(), points: pts(&|s| s.nu_mean) },
                Series { label: "mean fit".into(), points: fitted(0) },
                Series { label: "std measured".into(), points: pts(&|s| s.nu_std) },
                Series { label: "std fit".into(), points: fitted(1) },
            ],
            false,
        )
    }
}

/// `gqcim fit-device`: reads the CSV, fits, writes the preset YAML (atomically) and the
/// plot; prints the fitted parameters. Returns the YAML.
pub fn fit_device_command(
    csv: &Path,
    out: &Path,
    plot: Option<&Path>,
    opts: &FitOptions,
) -> Result<String> {
    if !(1..=6).contains(&opts.degree) {
        return Err(crate::error::invalid(
            "--degree",
            format!("expected 1..=6, got {}", opts.degree),
        ));
    }
    if let Some(g) = opts.g_max {
        if !(g > 0.0 && g.is_finite()) {
            return Err(crate::error::invalid("--g-max", format!("must be > 0, got {g}")));
        }
    }
    let ms = read_csv(csv, opts.drift)?;
    let f = fit(&ms, opts, csv)?;
    let yaml = f.to_yaml(&csv.display().to_string());
    // The preset must load as an analog section before it is written.
    let check = format!("analog:\n{}", indent(&yaml));
    crate::config::Config::from_yaml_str(&check, &out.display().to_string(), &[])?;
    crate::checkpoint::write_text_atomic(out, &yaml)?;
    if let Some(p) = plot {
        f.plot(p).map_err(|e| data_err(p, format!("cannot draw the plot: {e}")))?;
    }
    println!(
        "fit-device: {} measurements, {} levels, t0 = {} s\n  sigma(g) coeffs (µS): {:?}\n  \
         nu mean: {:?}\n  nu std: {:?}\n  1/f read noise (q0, exponent): {:?}\nwrote {}",
        f.rows,
        f.levels.len(),
        f.t0,
        f.coeffs,
        f.nu_mean,
        f.nu_std,
        f.read,
        out.display()
    );
    Ok(yaml)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// One curve of a fit plot: (x, y, unused CI) points.
struct Series {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

/// Data-vs-fit chart through the grid's renderer: measured series as markers, fitted ones
/// as lines, x ticks at (at most eight of) the measured target conductances.
fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    _log_x: bool,
) -> std::result::Result<(), String> {
    use crate::glance::plot::{render, Chart, Draw, Line, Marker, PlotPoint, XAxis};
    use plotters::style::RGBColor;
    // Okabe-Ito blue and vermillion: measured and fitted of one quantity share a colour.
    const COLOURS: [RGBColor; 2] = [RGBColor(0, 114, 178), RGBColor(213, 94, 0)];
    let mut xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let step = xs.len().div_ceil(8).max(1);
    let ticks: Vec<f64> = xs.iter().step_by(step).copied().collect();
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let fitted = s.label.contains("fit");
            Line {
                label: s.label.clone(),
                colour: COLOURS[(i / 2) % COLOURS.len()],
                marker: if fitted { Marker::Square } else { Marker::Circle },
                draw: if fitted { Draw::Line } else { Draw::Markers },
                points: s.points.iter().map(|p| PlotPoint { x: p.0, y: p.1, ci: None }).collect(),
            }
        })
        .collect();
    let chart = Chart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        caption: Vec::new(),
        x: XAxis::Values(ticks),
        lines,
        reference: None,
        y_bounds: None,
    };
    render(path, &chart).map(|_| ())
}
