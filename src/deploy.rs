//! The one installer of weight paths: every change of what a network's layers compute with
//! goes through here — quantizers (`quantize`, from `quant::deploy`), quantizers with
//! training-time device noise (`with_train_noise`, noise-aware fine-tuning), and the
//! programmed crossbar (`onto_crossbar`). Each honours `quant.keep_fp32` the same way: a
//! kept layer stays digital fp32 (no quantizer, no noise) and, on the crossbar, is programmed
//! with its fp32 weight as continuous conductances.
use crate::analog::path::{AnalogPath, NoisyTrainPath};
use crate::config::{AnalogConfig, Config};
use crate::error::Result;
use crate::nets::layers::Identity;
use crate::nets::Network;
pub use crate::quant::deploy::{apply_quantization as quantize, fold_batchnorm, QuantDeployment};
use crate::quant::deploy::{check_layer_names, make_path};
use tch::Tensor;

/// Wraps every quantizing path with training-time device noise (`cfg.train_noise` on the
/// `analog` window); layers in `quant.keep_fp32` stay digital fp32.
pub fn with_train_noise(net: &Network, cfg: &Config) -> Result<QuantDeployment> {
    check_layer_names(net, "quant.keep_fp32", &cfg.quant.keep_fp32)?;
    let mut dep = QuantDeployment::default();
    for l in net.layers.layers() {
        if cfg.quant.keep_fp32.contains(&l.spec.name) {
            l.set_path(Box::new(Identity));
            dep.kept_fp32.push(l.spec.name.clone());
            continue;
        }
        dep.quantized.push(l.spec.name.clone());
        let inner = tch::no_grad(|| make_path(&l.spec, &cfg.quant, &cfg.analog, &dep.clock))?;
        l.set_path(Box::new(NoisyTrainPath {
            inner,
            noise: cfg.train_noise.clone(),
            g_min: cfg.analog.g_min,
            g_max: cfg.analog.g_max,
            per_column: cfg.analog.per_column_scale,
        }));
    }
    Ok(dep)
}

/// What each layer computes with now (its crossbar target) and where that came from
/// (`gq N=8`, `fp32`, ...): taken once, before the layers go onto the crossbar.
pub fn crossbar_targets(net: &Network) -> Vec<(Tensor, String)> {
    net.layers.layers().iter().map(|l| (l.effective_weight(), l.describe())).collect()
}

/// Puts every layer on the crossbar, programmed towards `targets` (`crossbar_targets`);
/// `verify_masks` picks the weights that write-verify programs (one mask per layer).
pub fn onto_crossbar(
    net: &Network,
    targets: &[(Tensor, String)],
    cfg: &AnalogConfig,
    verify_masks: Option<&[Tensor]>,
) {
    for (i, (l, (t, src))) in net.layers.layers().iter().zip(targets).enumerate() {
        let mut path = AnalogPath::new(t.shallow_clone(), src.clone(), cfg);
        path.verify_mask = verify_masks.map(|m| m[i].shallow_clone());
        l.set_path(Box::new(path));
    }
}

/// Replaces every layer's path by a crossbar path whose target is the weight that layer
/// currently computes with (quantized, or fp32 for unquantized layers).
pub fn deploy_analog(net: &Network, cfg: &AnalogConfig) {
    onto_crossbar(net, &crossbar_targets(net), cfg, None);
}
