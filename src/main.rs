//! The `gqcim` command line.
use anyhow::{Context, Result};
mod cli;
use clap::Parser;
use cli::{Cli, Command, CompareArgs, ConfigArgs, EvalArgs, QuantizeArgs, TrainArgs};
use gqcim::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

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

/// The task of `args`' config opened for `purpose`; a config that does not parse as that
/// task's says which task it was read as.
fn open_task(
    task: &str,
    args: &ConfigArgs,
    purpose: gqcim::tasks::Purpose,
) -> Result<gqcim::tasks::GridSetup> {
    gqcim::tasks::open(task, &args.config, &args.overrides, purpose).with_context(|| {
        let kind = match task {
            "detect" => "a detection",
            "segment" => "a segmentation",
            _ => "a classification",
        };
        format!("reading {kind} config (`task: {task}`)")
    })
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

/// The task a verb names (`detect-*`, `segment-*`), else the config's own.
fn pick(task: Option<&str>, args: &ConfigArgs) -> Result<String> {
    match task {
        Some(t) => Ok(t.to_string()),
        None => task_of(args),
    }
}

/// `train` (and the hidden `detect-train`, `segment-train`): any task through the engine.
fn train(task: Option<&str>, TrainArgs { args, resume }: TrainArgs) -> Result<()> {
    use gqcim::tasks::Purpose;
    let task = &pick(task, &args)?;
    let mut s = open_task(task, &args, Purpose::Train)?;
    check_resume(resume, &args, s.harness.train_setup().place.name)?;
    let run_dir = args.run_dir.as_deref();
    gqcim::engine::train::train(s.harness.as_mut(), s.device, &args.config, run_dir, resume)
        .with_context(|| format!("{task} training failed"))?;
    Ok(())
}

/// `eval` (and the hidden `detect-eval`, `segment-eval`); `--analog` is an override.
fn eval(task: Option<&str>, EvalArgs { mut args, checkpoint, analog }: EvalArgs) -> Result<()> {
    use gqcim::tasks::Purpose;
    analog.into_overrides(&mut args);
    let task = &pick(task, &args)?;
    let checkpoint = checkpoint.as_path();
    let s = open_task(task, &args, Purpose::Eval)?;
    let run_dir = args.run_dir.as_deref();
    gqcim::engine::evaluate::command(
        s.harness.as_ref(),
        s.device,
        &args.config,
        checkpoint,
        run_dir,
    )
    .with_context(|| format!("{task} evaluation failed"))?;
    Ok(())
}

/// `quantize` / `finetune` (and the hidden task-prefixed verbs): classification through its
/// own command, detection and segmentation through engine::quantize.
fn quantize(task: Option<&str>, a: QuantizeArgs, finetune: bool) -> Result<()> {
    let QuantizeArgs { mut args, checkpoint, quant } = a;
    quant.into_overrides(&mut args);
    let task = &pick(task, &args)?;
    let checkpoint = checkpoint.as_path();
    let run_dir = args.run_dir.as_deref();
    let what = if finetune { "fine-tuning" } else { "quantization" };
    if task == "classify" {
        let cfg = load_config(&args)?;
        gqcim::tasks::classify::quantize::quantize_command(
            &cfg,
            &args.config,
            checkpoint,
            run_dir,
            finetune,
        )
    } else {
        let purpose = gqcim::tasks::Purpose::Train;
        let s = open_task(task, &args, purpose)?;
        let paths = (args.config.as_path(), checkpoint, run_dir);
        gqcim::engine::quantize::command(s.harness.as_ref(), s.device, paths, finetune)
    }
    .with_context(|| format!("{task} {what} failed"))?;
    Ok(())
}

/// `compare` (and the hidden `detect-compare`, `segment-compare`): the grid of any task.
fn compare(task: Option<&str>, CompareArgs { args, checkpoint, grid }: CompareArgs) -> Result<()> {
    let task = &pick(task, &args)?;
    let s = open_task(task, &args, gqcim::tasks::Purpose::Grid)?;
    let paths = (args.config.as_path(), checkpoint.as_path(), args.run_dir.as_deref());
    gqcim::grid::compare_command(&s.cfg, s.harness.as_ref(), s.device, paths, grid.into())
        .with_context(|| format!("{task} comparison failed"))?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(None, a)?,
        Command::Quantize(a) => quantize(None, a, false)?,
        Command::Finetune(a) => quantize(None, a, true)?,
        Command::Bench {
            device,
            threads,
            python,
            out,
            machine,
            checkpoint,
            quick,
            skip_aihwkit,
            aihwkit12_python,
            lightning_python,
            only,
        } => {
            if let Some(bad) =
                only.iter().flatten().find(|s| !gqcim::bench::SECTIONS.contains(&s.as_str()))
            {
                anyhow::bail!(
                    "--only {bad}: expected some of {}",
                    gqcim::bench::SECTIONS.join(", ")
                );
            }
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
            let peers =
                gqcim::bench::peers::default_peers(&python, aihwkit12_python, lightning_python);
            let opts = gqcim::bench::BenchOptions {
                device,
                threads,
                python,
                out_dir: out,
                machine,
                quick,
                checkpoint,
                skip_aihwkit,
                peers,
                only,
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
            let s = open_task(&task, &args, gqcim::tasks::Purpose::Grid)?;
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
        Command::DetectTrain(a) => train(Some("detect"), a)?,
        Command::DetectEval(a) => eval(Some("detect"), a)?,
        Command::DetectQuantize(a) => quantize(Some("detect"), a, false)?,
        Command::DetectFinetune(a) => quantize(Some("detect"), a, true)?,
        Command::SegmentQuantize(a) => quantize(Some("segment"), a, false)?,
        Command::SegmentFinetune(a) => quantize(Some("segment"), a, true)?,
        Command::DetectCompare(a) => compare(Some("detect"), a)?,
        Command::SegmentCompare(a) => compare(Some("segment"), a)?,
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
        Command::SegmentTrain(a) => train(Some("segment"), a)?,
        Command::SegmentEval(a) => eval(Some("segment"), a)?,
        Command::Compare(a) => compare(None, a)?,
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
            let s = open_task(&task, &args, gqcim::tasks::Purpose::Eval)?;
            let net = s.harness.load_network(&s.cfg, &checkpoint, s.device)?;
            gqcim::engine::quantize::export_network(&s.cfg, net, &out).context("export failed")?;
        }
        Command::FitDevice { csv, out, plot, degree, no_drift, g_max } => {
            let opts = gqcim::device::fit::FitOptions { degree, drift: !no_drift, g_max };
            gqcim::device::fit::fit_device_command(&csv, &out, plot.as_deref(), &opts)
                .context("fit-device failed")?;
        }
        Command::Eval(a) => eval(None, a)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    gqcim::memory::keep_freed_memory();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
