//! Device measurements from a CSV (`g_target`, `g`, `t`, optional `device`); every problem
//! names the file, the line and the column.
use crate::error::{data_err, GqcimError, Result};
use std::path::Path;

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub g_target: f64,
    pub g: f64,
    pub t: f64,
    pub device: Option<String>,
}

fn csv_err(path: &Path, line: usize, column: &str, msg: impl std::fmt::Display) -> GqcimError {
    data_err(path, format!("line {line}, column `{column}`: {msg}"))
}

/// Reads a measurement CSV; every problem names the file, the line and the column.
pub fn read_csv(path: &Path, need_drift: bool) -> Result<Vec<Measurement>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| data_err(path, format!("cannot read the measurement CSV: {e}")))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| data_err(path, "empty CSV (no header)"))?;
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
    let col = |n: &str| names.iter().position(|c| c == n);
    let mut idx = [0usize; 3];
    for (k, n) in ["g_target", "g", "t"].iter().enumerate() {
        idx[k] = col(n).ok_or_else(|| {
            data_err(
                path,
                format!(
                    "line 1: missing column `{n}` (need g_target, g, t and optionally device; \
                     found {})",
                    names.join(", ")
                ),
            )
        })?;
    }
    let dev = col("device");
    let mut out = Vec::new();
    for (i, line) in lines {
        let ln = i + 1;
        let cells: Vec<&str> = line.split(',').map(|s| s.trim()).collect();
        if cells.len() != names.len() {
            return Err(data_err(
                path,
                format!("line {ln}: {} fields, the header has {}", cells.len(), names.len()),
            ));
        }
        let num = |k: usize, name: &str| -> Result<f64> {
            let v: f64 = cells[idx[k]].parse().map_err(|_| {
                csv_err(path, ln, name, format!("`{}` is not a number", cells[idx[k]]))
            })?;
            if !v.is_finite() {
                return Err(csv_err(path, ln, name, format!("{v} is not finite")));
            }
            Ok(v)
        };
        let g_target = num(0, "g_target")?;
        let g = num(1, "g")?;
        let t = num(2, "t")?;
        if g_target < 0.0 {
            return Err(csv_err(path, ln, "g_target", format!("negative conductance {g_target}")));
        }
        if g < 0.0 {
            return Err(csv_err(path, ln, "g", format!("negative conductance {g}")));
        }
        if t <= 0.0 {
            return Err(csv_err(
                path,
                ln,
                "t",
                format!("time after programming must be > 0, got {t}"),
            ));
        }
        let device = dev.map(|d| cells[d].to_string());
        if device.as_deref() == Some("") {
            return Err(csv_err(path, ln, "device", "empty device id"));
        }
        out.push(Measurement { g_target, g, t, device });
    }
    if out.is_empty() {
        return Err(data_err(path, "no measurements after the header"));
    }
    if need_drift {
        let t0 = out.iter().map(|m| m.t).fold(f64::INFINITY, f64::min);
        if out.iter().all(|m| m.t == t0) {
            return Err(data_err(
                path,
                format!(
                    "column `t`: one time point only ({t0} s); fitting drift needs reads at two or \
                     more times (or pass --no-drift)"
                ),
            ));
        }
        if dev.is_none() {
            return Err(data_err(
                path,
                "line 1: missing column `device`: fitting drift needs the same device read at \
                 several times (or pass --no-drift)",
            ));
        }
    }
    Ok(out)
}
