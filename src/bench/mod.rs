//! `gqcim bench`: the pipeline's speed against PyTorch eager and IBM aihwkit, as ratios of
//! two things measured in the same run (medians over repeats), written to
//! `benches/results/<machine>-<date>.json` with a printed table.
pub mod peers;
pub mod run;
pub mod tasks;
use crate::config::{
    AnalogConfig, Arch, Converter, Drift, ModelConfig, ProgrammingNoise, QuantConfig, QuantMethod,
    ReadNoise, StuckAt,
};
use crate::error::{invalid, Result};
use crate::nets::{build_classifier, Network};
use crate::sgd::Sgd;
pub use run::bench_command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub device: Device,
    pub threads: i32,
    pub python: PathBuf,
    pub out_dir: PathBuf,
    pub machine: String,
    /// Fewer repeats and smaller sizes (smoke test).
    pub quick: bool,
    pub checkpoint: Option<PathBuf>,
    pub skip_aihwkit: bool,
    /// The peer simulators of section 4 (`peers::default_peers`).
    pub peers: Vec<peers::Peer>,
    /// Sections to run (train, qat, mc, peers, fit, scaling, tasks); None: all.
    pub only: Option<Vec<String>>,
}

/// The sections `--only` accepts, in the order the bench runs them.
pub const SECTIONS: [&str; 7] = ["train", "qat", "mc", "peers", "fit", "scaling", "tasks"];

impl BenchOptions {
    /// Whether section `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|s| s == name))
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub(crate) fn sync(device: Device) {
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
}

/// Times `f` `repeats` times after `warmup` untimed calls; returns all seconds.
pub(crate) fn time_it(
    device: Device,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut(),
) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            sync(device);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

pub(crate) fn resnet(arch: Arch, device: Device) -> Network {
    tch::manual_seed(0);
    build_classifier(&ModelConfig { arch, in_channels: 1, num_classes: 10 }, device)
}

/// Training steps on random data with the network's current weight paths.
pub(crate) fn train_steps(
    net: &Network,
    steps: usize,
    batch: i64,
    device: Device,
) -> impl FnMut() + '_ {
    let params = crate::engine::finetune::parameter_groups(net, 1.0);
    let mut opt = Sgd::with_groups(params, 0.9, true, 5e-4);
    let x = Tensor::randn([batch, 1, 28, 28], (Kind::Float, device));
    let y = Tensor::randint(10, [batch], (Kind::Int64, device));
    move || {
        for _ in 0..steps {
            let loss = net.forward_t(&x, true).cross_entropy_loss::<Tensor>(
                &y,
                None,
                Reduction::Mean,
                -100,
                0.0,
            );
            opt.zero_grad();
            loss.backward();
            opt.step(0.01);
        }
    }
}

/// The per-parameter SGD update gqcim used before its flat buffers (about nine tensor ops per
/// parameter), kept here as the reference for the optimizer-step measurement.
pub(crate) fn per_parameter_sgd_step(params: &[Tensor], bufs: &mut [Option<Tensor>], lr: f64) {
    let (mu, wd) = (0.9, 5e-4);
    tch::no_grad(|| {
        for (p, buf) in params.iter().zip(bufs.iter_mut()) {
            let g = p.grad();
            let d = &g + p * wd;
            let b = match buf.take() {
                None => d.copy(),
                Some(mut b) => {
                    let _ = b.g_mul_scalar_(mu).g_add_(&d);
                    b
                }
            };
            let d = d + &b * mu;
            *buf = Some(b);
            let _ = p.shallow_clone().g_add_(&(d * -lr));
        }
    })
}

/// Seconds per optimizer step on ResNet-20's parameters and gradients: gqcim's flat-buffer
/// SGD and the per-parameter loop (medians over `reps` windows of `steps` updates).
pub(crate) fn optimizer_steps(device: Device, reps: usize, steps: usize) -> (f64, f64, usize) {
    let net = resnet(Arch::Resnet20, device);
    let x = Tensor::randn([8, 1, 28, 28], (Kind::Float, device));
    net.forward_t(&x, true).sum(Kind::Float).backward();
    let params: Vec<Tensor> =
        net.vs.trainable_variables().into_iter().filter(|t| t.grad().defined()).collect();
    let n = params.len();
    let mut bufs: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
    let per_param = median(time_it(device, 1, reps, || {
        for _ in 0..steps {
            per_parameter_sgd_step(&params, &mut bufs, 1e-6);
        }
    })) / steps as f64;
    let named = params.iter().enumerate().map(|(i, p)| (format!("p{i}"), p.shallow_clone()));
    let mut opt = Sgd::new(named.collect(), 0.9, true, 5e-4);
    let flat = median(time_it(device, 1, reps, || {
        for _ in 0..steps {
            opt.step(1e-6);
        }
    })) / steps as f64;
    (flat, per_param, n)
}

/// One pass of eval-mode inference over `images` random 1 x 28 x 28 images.
pub(crate) fn eval_pass(
    net: &Network,
    images: i64,
    batch: i64,
    device: Device,
) -> impl FnMut() + '_ {
    eval_pass_of(net, [images, 1, 28, 28], batch, device)
}

/// One pass of eval-mode inference over random inputs of `shape` ([images, c, h, w]) in
/// batches of `batch`.
pub(crate) fn eval_pass_of(
    net: &Network,
    shape: [i64; 4],
    batch: i64,
    device: Device,
) -> impl FnMut() + '_ {
    let x = Tensor::randn(shape, (Kind::Float, device));
    let images = shape[0];
    move || {
        tch::no_grad(|| {
            let mut i = 0;
            while i < images {
                let b = batch.min(images - i);
                let _ = net.forward_t(&x.narrow(0, i, b), false).sum(Kind::Float).double_value(&[]);
                i += b;
            }
        })
    }
}

/// Median seconds of one Monte-Carlo trial: program every crossbar layer of `net` (a fresh
/// seed per repeat), then run `pass` (the evaluation).
pub(crate) fn trial_seconds(
    net: &Network,
    cfg: &AnalogConfig,
    device: Device,
    reps: usize,
    pass: impl FnMut(),
) -> f64 {
    median(time_it(device, 1, reps, trial_pass(net, cfg, pass)))
}

/// One Monte-Carlo trial as a closure: programs every crossbar layer of `net` with the next
/// seed, then runs `pass` (the evaluation).
pub(crate) fn trial_pass<'a>(
    net: &'a Network,
    cfg: &'a AnalogConfig,
    mut pass: impl FnMut() + 'a,
) -> impl FnMut() + 'a {
    let mut seed = 0u64;
    move || {
        seed += 1;
        let _ = crate::analog::montecarlo::monte_carlo(net, cfg, seed, |_| {
            pass();
            Ok(0.0)
        });
    }
}

/// The fp32 evaluation of `build()`'s network against a Monte-Carlo trial of each device
/// setup (its own copy of the network, on the crossbar at 8 gq levels), over random inputs of
/// `shape` in batches of `batch`, in interleaved rounds (`interleaved_ratios`). Returns the
/// fp32 median seconds and, per setup, the trial's median seconds and throughput ratio.
pub(crate) fn trials_against_fp32(
    build: &dyn Fn() -> Result<Network>,
    setups: &[(&str, AnalogConfig)],
    shape: [i64; 4],
    batch: i64,
    rounds: usize,
    device: Device,
) -> Result<(f64, Vec<(f64, f64)>)> {
    let fp32_net = build()?;
    let mut anets = Vec::new();
    for (_, cfg) in setups {
        let anet = build()?;
        onto_crossbar(&anet, &quant_gq(8, 100), cfg)?;
        anets.push(anet);
    }
    let mut trials: Vec<_> = setups
        .iter()
        .zip(&anets)
        .map(|((_, cfg), anet)| trial_pass(anet, cfg, eval_pass_of(anet, shape, batch, device)))
        .collect();
    let mut others: Vec<&mut dyn FnMut()> =
        trials.iter_mut().map(|t| t as &mut dyn FnMut()).collect();
    let mut fp32 = eval_pass_of(&fp32_net, shape, batch, device);
    Ok(interleaved_ratios(device, rounds, &mut fp32, &mut others))
}

/// Times `base` and every one of `others` in turn, one warm-up round and then `reps`
/// rounds, so that a slow spell of the (shared, virtual) machine falls on all of a round's
/// measurements alike. Returns the median seconds of `base`, and for each of `others` its
/// median seconds and the median over rounds of base / other (the throughput ratio; the
/// per-round pairing keeps the machine's drift out of it, which timing `base` first and
/// the others after it did not: ratios moved by up to 0.2 between runs).
pub(crate) fn interleaved_ratios(
    device: Device,
    reps: usize,
    base: &mut dyn FnMut(),
    others: &mut [&mut dyn FnMut()],
) -> (f64, Vec<(f64, f64)>) {
    let once = |f: &mut dyn FnMut()| {
        sync(device);
        let t = Instant::now();
        f();
        sync(device);
        t.elapsed().as_secs_f64()
    };
    let mut base_s = Vec::new();
    let mut other_s = vec![Vec::new(); others.len()];
    for round in 0..=reps {
        let b = once(base);
        let times: Vec<f64> = others.iter_mut().map(|f| once(&mut **f)).collect();
        if round > 0 {
            base_s.push(b);
            for (all, t) in other_s.iter_mut().zip(times) {
                all.push(t);
            }
        }
    }
    let per_other = other_s
        .into_iter()
        .map(|ts| {
            let ratios = base_s.iter().zip(&ts).map(|(b, t)| b / t).collect();
            (median(ts), median(ratios))
        })
        .collect();
    (median(base_s), per_other)
}

/// Puts `net` on the crossbar of `cfg` with the quantizer `q` (its targets).
pub(crate) fn onto_crossbar(net: &Network, q: &QuantConfig, cfg: &AnalogConfig) -> Result<()> {
    crate::quant::deploy::apply_quantization(net, q, cfg)?;
    crate::deploy::deploy_analog(net, cfg);
    Ok(())
}

pub(crate) fn run_python(python: &Path, script: &Path, args: &[String]) -> Result<Value> {
    // The peers run under gqcim's heap policy (src/memory.rs): same work, same allocator.
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .env("GLIBC_TUNABLES", crate::memory::GLIBC_TUNABLES)
        .output()
        .map_err(|e| {
            invalid("bench", format!("cannot run {} {}: {e}", python.display(), script.display()))
        })?;
    if !out.status.success() {
        return Err(invalid(
            "bench",
            format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            ),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| invalid("bench", format!("{} printed no JSON: {e}", script.display())))
}

/// The weights-only device model of the benchmark (programming noise, faults, drift + GDC).
pub fn weights_only_device() -> AnalogConfig {
    AnalogConfig {
        enabled: true,
        programming_noise: ProgrammingNoise::Gaussian { sigma: 0.02 },
        stuck_at: StuckAt { at_gmin: 0.01, at_gmax: 0.0 },
        drift: Drift::PowerLaw {
            nu_mean: 0.05,
            nu_std: 0.02,
            t0: 1.0,
            t: 86_400.0,
            compensation: true,
        },
        trials: 1,
        ..Default::default()
    }
}

/// Adds read noise, 8-bit DAC, 8-bit per-tile ADC (bound 12) on 256-row tiles.
pub fn periphery_device() -> AnalogConfig {
    AnalogConfig {
        read_noise: ReadNoise::Gaussian { sigma: 0.01 },
        dac: Converter::Uniform { bits: 8, range: 1.0 },
        adc: Converter::Uniform { bits: 8, range: 12.0 },
        tile_rows: 256,
        ..weights_only_device()
    }
}

pub(crate) fn quant_gq(levels: usize, refit_every: usize) -> QuantConfig {
    QuantConfig {
        method: QuantMethod::Gq,
        levels,
        refit_every,
        report_exact_gap: false,
        ..Default::default()
    }
}
