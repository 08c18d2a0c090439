//! The `gqcim` command line.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gqcim::config::Config;
use std::path::PathBuf;
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

#[derive(Subcommand)]
enum Command {
    /// Train a network from scratch (or --resume a run folder).
    Train {
        #[command(flatten)]
        args: ConfigArgs,
        /// Continue from <run-dir>/checkpoints/last.*.
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a checkpoint on the test split.
    Eval {
        #[command(flatten)]
        args: ConfigArgs,
        #[arg(long)]
        checkpoint: PathBuf,
    },
}

fn load_config(args: &ConfigArgs) -> Result<Config> {
    Ok(Config::load(&args.config, &args.overrides)?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { args, resume } => {
            let cfg = load_config(&args)?;
            if resume && args.run_dir.is_none() && cfg.run_name.is_none() {
                anyhow::bail!(
                    "--resume needs --run-dir (or run_name in the config) to find the run"
                );
            }
            gqcim::tasks::classify::train(&cfg, &args.config, args.run_dir.as_deref(), resume)
                .context("training failed")?;
        }
        Command::Eval { args, checkpoint } => {
            let cfg = load_config(&args)?;
            gqcim::tasks::classify::eval(&cfg, &args.config, &checkpoint, args.run_dir.as_deref())
                .context("evaluation failed")?;
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
