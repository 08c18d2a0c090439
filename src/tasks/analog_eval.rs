//! `detect-eval --analog` and `segment-eval --analog`: the Monte-Carlo crossbar evaluation of
//! `gqcim eval --analog` (classification) for any task metric: quantize with `quant` (fp32 =
//! continuous conductances), put every layer on the crossbar, and score each seeded trial on
//! the whole test set.
use crate::analog::montecarlo::{deploy_analog, monte_carlo};
use crate::config::Config;
use crate::error::Result;
use crate::nets::Network;
use crate::run::RunDir;
use serde_json::{json, Value};

/// Runs the trials on `net` (which it leaves on the crossbar) with `metric` scoring one
/// network as a fraction; logs `analog/<name>_trial` and `_mean` and returns the results
/// fields (`digital_fp32`, `digital_quantized`, `analog` statistics, layer lists).
pub fn analog_trials(
    cfg: &Config,
    net: &Network,
    run: &mut RunDir,
    name: &str,
    mut metric: impl FnMut(&Network) -> Result<f64>,
) -> Result<Value> {
    let fp32 = metric(net)?;
    let dep = crate::quant::deploy::apply_quantization(net, &cfg.quant, &cfg.analog)?;
    let quantized = metric(net)?;
    deploy_analog(net, &cfg.analog);
    let stats = monte_carlo(net, &cfg.analog, cfg.seed, &mut metric)?;
    for t in &stats.trials {
        run.tb.scalar(&format!("analog/{name}_trial"), t.metric, t.trial);
    }
    run.tb.scalar(&format!("analog/{name}_mean"), stats.mean, 0);
    run.tb.scalar(&format!("test/{name}_fp32"), fp32, 0);
    run.tb.scalar(&format!("test/{name}_quantized"), quantized, 0);
    run.tb.flush()?;
    println!(
        "analog {} ({} levels), {} trials: {name} {}; digital quantized {:.2}%, fp32 {:.2}%",
        cfg.quant.method.name(),
        cfg.quant.levels,
        stats.trials.len(),
        stats.spread_text(),
        100.0 * quantized,
        100.0 * fp32
    );
    Ok(json!({
        "metric": name,
        "digital_fp32": fp32,
        "digital_quantized": quantized,
        "analog": stats,
        "quantized_layers": dep.quantized,
        "kept_fp32": dep.kept_fp32,
    }))
}
