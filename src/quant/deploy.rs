//! Puts a quantization config onto a built network: validates the layer selection, folds
//! BatchNorm when asked, installs one weight path per conv/linear layer, and reports.
use super::lsq::LsqPath;
use super::paths::{FitSettings, LevelPath, SharedClock};
use crate::config::{did_you_mean, AnalogConfig, QuantConfig, QuantMethod};
use crate::error::{invalid, GqcimError, Result};
use crate::nets::layers::{LayerOp, WeightPath};
use crate::nets::Network;
use serde_json::{json, Map, Value};
use std::time::Instant;
use tch::{Kind, Tensor};

/// What `apply_quantization` did.
#[derive(Debug, Default)]
pub struct QuantDeployment {
    pub quantized: Vec<String>,
    pub kept_fp32: Vec<String>,
    pub fit_seconds: f64,
    pub clock: SharedClock,
}

/// Every name in `keep_fp32` must be a hooked layer of the network.
pub fn check_layer_names(net: &Network, field: &str, names: &[String]) -> Result<()> {
    let all = net.layers.names();
    for n in names {
        if !all.contains(n) {
            let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
            let hint =
                did_you_mean(n, &refs).map(|s| format!(" did you mean `{s}`?")).unwrap_or_default();
            return Err(invalid(
                field,
                format!(
                    "layer `{n}` does not exist in {}.{hint} Layers: {}",
                    net.arch,
                    all.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the weight path of one layer for a method.
pub fn make_path(
    layer: &crate::nets::layers::LayerSpec,
    q: &QuantConfig,
    a: &AnalogConfig,
    clock: &SharedClock,
) -> Result<Box<dyn WeightPath>> {
    let lerr = |msg: String| GqcimError::Layer { layer: layer.name.clone(), msg };
    if q.levels as i64 > layer.numel() {
        return Err(lerr(format!(
            "quant.levels = {} is more than the layer's {} weights",
            q.levels,
            layer.numel()
        )));
    }
    Ok(match q.method {
        QuantMethod::Fp32 => Box::new(crate::nets::layers::Identity),
        QuantMethod::Lsq => {
            if q.per_channel {
                return Err(invalid("quant.per_channel", "LSQ here learns one step per layer"));
            }
            Box::new(LsqPath::new(layer, q.levels))
        }
        QuantMethod::GqLearn => {
            let mut s = FitSettings::from_config(q, a);
            s.method = q.learn_init;
            Box::new(super::learn::LearnedLevelPath::new(layer, &s).map_err(lerr)?)
        }
        _ => Box::new(
            LevelPath::new(layer, FitSettings::from_config(q, a), clock.clone()).map_err(lerr)?,
        ),
    })
}

/// Installs the configured quantizer on every conv/linear layer not kept in fp32.
pub fn apply_quantization(
    net: &Network,
    q: &QuantConfig,
    a: &AnalogConfig,
) -> Result<QuantDeployment> {
    check_layer_names(net, "quant.keep_fp32", &q.keep_fp32)?;
    let mut dep = QuantDeployment::default();
    let start = Instant::now();
    for l in net.layers.layers() {
        if q.keep_fp32.contains(&l.spec.name) || q.method == QuantMethod::Fp32 {
            l.set_path(Box::new(crate::nets::layers::Identity));
            dep.kept_fp32.push(l.spec.name.clone());
            continue;
        }
        let path = tch::no_grad(|| make_path(&l.spec, q, a, &dep.clock))?;
        l.set_path(path);
        dep.quantized.push(l.spec.name.clone());
    }
    dep.fit_seconds = start.elapsed().as_secs_f64();
    Ok(dep)
}

/// Per-layer reports (quanta, thresholds, MSE, SQNR); with `exact_gap`, also the
/// squared-error gap of `gq` to the globally optimal `gq-exact` quanta.
pub fn quant_report(net: &Network, q: &QuantConfig, exact_gap: bool) -> Value {
    let mut layers = Map::new();
    for l in net.layers.layers() {
        let mut r = l.report();
        r["path"] = json!(l.describe());
        if exact_gap && q.method == QuantMethod::Gq && !q.per_channel && r.get("quanta").is_some() {
            let w = l.spec.weight.detach();
            if let Ok(ex) = super::exact::exact_kmeans_1d(&w, q.levels, q.exact_bins) {
                let n = w.numel() as f64;
                let gq_mse = r["mse"].as_f64().unwrap_or(f64::NAN);
                let ex_mse = ex.distortion / n;
                r["gq_exact_mse"] = json!(ex_mse);
                r["gap_to_exact_percent"] = json!(100.0 * (gq_mse - ex_mse) / ex_mse.max(1e-30));
            }
        }
        layers.insert(l.spec.name.clone(), r);
    }
    Value::Object(layers)
}

/// The BatchNorm that follows a conv, by torchvision's naming: `x.convK` -> `x.bnK`,
/// `downsample.0` -> `downsample.1`, `conv1` -> `bn1`.
pub fn bn_after(conv: &str) -> Option<String> {
    if let Some(prefix) = conv.strip_suffix(".0") {
        return Some(format!("{prefix}.1"));
    }
    let (head, last) = match conv.rsplit_once('.') {
        Some((h, l)) => (format!("{h}."), l),
        None => (String::new(), conv),
    };
    last.strip_prefix("conv").map(|k| format!("{head}bn{k}"))
}

/// Folds each BatchNorm into its preceding conv (eval-mode statistics): the conv weight
/// takes gamma/sigma per output channel, and the BN becomes a pure bias
/// (gamma 1, mean 0, var 1 - eps, beta - gamma·mean/sigma). Returns the folded conv names.
pub fn fold_batchnorm(net: &Network) -> Result<Vec<String>> {
    let vars = net.vs.variables();
    let eps = 1e-5;
    let mut folded = Vec::new();
    tch::no_grad(|| {
        for l in net.layers.layers() {
            if !matches!(l.spec.op, LayerOp::Conv2d { .. }) {
                continue;
            }
            let Some(bn) = bn_after(&l.spec.name) else { continue };
            let get = |k: &str| vars.get(&format!("{bn}.{k}")).map(|t| t.shallow_clone());
            let (Some(mut g), Some(mut b), Some(mut m), Some(mut v)) =
                (get("weight"), get("bias"), get("running_mean"), get("running_var"))
            else {
                continue;
            };
            let scale = &g / (&v + eps).sqrt();
            let c = scale.size()[0];
            let mut w = l.spec.weight.shallow_clone();
            let _ = w.g_mul_(&scale.view([c, 1, 1, 1]));
            let new_bias = &b - &m * &scale;
            b.copy_(&new_bias);
            let _ = g.fill_(1.0);
            let _ = m.fill_(0.0);
            let _ = v.fill_(1.0 - eps);
            folded.push(l.spec.name.clone());
        }
    });
    Ok(folded)
}

/// The squared error of the quantized weights against the master weights, summed.
pub fn total_squared_error(net: &Network) -> f64 {
    net.layers
        .layers()
        .iter()
        .map(|l| {
            let q = l.effective_weight();
            (q - l.spec.weight.detach()).square().sum(Kind::Double).double_value(&[])
        })
        .sum()
}

/// Stacks the quanta of every layer for a TensorBoard histogram of the quantized weights.
pub fn quantized_weights(net: &Network) -> Vec<(String, Tensor)> {
    net.layers.layers().iter().map(|l| (l.spec.name.clone(), l.effective_weight())).collect()
}
