//! Monte-Carlo evaluation on the crossbar: every layer is programmed once per trial
//! (seeded), the effective weights are built once per trial, and the whole test set is
//! evaluated; statistics over trials with a Student-t 95% confidence interval.
use super::device::Calibration;
use super::path::AnalogPath;
use crate::config::{AnalogConfig, CalibrationInputs};
use crate::error::{invalid, Result};
use crate::nets::Network;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The generator seed of one trial: trial t of base seed s always draws the same devices.
pub fn trial_seed(base: u64, trial: usize) -> i64 {
    let x = (base ^ 0xA5A5_5A5A_C3C3_3C3C)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((trial as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    (x ^ (x >> 31)) as i64 & i64::MAX
}

/// Programs every crossbar layer for one trial. Programming while the network is in
/// training mode is an error (as in aihwkit): fine-tuning must see the master weights.
pub fn program_trial(net: &Network, cfg: &AnalogConfig, seed: i64) -> Result<()> {
    program_layers(net, cfg, seed, true)
}

/// As `program_trial`; with `require_all` false, layers that are not on the crossbar stay
/// digital (per-layer sensitivity studies put one layer at a time on it).
pub fn program_layers(
    net: &Network,
    cfg: &AnalogConfig,
    seed: i64,
    require_all: bool,
) -> Result<()> {
    if net.layers.is_training() {
        return Err(invalid(
            "analog",
            "cannot program the crossbar while the network is in training mode; finish \
             fine-tuning (eval mode) first",
        ));
    }
    tch::manual_seed(seed);
    for l in net.layers.layers() {
        let fan_in = l.spec.weight.size()[1..].iter().product::<i64>();
        let device = l.spec.weight.device();
        let calibration = tch::no_grad(|| match cfg.calibration_inputs {
            CalibrationInputs::Gaussian => Calibration::Inputs(Tensor::randn(
                [cfg.calibration_samples, fan_in],
                (Kind::Float, device),
            )),
            CalibrationInputs::OneHot => Calibration::OneHot,
        });
        let mut done = false;
        l.with_path(|p| {
            if let Some(a) = as_analog(p) {
                a.program(Some(&calibration));
                done = true;
            }
        });
        if !done && require_all {
            return Err(invalid(
                "analog",
                format!("layer `{}` is not on the crossbar (deploy_analog first)", l.spec.name),
            ));
        }
    }
    Ok(())
}

fn as_analog(p: &mut dyn crate::nets::layers::WeightPath) -> Option<&mut AnalogPath> {
    p.as_any_mut().downcast_mut::<AnalogPath>()
}

/// One trial's seed and metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub trial: usize,
    pub seed: i64,
    pub metric: f64,
}

/// Mean, standard deviation (n-1), 95% confidence interval of the mean, min and max.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McStats {
    pub mean: f64,
    pub std: f64,
    pub ci95: f64,
    pub min: f64,
    pub max: f64,
    pub trials: Vec<Trial>,
}

/// Two-sided 95% Student-t quantile for `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        f64::NAN
    } else if df <= 30 {
        T[df - 1]
    } else {
        1.96
    }
}

impl McStats {
    /// `94.12% ± 0.50 (95% CI ± 0.62, min 93.40, max 94.80)`: the spread line the
    /// evaluation commands print (metrics are fractions, shown in %).
    pub fn spread_text(&self) -> String {
        format!(
            "{:.2}% ± {:.2} (95% CI ± {:.2}, min {:.2}, max {:.2})",
            100.0 * self.mean,
            100.0 * self.std,
            100.0 * self.ci95,
            100.0 * self.min,
            100.0 * self.max
        )
    }

    pub fn from_trials(trials: Vec<Trial>) -> McStats {
        let n = trials.len() as f64;
        let v: Vec<f64> = trials.iter().map(|t| t.metric).collect();
        let mean = v.iter().sum::<f64>() / n.max(1.0);
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        let std = var.sqrt();
        let ci95 = if v.len() > 1 { t95(v.len() - 1) * std / n.sqrt() } else { 0.0 };
        McStats {
            mean,
            std,
            ci95,
            min: v.iter().cloned().fold(f64::INFINITY, f64::min),
            max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            trials,
        }
    }
}

/// Runs `trials` Monte-Carlo trials: program, then `metric(net)` over the whole test set.
/// A deterministic device model needs one trial only.
pub fn monte_carlo(
    net: &Network,
    cfg: &AnalogConfig,
    base_seed: u64,
    metric: impl FnMut(&Network) -> Result<f64>,
) -> Result<McStats> {
    monte_carlo_layers(net, cfg, base_seed, true, metric)
}

/// `monte_carlo` where only the layers already on the crossbar are programmed when
/// `require_all` is false.
pub fn monte_carlo_layers(
    net: &Network,
    cfg: &AnalogConfig,
    base_seed: u64,
    require_all: bool,
    mut metric: impl FnMut(&Network) -> Result<f64>,
) -> Result<McStats> {
    let trials = if cfg.is_stochastic() { cfg.trials } else { 1 };
    let mut out = Vec::with_capacity(trials);
    for t in 0..trials {
        let seed = trial_seed(base_seed, t);
        program_layers(net, cfg, seed, require_all)?;
        // Read noise and periphery noise during evaluation draw from the same stream.
        tch::manual_seed(seed ^ 0x5EED);
        out.push(Trial { trial: t, seed, metric: metric(net)? });
    }
    Ok(McStats::from_trials(out))
}

/// The Monte-Carlo statistics at one time after programming (None: the drift's own time).
#[derive(Debug, Clone, Serialize)]
pub struct TimedStats {
    pub t_inference: Option<f64>,
    pub stats: McStats,
}

/// Reads every crossbar layer of this trial `t` seconds after programming.
pub fn set_time(net: &Network, t: f64) {
    for l in net.layers.layers() {
        l.with_path(|p| {
            if let Some(a) = as_analog(p) {
                a.set_time(Some(t));
            }
        });
    }
}

/// The time axis (`analog.t_inference`): every trial programs the devices once and reads
/// them at each time (the same devices and drift exponents, aihwkit's
/// `program_analog_weights` then `drift_analog_weights(t)`), so accuracy against time is
/// one population of devices ageing. Without times, one entry as `monte_carlo_layers`.
pub fn monte_carlo_times(
    net: &Network,
    cfg: &AnalogConfig,
    base_seed: u64,
    require_all: bool,
    mut metric: impl FnMut(&Network) -> Result<f64>,
) -> Result<Vec<TimedStats>> {
    if cfg.t_inference.is_empty() {
        let stats = monte_carlo_layers(net, cfg, base_seed, require_all, metric)?;
        return Ok(vec![TimedStats { t_inference: None, stats }]);
    }
    let trials = if cfg.is_stochastic() { cfg.trials } else { 1 };
    let mut per_time: Vec<Vec<Trial>> = vec![Vec::with_capacity(trials); cfg.t_inference.len()];
    for t in 0..trials {
        let seed = trial_seed(base_seed, t);
        program_layers(net, cfg, seed, require_all)?;
        for (k, &time) in cfg.t_inference.iter().enumerate() {
            // Accumulated read noise and relaxation at this time, then per-forward noise.
            tch::manual_seed((seed ^ 0x5EED).wrapping_add(0x9E37_79B9 * k as i64) & i64::MAX);
            set_time(net, time);
            per_time[k].push(Trial { trial: t, seed, metric: metric(net)? });
        }
    }
    Ok(cfg
        .t_inference
        .iter()
        .zip(per_time)
        .map(|(t, v)| TimedStats { t_inference: Some(*t), stats: McStats::from_trials(v) })
        .collect())
}

/// A time in seconds as a short label: 1 s, 1 h, 1 d, 30 d, 1 y.
pub fn time_label(t: Option<f64>) -> String {
    let Some(t) = t else { return "-".into() };
    const Y: f64 = 365.0 * 86_400.0;
    let (v, u) = if t >= Y {
        (t / Y, "y")
    } else if t >= 86_400.0 {
        (t / 86_400.0, "d")
    } else if t >= 3600.0 {
        (t / 3600.0, "h")
    } else if t >= 60.0 {
        (t / 60.0, "min")
    } else {
        (t, "s")
    };
    if (v - v.round()).abs() < 1e-9 {
        format!("{} {u}", v.round())
    } else {
        format!("{v:.2} {u}")
    }
}
