//! Memristive devices, below both the crossbar (`analog`) and the quantizers (`quant`): one
//! device model with tensor sampling and closed-form moments (`model`), the presets `pcm`,
//! `reram`, `gaussian`, `ideal` (`presets`), and fitting a preset to measurements
//! (`fit`, `gqcim fit-device`).
//!
//! Module placement: `quant` must not import `analog`, and `analog` already imports `quant`
//! (quantized targets); the shared model therefore lives here, importing only `config`.
pub mod fit;
pub mod fit_output;
mod fused;
pub mod measurements;
pub mod model;
pub mod normal;
pub mod presets;

pub use model::{clipped_normal_moments, poly_sigma, DeviceModel};

use crate::config::{AnalogConfig, Drift, LogLinear, ReadNoise};
use crate::error::{invalid, Result};

fn finite(field: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, format!("must be finite, got {v}")))
    }
}

fn positive(field: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, format!("must be finite and > 0, got {v}")))
    }
}

fn validate_log_linear(f: &LogLinear, field: &str) -> Result<()> {
    finite(&format!("{field}.slope"), f.slope)?;
    finite(&format!("{field}.intercept"), f.intercept)?;
    if !(f.min.is_finite() && f.max.is_finite() && f.min <= f.max && f.min >= -1.0 && f.max <= 1.0)
    {
        return Err(invalid(
            format!("{field}.min"),
            format!("need -1 <= min <= max <= 1, got min {}, max {}", f.min, f.max),
        ));
    }
    Ok(())
}

/// Range checks of the device fields the presets introduced (drift and read-noise models,
/// the time axis); each error names its field.
pub fn validate_device_fields(a: &AnalogConfig, section: &str) -> Result<()> {
    let f = |k: &str| format!("{section}.{k}");
    match &a.drift {
        Drift::GPowerLaw { nu_mean, nu_std, t0, .. } => {
            validate_log_linear(nu_mean, &f("drift.nu_mean"))?;
            validate_log_linear(nu_std, &f("drift.nu_std"))?;
            if nu_std.min < 0.0 {
                return Err(invalid(f("drift.nu_std.min"), "a spread must be >= 0"));
            }
            positive(&f("drift.t0"), *t0)?;
        }
        Drift::LogRelaxation { mean_slope, std_slope, std_intercept } => {
            finite(&f("drift.mean_slope"), *mean_slope)?;
            finite(&f("drift.std_slope"), *std_slope)?;
            finite(&f("drift.std_intercept"), *std_intercept)?;
        }
        _ => {}
    }
    match a.read_noise {
        ReadNoise::OneOverF { q0, exponent, floor, q_max, t_read, t0 } => {
            if !(q0 >= 0.0 && q0.is_finite()) {
                return Err(invalid(f("read_noise.q0"), format!("must be >= 0, got {q0}")));
            }
            finite(&f("read_noise.exponent"), exponent)?;
            positive(&f("read_noise.floor"), floor)?;
            if !(q_max >= 0.0 && q_max.is_finite()) {
                return Err(invalid(f("read_noise.q_max"), format!("must be >= 0, got {q_max}")));
            }
            positive(&f("read_noise.t_read"), t_read)?;
            if !(t0 >= 0.0 && t0.is_finite()) {
                return Err(invalid(f("read_noise.t0"), format!("must be >= 0, got {t0}")));
            }
        }
        ReadNoise::LogTime { k, t_read } => {
            if !(k >= 0.0 && k.is_finite()) {
                return Err(invalid(f("read_noise.k"), format!("must be >= 0, got {k}")));
            }
            positive(&f("read_noise.t_read"), t_read)?;
        }
        _ => {}
    }
    if a.t_inference.len() > 64 {
        return Err(invalid(
            f("t_inference"),
            format!("at most 64 times, got {}", a.t_inference.len()),
        ));
    }
    // Up to 1000 years after programming.
    for t in a.t_inference.iter().chain(a.fit_time.iter()) {
        if !(*t >= 0.0 && *t <= 3.2e10) {
            let k = if a.fit_time == Some(*t) { "fit_time" } else { "t_inference" };
            return Err(invalid(
                f(k),
                format!("times are seconds after programming in [0, 3.2e10], got {t}"),
            ));
        }
    }
    Ok(())
}
