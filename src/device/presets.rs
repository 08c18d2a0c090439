//! Device presets: `analog: {preset: NAME, ...overrides}` or `analog: {preset_file: F}`.
//!
//! A preset is a YAML mapping of `analog` fields, expanded into the config's value tree
//! before the typed parse; the user's own keys replace the preset's (whole keys, so
//! `read_noise: {type: none}` switches a preset's read noise off). `gqcim fit-device`
//! writes the same format.
//!
//! Constants, with their source:
//! - `pcm`: IBM aihwkit `PCMLikeNoiseModel`, src/aihwkit/inference/noise/pcm.py (Nandakumar
//!   et al., ICECS 2019): `prog_coeff = [0.26348, 1.9650, -1.1731]` in µS as a polynomial in
//!   g/g_max with g_max = 25 µS (here rewritten in g: c1/25, c2/25²); `generate_drift_
//!   coefficients`: mu_nu = clamp(-0.0155·ln(g/g_max) + 0.0244, 0.049, 0.1), sigma_nu =
//!   clamp(-0.0125·ln(g/g_max) - 0.0059, 0.008, 0.045), nu = |N(mu, sigma)|; `t_0 = 20`;
//!   `apply_drift_noise_to_conductance`: Q_s = min(0.2, 0.0088 / max(1e-3, (g/g_max)^0.65)),
//!   sigma = Q_s·sqrt(ln((t + t_0 + t_read)/(2·t_read))), `t_read = 250e-9`; conductances
//!   clamped at 0 only; `SinglePairConductanceConverter` g_min = 0; aihwkit's default
//!   drift compensation is `GlobalDriftCompensation`.
//! - `reram`: aihwkit `ReRamCMONoiseModel`, src/aihwkit/inference/noise/reram.py (Falcone et
//!   al.): programming sigma linear in g (µS), `coeff_dict[2]` (2% write-verify acceptance
//!   range) = 0.0112185391 + 0.01129027418·g (the 0.2% range is 0.00081107 + 0.00106879·g);
//!   `decay_dict`: mean shift -0.08900206·ln t µS, spread 0.04201137·ln t + 0.41183342 µS;
//!   `read_dict`: K = 0.0277316483, t_read = 1e-6; window g_min = 9.0, g_max = 88.19 µS as in
//!   aihwkit's CMO examples; no drift compensation (the examples set None; the common shift
//!   cancels in a differential pair).
//! - `gaussian`: gqcim's Gaussian programming noise, sigma = 2% of the window [1, 25] µS.
//! - `ideal`: the window [1, 25] µS, 256×256 tiles, no non-ideality (gqcim's defaults; the
//!   comparison grid adds Gaussian programming noise from `compare.sigmas`).
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// The names of the built-in presets.
pub const PRESETS: [&str; 4] = ["pcm", "reram", "gaussian", "ideal"];

/// Times after programming of the time axis: 1 s, 1 h, 1 day, 30 days, 365 days.
pub const STANDARD_TIMES: [f64; 5] = [1.0, 3600.0, 86_400.0, 2_592_000.0, 31_536_000.0];

const PCM: &str = "
g_min: 0.0
g_max: 25.0
clip: non-negative
programming_noise: {type: polynomial, coeffs: [0.26348, 0.0786, -0.001876960]}
drift:
  type: g-power-law
  t0: 20.0
  fold: true
  nu_mean: {slope: -0.0155, intercept: 0.0244, min: 0.049, max: 0.1}
  nu_std: {slope: -0.0125, intercept: -0.0059, min: 0.008, max: 0.045}
read_noise: {type: one-over-f, q0: 0.0088, exponent: 0.65, floor: 0.001, q_max: 0.2, t_read: 2.5e-7, t0: 20.0}
drift_compensation: global
t_inference: [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0]
";

const RERAM: &str = "
g_min: 9.0
g_max: 88.19
clip: window
programming_noise: {type: polynomial, coeffs: [0.0112185391, 0.01129027418]}
drift: {type: log-relaxation, mean_slope: -0.08900206, std_slope: 0.04201137, std_intercept: 0.41183342}
read_noise: {type: log-time, k: 0.0277316483, t_read: 1.0e-6}
drift_compensation: none
t_inference: [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0]
";

const GAUSSIAN: &str = "
g_min: 1.0
g_max: 25.0
tile_rows: 256
tile_cols: 256
programming_noise: {type: gaussian, sigma: 0.02}
";

const IDEAL: &str = "
g_min: 1.0
g_max: 25.0
tile_rows: 256
tile_cols: 256
";

/// The YAML text of a built-in preset.
pub fn preset_text(name: &str) -> Option<&'static str> {
    match name {
        "pcm" => Some(PCM),
        "reram" => Some(RERAM),
        "gaussian" => Some(GAUSSIAN),
        "ideal" => Some(IDEAL),
        _ => None,
    }
}

/// The mapping of a built-in preset.
pub fn preset_mapping(name: &str) -> Result<Mapping, String> {
    let text = preset_text(name).ok_or_else(|| {
        let hint = crate::config::did_you_mean(name, &PRESETS)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        format!(
            "field `analog.preset`: unknown preset `{name}`{hint} (allowed: {})",
            PRESETS.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        )
    })?;
    match serde_yaml::from_str(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        _ => Err(format!("built-in preset `{name}` is not a mapping (a gqcim bug)")),
    }
}

/// Reads a preset file: a mapping of `analog` fields, or `{analog: {...}}`.
pub fn read_preset_file(path: &Path) -> Result<Mapping, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("analog.preset_file: cannot read {}: {e}", path.display()))?;
    let v: Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("analog.preset_file {}: not valid YAML: {e}", path.display()))?;
    let m = match v {
        Value::Mapping(mut m) => match m.remove("analog") {
            Some(Value::Mapping(inner)) => inner,
            Some(_) => {
                return Err(format!(
                    "analog.preset_file {}: `analog` must be a mapping",
                    path.display()
                ))
            }
            None => m,
        },
        _ => {
            return Err(format!(
                "analog.preset_file {}: expected a mapping of analog fields",
                path.display()
            ))
        }
    };
    if m.contains_key("preset_file") {
        return Err(format!(
            "analog.preset_file {}: a preset file cannot name another preset_file",
            path.display()
        ));
    }
    Ok(m)
}

/// A relative preset file is looked up next to the config first, then from the working
/// directory.
fn resolve(file: &str, origin: &str) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_relative() {
        if let Some(dir) = Path::new(origin).parent() {
            let near = dir.join(&p);
            if near.exists() {
                return near;
            }
        }
    }
    p
}

/// Expands `analog.preset` / `analog.preset_file` in a config's value tree: preset, then
/// file, then the user's keys (which win; `preset` and `preset_file` stay for the record).
pub fn expand_in_tree(tree: &mut Value, origin: &str) -> Result<(), String> {
    let Some(Value::Mapping(analog)) = tree.get_mut("analog") else { return Ok(()) };
    let name = match analog.get("preset") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("field `analog.preset`: expected a preset name".into()),
    };
    let file = match analog.get("preset_file") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(resolve(s, origin)),
        Some(_) => return Err("field `analog.preset_file`: expected a file path".into()),
    };
    if name.is_none() && file.is_none() {
        return Ok(());
    }
    let mut merged = Mapping::new();
    if let Some(n) = &name {
        merged.extend(preset_mapping(n)?);
    }
    if let Some(f) = &file {
        let m = read_preset_file(f)?;
        if let (Some(Value::String(inner)), None) = (m.get("preset"), &name) {
            merged.extend(preset_mapping(inner)?);
        }
        merged.extend(m);
    }
    for (k, v) in analog.iter() {
        merged.insert(k.clone(), v.clone());
    }
    *analog = merged;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for p in PRESETS {
            let cfg = crate::config::Config::from_yaml_str(
                &format!("analog: {{preset: {p}}}\n"),
                "t.yaml",
                &[],
            )
            .unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(cfg.analog.preset.as_deref(), Some(p));
        }
    }

    #[test]
    fn user_keys_override_the_preset_and_typos_are_named() {
        let cfg = crate::config::Config::from_yaml_str(
            "analog: {preset: pcm, g_max: 30.0, read_noise: {type: none}}\n",
            "t.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.analog.g_max, 30.0);
        assert_eq!(cfg.analog.read_noise, crate::config::ReadNoise::None);
        assert_eq!(cfg.analog.t_inference.len(), 5);
        let e = crate::config::Config::from_yaml_str("analog: {preset: pmc}\n", "t.yaml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `pcm`") && e.contains("t.yaml"), "{e}");
    }
}
