//! The command line's shape: the verbs, their arguments and the shortcuts that become
//! `--set` overrides (clap derive). `main.rs` dispatches them.
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gqcim",
    version,
    about = "Generalized quantization for analog CIM vision networks"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(clap::Args)]
pub(crate) struct ConfigArgs {
    /// YAML experiment config.
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Override a config value: --set train.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub(crate) overrides: Vec<String>,
    /// Run folder (default: <out_dir>/<task>/<config>-<command>-<time>).
    #[arg(long)]
    pub(crate) run_dir: Option<PathBuf>,
}

/// Shortcuts for `--set quant.method=...` and `--set quant.levels=...`.
#[derive(clap::Args)]
pub(crate) struct QuantArgs {
    /// gq | gq-exact | uniform-minmax | uniform-mse | lsq | fp32
    #[arg(long)]
    pub(crate) method: Option<String>,
    /// Number of quanta per layer (2..=256).
    #[arg(long)]
    pub(crate) levels: Option<usize>,
}

impl QuantArgs {
    pub(crate) fn into_overrides(self, args: &mut ConfigArgs) {
        if let Some(m) = self.method {
            args.overrides.push(format!("quant.method={m}"));
        }
        if let Some(n) = self.levels {
            args.overrides.push(format!("quant.levels={n}"));
        }
    }
}

/// Shortcuts for `--set analog.enabled=true` and `--set analog.trials=...` (`eval`).
#[derive(clap::Args)]
pub(crate) struct AnalogArgs {
    /// Evaluate on the simulated crossbar (sets analog.enabled).
    #[arg(long)]
    pub(crate) analog: bool,
    /// Monte-Carlo trials (sets analog.trials).
    #[arg(long)]
    pub(crate) trials: Option<usize>,
}

impl AnalogArgs {
    pub(crate) fn into_overrides(self, args: &mut ConfigArgs) {
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
pub(crate) struct GridArgs {
    /// Only write the grid's plan.json (units for `compare-cell`, then `merge`).
    #[arg(long)]
    pub(crate) plan: bool,
    /// Processes that run units at once on this machine (set `threads` so that workers x
    /// threads fits the cores); results do not depend on it.
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
}

impl From<GridArgs> for gqcim::grid::GridRun {
    fn from(g: GridArgs) -> Self {
        gqcim::grid::GridRun { plan_only: g.plan, workers: g.workers }
    }
}

/// `train`: a config, and whether to resume.
#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) args: ConfigArgs,
    /// Continue from <run-dir>/checkpoints/last.*.
    #[arg(long)]
    pub(crate) resume: bool,
}

/// `eval`: a config, a checkpoint, and the crossbar shortcuts.
#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) args: ConfigArgs,
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[command(flatten)]
    pub(crate) analog: AnalogArgs,
}

/// `quantize` / `finetune`: a config, a checkpoint, and the method/levels shortcuts.
#[derive(clap::Args)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) args: ConfigArgs,
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[command(flatten)]
    pub(crate) quant: QuantArgs,
}

/// `compare`: a config, a checkpoint, and how the grid runs.
#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    pub(crate) args: ConfigArgs,
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[command(flatten)]
    pub(crate) grid: GridArgs,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a network from scratch (or --resume a run folder); the task (classify, detect,
    /// segment) is the config's `task` key.
    Train(TrainArgs),
    /// Post-training quantization of a checkpoint, then evaluation.
    Quantize(QuantizeArgs),
    /// Straight-through quantization-aware fine-tuning of a checkpoint, then evaluation.
    Finetune(QuantizeArgs),
    /// The comparison grid: fp32 vs quantizers x levels x fine-tuning x programming noise,
    /// with Monte-Carlo trials on the crossbar.
    Compare(CompareArgs),
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
    DetectTrain(TrainArgs),
    /// Evaluate a detection checkpoint (VOC mAP@0.5, COCO mAP@[.5:.95]; `--analog`:
    /// Monte-Carlo on the crossbar).
    #[command(hide = true)]
    DetectEval(EvalArgs),
    /// Post-training quantization of a detector (`quant` section or --method/--levels), then
    /// mAP on the whole test set before and after.
    #[command(hide = true)]
    DetectQuantize(QuantizeArgs),
    /// Straight-through quantization-aware fine-tuning of a detector, then mAP.
    #[command(hide = true)]
    DetectFinetune(QuantizeArgs),
    /// Post-training quantization of a segmenter, then mIoU before and after.
    #[command(hide = true)]
    SegmentQuantize(QuantizeArgs),
    /// Straight-through quantization-aware fine-tuning of a segmenter, then mIoU.
    #[command(hide = true)]
    SegmentFinetune(QuantizeArgs),
    /// The comparison grid of the config's `compare` section on a trained detector.
    #[command(hide = true)]
    DetectCompare(CompareArgs),
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
    SegmentTrain(TrainArgs),
    /// Evaluate a segmentation checkpoint (mIoU, pixel accuracy, per-class IoU; `--analog`:
    /// Monte-Carlo on the crossbar).
    #[command(hide = true)]
    SegmentEval(EvalArgs),
    /// The comparison grid of the config's `compare` section on a trained segmenter.
    #[command(hide = true)]
    SegmentCompare(CompareArgs),
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
        /// Skip the peer simulators (section 4).
        #[arg(long)]
        skip_aihwkit: bool,
        /// Python of a venv with aihwkit 1.2.0 (a peer beside the project venv's aihwkit).
        #[arg(long, env = "GQCIM_AIHWKIT12_PYTHON")]
        aihwkit12_python: Option<PathBuf>,
        /// Python of a venv with aihwkit-lightning (it pins its own torch).
        #[arg(long, env = "GQCIM_LIGHTNING_PYTHON")]
        lightning_python: Option<PathBuf>,
        /// Run only these sections (comma-separated: train, qat, mc, peers, fit, scaling,
        /// tasks).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
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
    Eval(EvalArgs),
}
