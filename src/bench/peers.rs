//! Section 4 of the bench: gqcim's Monte-Carlo trial against the other simulators on the
//! same network, weights and non-idealities, with the accuracy each side reaches (so that
//! equal work is visible next to the speed).
use super::{
    eval_pass, onto_crossbar, periphery_device, resnet, run_python, trial_seconds,
    weights_only_device, BenchOptions,
};
use crate::analog::montecarlo::monte_carlo;
use crate::config::{AnalogConfig, Arch, QuantConfig, QuantMethod};
use crate::data::{load_split, Normalizer};
use crate::error::Result;
use crate::nets::Network;
use serde_json::{json, Value};
use std::path::PathBuf;
use tch::{Device, Kind};

/// One peer simulator: which Python runs which script with which extra arguments, and
/// which of the two device configurations it can express.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub python: PathBuf,
    pub script: &'static str,
    pub args: Vec<String>,
    pub configs: Vec<&'static str>,
}

/// The peers of a bench run: aihwkit in the project venv (C++ and torch tiles), and
/// aihwkit 1.2.0 and aihwkit-lightning where their venvs were given (`make bench` builds
/// them; their torch pins differ from the project's).
pub fn default_peers(
    python: &std::path::Path,
    aihwkit12: Option<PathBuf>,
    lightning: Option<PathBuf>,
) -> Vec<Peer> {
    let aihwkit = |name: &str, py: PathBuf, simulator: &str, configs: Vec<&'static str>| Peer {
        name: name.to_string(),
        python: py,
        script: "aihwkit_bench.py",
        args: vec!["--simulator".into(), simulator.into()],
        configs,
    };
    let mut peers = vec![
        aihwkit(
            "aihwkit 1.1.0 (C++ tiles)",
            python.to_path_buf(),
            "rpucuda",
            vec!["weights", "periphery"],
        ),
        // Torch tiles cannot draw aihwkit's w_noise, so they get no periphery row.
        aihwkit("aihwkit 1.1.0 (torch tiles)", python.to_path_buf(), "torch", vec!["weights"]),
    ];
    if let Some(py) = aihwkit12 {
        peers.push(aihwkit(
            "aihwkit 1.2.0 (C++ tiles)",
            py.clone(),
            "rpucuda",
            vec!["weights", "periphery"],
        ));
        peers.push(aihwkit("aihwkit 1.2.0 (torch tiles)", py, "torch", vec!["weights"]));
    }
    if let Some(py) = lightning {
        // Lightning's DAC uses a static input range, not the per-sample abs-max: weights only.
        peers.push(Peer {
            name: "aihwkit-lightning 2.1.0".into(),
            python: py,
            script: "lightning_bench.py",
            args: vec![],
            configs: vec!["weights"],
        });
    }
    peers
}

/// Puts `net` on the crossbar of `cfg` with its own fp32 weights as the targets (the peers
/// programme the same weights).
fn onto_crossbar_unquantized(net: &Network, cfg: &AnalogConfig) -> Result<()> {
    onto_crossbar(net, &QuantConfig { method: QuantMethod::Fp32, ..Default::default() }, cfg)
}

/// gqcim's side of one configuration: a timer of its trial (programming + inference over
/// `images` random images; each call returns images/s, the median of `reps` trials), and,
/// with a checkpoint, the mean accuracy over `reps` trials on the first `eval_images` test
/// images.
struct GqcimSide {
    net: Network,
    cfg: AnalogConfig,
    images: i64,
    reps: usize,
    device: Device,
}

impl GqcimSide {
    fn new(o: &BenchOptions, cfg: &AnalogConfig, images: i64, reps: usize) -> Result<GqcimSide> {
        let net = resnet(Arch::Resnet20, o.device);
        onto_crossbar_unquantized(&net, cfg)?;
        Ok(GqcimSide { net, cfg: cfg.clone(), images, reps, device: o.device })
    }

    fn images_per_s(&self) -> f64 {
        let (net, dev, n) = (&self.net, self.device, self.images);
        let t = trial_seconds(net, &self.cfg, dev, self.reps, eval_pass(net, n, n, dev));
        n as f64 / t
    }

    fn accuracy(&self, o: &BenchOptions, eval_images: i64) -> Result<Option<f64>> {
        let Some(ckpt) = &o.checkpoint else { return Ok(None) };
        let dev = self.device;
        let mut net = resnet(Arch::Resnet20, dev);
        crate::checkpoint::load_strict(&mut net.vs, ckpt)?;
        onto_crossbar_unquantized(&net, &self.cfg)?;
        let data_cfg = crate::config::DataConfig::default();
        let test = load_split(&data_cfg, false)?.limit(eval_images as usize);
        let x =
            Normalizer::new(&data_cfg, dev).normalize(&Normalizer::to_unit(&test.images.to(dev)));
        let y = test.labels.to(dev);
        let trials = AnalogConfig { trials: self.reps, ..self.cfg.clone() };
        let stats = monte_carlo(&net, &trials, 0, |n| {
            let pred = tch::no_grad(|| n.forward_t(&x, false)).argmax(1, false);
            Ok(pred.eq_tensor(&y).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]))
        })?;
        Ok(Some(stats.mean))
    }
}

/// Runs every peer on both configurations; returns the JSON section and the table rows.
pub fn peers_section(
    o: &BenchOptions,
    threads: i32,
    table: &mut Vec<(String, String, String)>,
) -> Result<Value> {
    if o.device != Device::Cpu {
        return Ok(json!("skipped: the peers run on CPU"));
    }
    let benches = crate::run::repo_dir().join("benches");
    // aihwkit runs at about a tenth of plain PyTorch's speed here: fewer images per trial
    // (300 since the suite had to fit 15 minutes on the slow AVX2 VM; 500 before).
    let images: i64 = if o.quick { 200 } else { 300 };
    let reps = if o.quick { 1 } else { 3 };
    let eval_images = 300;
    let mut section = json!({"images": images, "batch": images, "trials": reps,
        "eval_images": eval_images, "weights": "fp32 targets (the checkpoint's own weights)"});
    for (config, cfg) in [("weights", weights_only_device()), ("periphery", periphery_device())] {
        let ours = GqcimSide::new(o, &cfg, images, reps)?;
        let ours_ips = ours.images_per_s();
        let ours_acc = ours.accuracy(o, eval_images)?;
        section[config] =
            json!({"gqcim_images_per_s": ours_ips, "gqcim_accuracy_mean": ours_acc, "peers": {}});
        let acc = |a: Option<f64>| a.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or("-".into());
        table.push((
            format!("4 gqcim trial ({config}), accuracy on {eval_images} images"),
            format!("{ours_ips:.0} images/s, {}", acc(ours_acc)),
            "report".into(),
        ));
        for peer in o.peers.iter().filter(|p| p.configs.contains(&config)) {
            let mut args: Vec<String> = vec![
                "--config".into(),
                config.into(),
                "--images".into(),
                images.to_string(),
                "--batch".into(),
                images.to_string(),
                "--repeats".into(),
                reps.to_string(),
                "--threads".into(),
                threads.to_string(),
            ];
            args.extend(peer.args.iter().cloned());
            if let Some(c) = &o.checkpoint {
                args.extend([
                    "--checkpoint".to_string(),
                    c.display().to_string(),
                    "--eval-images".into(),
                    eval_images.to_string(),
                ]);
            }
            eprintln!("      {} ({config})", peer.name);
            // gqcim's trial timed just before and just after the peer's run, and the ratio
            // taken against their mean: the peers run minutes apart, and on a shared VM
            // gqcim's own speed moved by 12% between two runs of the suite an hour apart
            // while the peers' moved by up to 40% the other way (one timing per section
            // put the same peer at 4.3x in one run and 3.2x in the next).
            let before = ours.images_per_s();
            let theirs = match run_python(&peer.python, &benches.join(peer.script), &args) {
                Ok(v) => v,
                Err(e) => {
                    section[config]["peers"][&peer.name] = json!({"error": e.to_string()});
                    continue;
                }
            };
            let after = ours.images_per_s();
            let ours_here = 0.5 * (before + after);
            // Like for like: images / (programming + drift + inference) per trial on both sides.
            let their_ips = theirs["median_trial_images_per_s"].as_f64().unwrap_or(f64::NAN);
            let ratio = ours_here / their_ips;
            let their_acc = theirs["accuracy_mean"].as_f64();
            table.push((
                format!("4 analog trial ({config}) vs {}", peer.name),
                format!("{ratio:.1}x faster; accuracy {} vs {}", acc(ours_acc), acc(their_acc)),
                ">= 5x".into(),
            ));
            section[config]["peers"][&peer.name] = json!({"ratio_gqcim_vs_peer": ratio,
                "gqcim_images_per_s_before_after": [before, after],
                "peer": theirs, "python": peer.python});
        }
    }
    Ok(section)
}
