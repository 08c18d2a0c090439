//! The `gqcim` command line.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gqcim::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gqcim",
    version,
    about = "Generalized quantization for analog CIM vision networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// YAML experiment config.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: --set train.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Run folder (default: <out_dir>/<task>/<config>-<command>-<time>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

/// Shortcuts for `--set quant.method=...` and `--set quant.levels=...`.
#[derive(clap::Args)]
struct QuantArgs {
    /// gq | gq-exact | uniform-minmax | uniform-mse | lsq | fp32
    #[arg(long)]
    method: Option<String>,
    /// Number of quanta per layer (2..=256).
    #[arg(long)]
    levels: Option<usize>,
}

impl QuantArgs {
    fn into_overrides(self, args: &mut ConfigArgs) {
        if let Some(m) = self.method {
            args.overrides.push(format!("quant.method={m}"));
        }
        if let Some(n) = self.levels {
            args.overrides.push(format!("quant.levels={n}"));
        }
    }
}

/// Shortcuts for `--set analog.enabled=true` and `--set analog.trials=...` (detect-eval,
/// segment-eval).
#[derive(clap::Args)]
struct AnalogArgs {
    /// Evaluate on the simulated crossbar (sets analog.enabled).
    #[arg(long)]
    analog: bool,
    /// Monte-Carlo trials (sets analog.trials).
    #[arg(long)]
    trials: Option<usize>,
}

impl AnalogArgs {
    fn into_overrides(self, args: &mut ConfigArgs) {
        if self.analog {
            args.overrides.push("analog.enabled=true".into());
        }
        if let Some(t) = self.trials {
            args.overrides.push(format!("analog.trials={t}"));
        }
    }
}

/// How a comparison grid runs (`compare`, `detect-compare`, `segment-compare`).
#[derive(clap::Args)]
struct GridArgs {
    /// Only write the grid's plan.json (units for `compare-cell`, then `merge`).
    #[arg(long)]
    plan: bool,
    /// Processes that run units at once on this machine (set `threads` so that workers x
    /// threads fits the cores); results do not depend on it.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

impl From<GridArgs> for gqcim::grid::GridRun {
    fn from(g: GridArgs) -> Self {
        gqcim::grid::GridRun { plan_only: g.plan, workers: g.workers }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a network from scratch (or --resume a run folder); the task (classify, detect,
    /// segment) is the config's `task` key.
    Train {
        #[command(flatten)]
        args: ConfigArgs,
        /// Continue from <run-dir>/checkpoints/last.*.
        #[arg(long)]
        resume: bool,
    },
    /// Post-training quantization of a checkpoint, then evaluation.
    Quantize {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Straight-through quantization-aware fine-tuning of a checkpoint, then evaluation.
    Finetune {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// The comparison grid: fp32 vs quantizers x levels x fine-tuning x programming noise,
    /// with Monte-Carlo trials on the crossbar.
    Compare {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Run units of a planned grid (`compare --plan`): index I, or I..I+count; a unit whose
    /// result exists returns at once. One Slurm array task per unit.
    CompareCell {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        index: usize,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Merge a planned grid's cells into results.csv/json, table.md and plots; with missing
    /// cells, exit nonzero and print their indices as `sbatch --array=` takes them.
    Merge {
        #[arg(long)]
        run_dir: PathBuf,
        /// Only print the missing unit indices (empty when complete) and exit 0.
        #[arg(long)]
        list_missing: bool,
    },
    /// Redraw a finished grid's charts from its results.csv and print its table.
    Plot {
        /// results.csv of a comparison run.
        #[arg(long)]
        results: PathBuf,
        /// The grid's task (its metric): classify, detect or segment.
        #[arg(long)]
        task: String,
        /// Folder for the PNGs (default: the CSV's folder).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// File name prefix, e.g. `detect_`.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Train the YOLO-style detector on Fashion-MNIST scenes.
    #[command(hide = true)]
    DetectTrain {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a detection checkpoint (VOC mAP@0.5, COCO mAP@[.5:.95]; `--analog`:
    /// Monte-Carlo on the crossbar).
    #[command(hide = true)]
    DetectEval {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        analog: AnalogArgs,
    },
    /// Post-training quantization of a detector (`quant` section or --method/--levels), then
    /// mAP on the whole test set before and after.
    #[command(hide = true)]
    DetectQuantize {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Straight-through quantization-aware fine-tuning of a detector, then mAP.
    #[command(hide = true)]
    DetectFinetune {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Post-training quantization of a segmenter, then mIoU before and after.
    #[command(hide = true)]
    SegmentQuantize {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Straight-through quantization-aware fine-tuning of a segmenter, then mIoU.
    #[command(hide = true)]
    SegmentFinetune {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// The comparison grid of the config's `compare` section on a trained detector.
    #[command(hide = true)]
    DetectCompare {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Write a detection dataset's split (VOC, YOLO or COCO layout) as COCO instances JSON in
    /// the images' own pixels, for `metrics detection --gt`.
    DetectGt {
        #[command(flatten)]
        args: ConfigArgs,
        /// The split (default: data.test_split).
        #[arg(long)]
        split: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Score predictions against ground truth: `detection` (COCO JSON files) or
    /// `segmentation` (folders of masks with the same names; needs --num-classes).
    Metrics {
        /// `detection` or `segmentation`.
        kind: String,
        /// Ground truth: COCO JSON (detection) or a mask folder (segmentation).
        #[arg(long, required_unless_present = "gt_config")]
        gt: Option<PathBuf>,
        /// Detection: the ground truth of a dataset in its own layout (VOC, YOLO, COCO), named
        /// by a detection config's `data` section, instead of `--gt`.
        #[arg(long, conflicts_with = "gt")]
        gt_config: Option<PathBuf>,
        /// With --gt-config: the split (default: the config's test split).
        #[arg(long, requires = "gt_config")]
        split: Option<String>,
        #[arg(long)]
        pred: PathBuf,
        /// Segmentation: number of classes, background included.
        #[arg(long)]
        num_classes: Option<usize>,
    },
    /// Train the DeepLab-style segmenter on Fashion-MNIST scene masks.
    #[command(hide = true)]
    SegmentTrain {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a segmentation checkpoint (mIoU, pixel accuracy, per-class IoU; `--analog`:
    /// Monte-Carlo on the crossbar).
    #[command(hide = true)]
    SegmentEval {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        analog: AnalogArgs,
    },
    /// The comparison grid of the config's `compare` section on a trained segmenter.
    #[command(hide = true)]
    SegmentCompare {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Per-layer sensitivity to programming noise: one layer at a time on the crossbar.
    Sensitivity {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
        /// Programming noise, relative to the conductance window.
        #[arg(long, default_value_t = 0.05)]
        sigma: f64,
        /// Monte-Carlo trials per layer (sets analog.trials).
        #[arg(long)]
        trials: Option<usize>,
        /// The task, when the config has no `task` key: classify, detect or segment.
        #[arg(long, hide = true)]
        task: Option<String>,
    },
    /// Write each layer's level table and conductance tiles (safetensors + JSON index).
    Export {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The task, when the config has no `task` key: classify, detect or segment.
        #[arg(long, hide = true)]
        task: Option<String>,
    },
    /// Benchmarks against PyTorch eager and aihwkit (ratios measured in one run).
    Bench {
        /// cpu or cuda.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// libtorch threads (0 = libtorch's default); the Python peers get the same number.
        #[arg(long, default_value_t = 0)]
        threads: i32,
        /// Python with torch (and aihwkit, scikit-learn for the CPU peers).
        #[arg(long, env = "GQCIM_PYTHON", default_value = "python3")]
        python: PathBuf,
        #[arg(long, default_value = "benches/results")]
        out: PathBuf,
        /// Name of the machine in the results file (default: cpu<cores> or the GPU name).
        #[arg(long)]
        machine: Option<String>,
        /// Checkpoint for the aihwkit accuracy sanity check.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Small sizes and few repeats (a smoke test).
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        skip_aihwkit: bool,
    },
    /// Fit a device preset (sigma(g), drift nu(g), 1/f read noise) to measurements.
    FitDevice {
        /// CSV with columns g_target, g (µS), t (s after programming) and optionally device.
        #[arg(long)]
        csv: PathBuf,
        /// The preset YAML to write (use with `analog: {preset_file: ...}`).
        #[arg(long)]
        out: PathBuf,
        /// PNG of data vs fit (sigma(g); drift in `<stem>_drift.png`).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Degree of the programming-noise polynomial sigma(g).
        #[arg(long, default_value_t = 2)]
        degree: usize,
        /// Fit programming noise only (one read time, no device ids needed).
        #[arg(long)]
        no_drift: bool,
        /// g_max of the window in µS (default: the largest target).
        #[arg(long)]
        g_max: Option<f64>,
    },
    /// Evaluate a checkpoint on the test split (`--analog`: Monte-Carlo on the crossbar).
    Eval {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        /// Evaluate on the simulated crossbar (sets analog.enabled).
        #[arg(long)]
        analog: bool,
        /// Monte-Carlo trials (sets analog.trials).
        #[arg(long)]
        trials: Option<usize>,
    },
}

/// `--resume` must be able to find the run folder.
fn check_resume(resume: bool, args: &ConfigArgs, run_name: &Option<String>) -> Result<()> {
    if resume && args.run_dir.is_none() && run_name.is_none() {
        anyhow::bail!("--resume needs --run-dir (or run_name in the config) to find the run");
    }
    Ok(())
}

fn load_config(args: &ConfigArgs) -> Result<Config> {
    Config::load(&args.config, &args.overrides).context("reading a classification config")
}

fn load_detect(args: &ConfigArgs) -> Result<gqcim::tasks::detect::DetectConfig> {
    gqcim::tasks::detect::DetectConfig::load(&args.config, &args.overrides)
        .context("reading a detection config (`task: detect`)")
}

fn load_segment(args: &ConfigArgs) -> Result<gqcim::tasks::segment::SegmentConfig> {
    gqcim::tasks::segment::SegmentConfig::load(&args.config, &args.overrides)
        .context("reading a segmentation config (`task: segment`)")
}

/// A fresh file name in the system's temporary folder (process id and time keep concurrent
/// runs apart).
fn tempfile_path(stem: &str, ext: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("{stem}-{}-{nanos}.{ext}", std::process::id()))
}

/// The task of a config: its `task` key (`--set task=...` wins), classify without one.
fn task_of(args: &ConfigArgs) -> Result<String> {
    Ok(gqcim::tasks::task_of_config(&args.config, &args.overrides)?.to_string())
}

/// `train` (and the hidden `detect-train`, `segment-train`).
fn train(task: &str, args: ConfigArgs, resume: bool) -> Result<()> {
    let run_dir = args.run_dir.as_deref();
    match task {
        "detect" => {
            let cfg = load_detect(&args)?;
            check_resume(resume, &args, &cfg.run_name)?;
            gqcim::tasks::detect::train(&cfg, &args.config, run_dir, resume)
        }
        "segment" => {
            let cfg = load_segment(&args)?;
            check_resume(resume, &args, &cfg.run_name)?;
            gqcim::tasks::segment::train(&cfg, &args.config, run_dir, resume)
        }
        _ => {
            let cfg = load_config(&args)?;
            check_resume(resume, &args, &cfg.run_name)?;
            gqcim::tasks::classify::train(&cfg, &args.config, run_dir, resume)
        }
    }
    .with_context(|| format!("{task} training failed"))?;
    Ok(())
}

/// `eval` (and the hidden `detect-eval`, `segment-eval`); `--analog` is an override.
fn eval(task: &str, args: ConfigArgs, checkpoint: &Path) -> Result<()> {
    let run_dir = args.run_dir.as_deref();
    match task {
        "detect" => {
            let cfg = load_detect(&args)?;
            gqcim::tasks::detect::eval(&cfg, &args.config, checkpoint, run_dir)
        }
        "segment" => {
            let cfg = load_segment(&args)?;
            gqcim::tasks::segment::eval(&cfg, &args.config, checkpoint, run_dir)
        }
        _ => gqcim::tasks::classify::eval(&load_config(&args)?, &args.config, checkpoint, run_dir),
    }
    .with_context(|| format!("{task} evaluation failed"))?;
    Ok(())
}

/// `quantize` / `finetune` (and the hidden task-prefixed verbs): classification through its
/// own command, detection and segmentation through engine::quantize.
fn quantize(
    task: &str,
    mut args: ConfigArgs,
    checkpoint: &Path,
    quant: QuantArgs,
    finetune: bool,
) -> Result<()> {
    quant.into_overrides(&mut args);
    let run_dir = args.run_dir.as_deref();
    let what = if finetune { "fine-tuning" } else { "quantization" };
    match task {
        "detect" => {
            let cfg = load_detect(&args)?;
            gqcim::tasks::detect::quantize(&cfg, &args.config, checkpoint, run_dir, finetune)
        }
        "segment" => {
            let cfg = load_segment(&args)?;
            gqcim::tasks::segment::quantize(&cfg, &args.config, checkpoint, run_dir, finetune)
        }
        _ => {
            let cfg = load_config(&args)?;
            gqcim::tasks::classify::quantize::quantize_command(
                &cfg,
                &args.config,
                checkpoint,
                run_dir,
                finetune,
            )
        }
    }
    .with_context(|| format!("{task} {what} failed"))?;
    Ok(())
}

/// `compare` (and the hidden `detect-compare`, `segment-compare`): the grid of any task.
fn compare(task: &str, args: ConfigArgs, checkpoint: &Path, grid: GridArgs) -> Result<()> {
    let (s, _) = gqcim::tasks::task_setup(task, &args.config, &args.overrides)?;
    let paths = (args.config.as_path(), checkpoint, args.run_dir.as_deref());
    gqcim::grid::compare_command(&s.cfg, s.harness.as_ref(), s.device, paths, grid.into())
        .with_context(|| format!("{task} comparison failed"))?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { args, resume } => train(&task_of(&args)?, args, resume)?,
        Command::Quantize { args, checkpoint, quant } => {
            quantize(&task_of(&args)?, args, &checkpoint, quant, false)?
        }
        Command::Finetune { args, checkpoint, quant } => {
            quantize(&task_of(&args)?, args, &checkpoint, quant, true)?
        }
        Command::Bench {
            device,
            threads,
            python,
            out,
            machine,
            checkpoint,
            quick,
            skip_aihwkit,
        } => {
            let device = match device.as_str() {
                "cpu" => tch::Device::Cpu,
                "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
                other => {
                    anyhow::bail!("--device {other}: expected cpu, or cuda on a machine with a GPU")
                }
            };
            let machine = machine.unwrap_or_else(|| {
                if device.is_cuda() {
                    "gpu".to_string()
                } else {
                    format!(
                        "cpu{}",
                        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
                    )
                }
            });
            let opts = gqcim::bench::BenchOptions {
                device,
                threads,
                python,
                out_dir: out,
                machine,
                quick,
                checkpoint,
                skip_aihwkit,
            };
            gqcim::bench::bench_command(&opts).context("benchmark failed")?;
        }
        Command::Sensitivity { mut args, checkpoint, quant, sigma, trials, task } => {
            quant.into_overrides(&mut args);
            if let Some(t) = trials {
                args.overrides.push(format!("analog.trials={t}"));
            }
            if !(sigma > 0.0 && sigma <= 10.0) {
                anyhow::bail!("--sigma: expected a value in (0, 10], got {sigma}");
            }
            let task = match task {
                Some(t) => t,
                None => task_of(&args)?,
            };
            let (s, _) = gqcim::tasks::task_setup(&task, &args.config, &args.overrides)?;
            gqcim::grid::sensitivity::sensitivity_command(
                &s.cfg,
                s.harness.as_ref(),
                s.device,
                &checkpoint,
                sigma,
                (&args.config, args.run_dir.as_deref()),
            )
            .context("sensitivity study failed")?;
        }
        Command::DetectTrain { args, resume } => train("detect", args, resume)?,
        Command::DetectEval { mut args, checkpoint, analog } => {
            analog.into_overrides(&mut args);
            eval("detect", args, &checkpoint)?
        }
        Command::DetectQuantize { args, checkpoint, quant } => {
            quantize("detect", args, &checkpoint, quant, false)?
        }
        Command::DetectFinetune { args, checkpoint, quant } => {
            quantize("detect", args, &checkpoint, quant, true)?
        }
        Command::SegmentQuantize { args, checkpoint, quant } => {
            quantize("segment", args, &checkpoint, quant, false)?
        }
        Command::SegmentFinetune { args, checkpoint, quant } => {
            quantize("segment", args, &checkpoint, quant, true)?
        }
        Command::DetectCompare { args, checkpoint, grid } => {
            compare("detect", args, &checkpoint, grid)?
        }
        Command::SegmentCompare { args, checkpoint, grid } => {
            compare("segment", args, &checkpoint, grid)?
        }
        Command::DetectGt { args, split, out } => {
            let cfg = load_detect(&args)?;
            let n = gqcim::tasks::detect::own::write_ground_truth(&cfg, split.as_deref(), &out)?;
            println!("wrote {n} boxes to {}", out.display());
        }
        Command::Metrics { kind, gt, gt_config, split, pred, num_classes } => {
            let v = match (kind.as_str(), num_classes, gt) {
                ("detection", _, Some(gt)) => {
                    gqcim::tasks::detect::metrics::score_coco_files(&gt, &pred)?
                }
                ("detection", _, None) => {
                    // The dataset's own annotations, converted as detect-gt converts them.
                    let path = gt_config.unwrap_or_default();
                    let cfg = gqcim::tasks::detect::DetectConfig::load(&path, &[])?;
                    let tmp = tempfile_path("gqcim-gt", "json");
                    gqcim::tasks::detect::own::write_ground_truth(&cfg, split.as_deref(), &tmp)?;
                    let scored = gqcim::tasks::detect::metrics::score_coco_files(&tmp, &pred);
                    let _ = std::fs::remove_file(&tmp);
                    scored?
                }
                ("segmentation", _, None) => {
                    anyhow::bail!(
                        "metrics segmentation: --gt DIR (the ground-truth masks) is required"
                    )
                }
                ("segmentation", Some(k), Some(gt)) if (1..=255).contains(&k) => {
                    gqcim::tasks::segment::score::score_mask_dirs(&gt, &pred, k)?
                }
                ("segmentation", _, _) => {
                    anyhow::bail!("metrics segmentation: --num-classes K (1..=255) is required")
                }
                _ => anyhow::bail!("metrics `{kind}`: expected `detection` or `segmentation`"),
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::SegmentTrain { args, resume } => train("segment", args, resume)?,
        Command::SegmentEval { mut args, checkpoint, analog } => {
            analog.into_overrides(&mut args);
            eval("segment", args, &checkpoint)?
        }
        Command::Compare { args, checkpoint, grid } => {
            compare(&task_of(&args)?, args, &checkpoint, grid)?
        }
        Command::CompareCell { run_dir, index, count } => {
            gqcim::sweep::cell::cell_command(&run_dir, index, count).context("grid cell failed")?;
        }
        Command::Merge { run_dir, list_missing } => {
            if list_missing {
                let plan = gqcim::sweep::Plan::read(&run_dir)?;
                let missing = gqcim::sweep::missing_units(&run_dir, &plan)?;
                println!("{}", gqcim::sweep::array_spec(&missing));
            } else {
                let mut run = gqcim::run::RunDir::open(&run_dir)?;
                gqcim::sweep::merge_run(&mut run, serde_json::json!({}))?;
                let table = std::fs::read_to_string(run_dir.join("table.txt")).unwrap_or_default();
                println!("{table}\nmerged into {}", run_dir.display());
            }
        }
        Command::Plot { results, task, out_dir, prefix } => {
            let dir = out_dir.unwrap_or_else(|| {
                results.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| ".".into())
            });
            let (charts, table) = gqcim::glance::grid::replot(&results, &task, &dir, &prefix)
                .context("plot failed")?;
            println!("{table}");
            for p in charts {
                println!("wrote {}", p.display());
            }
        }
        Command::Export { mut args, checkpoint, quant, out, task } => {
            quant.into_overrides(&mut args);
            let task = match task {
                Some(t) => t,
                None => task_of(&args)?,
            };
            if task == "classify" {
                let cfg = load_config(&args)?;
                gqcim::tasks::classify::quantize::export_command(&cfg, &checkpoint, &out)
                    .context("export failed")?;
            } else {
                let (s, _) = gqcim::tasks::task_setup(&task, &args.config, &args.overrides)?;
                let net = s.harness.load_network(&s.cfg, &checkpoint, s.device)?;
                gqcim::engine::quantize::export_network(&s.cfg, net, &out)
                    .context("export failed")?;
            }
        }
        Command::FitDevice { csv, out, plot, degree, no_drift, g_max } => {
            let opts = gqcim::device::fit::FitOptions { degree, drift: !no_drift, g_max };
            gqcim::device::fit::fit_device_command(&csv, &out, plot.as_deref(), &opts)
                .context("fit-device failed")?;
        }
        Command::Eval { mut args, checkpoint, analog, trials } => {
            AnalogArgs { analog, trials }.into_overrides(&mut args);
            eval(&task_of(&args)?, args, &checkpoint)?
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
