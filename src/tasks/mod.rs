//! Vision tasks: losses, metrics, training and evaluation loops.
pub mod classify;
pub mod detect;
pub mod segment;

use crate::config::Config;
use crate::engine::task::Task;
use crate::error::{invalid, Result};

/// What a grid cell needs to run a unit of a planned grid: the deployment config (the
/// classification-shaped view every task provides), the task's harness with its test set
/// cut to `compare.eval_limit`, and the device.
pub struct GridSetup {
    pub cfg: Config,
    pub harness: Box<dyn Task>,
    pub device: tch::Device,
}

/// The task a config file describes: its top-level `task` key (a `--set task=...` override
/// wins); a config without one is a classification config (the original format).
pub fn task_of_config(config: &std::path::Path, overrides: &[String]) -> Result<&'static str> {
    let set = overrides.iter().rev().find_map(|o| o.strip_prefix("task="));
    let name = match set {
        Some(v) => v.trim().to_string(),
        None => {
            let text = crate::config::read_config_text(config)?;
            let tree: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| crate::error::GqcimError::Config {
                    path: config.display().to_string(),
                    msg: e.to_string(),
                })?;
            match tree.get("task") {
                None => "classify".to_string(),
                Some(v) => v.as_str().unwrap_or_default().to_string(),
            }
        }
    };
    match name.as_str() {
        "classify" => Ok("classify"),
        "detect" => Ok("detect"),
        "segment" => Ok("segment"),
        other => Err(invalid(
            "task",
            format!("{}: expected classify, detect or segment, got `{other}`", config.display()),
        )),
    }
}

/// What a command opens a task for, i.e. which data it reads: everything (`Train`), the
/// test set only (`Eval`), or the grid's (training pool and the test set cut to
/// `compare.eval_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Train,
    Eval,
    Grid,
}

/// A task from its config file and `--set` overrides, parsed as the task parses them
/// (`task`: classify, detect, segment), opened for `purpose`.
pub fn open(
    task: &str,
    config: &std::path::Path,
    overrides: &[String],
    purpose: Purpose,
) -> Result<GridSetup> {
    let yaml = match task {
        "classify" => Config::load(config, overrides)?.to_yaml(),
        "detect" => detect::DetectConfig::load(config, overrides)?.to_yaml(),
        "segment" => segment::SegmentConfig::load(config, overrides)?.to_yaml(),
        other => {
            return Err(invalid(
                "task",
                format!("expected classify, detect or segment, got `{other}`"),
            ))
        }
    };
    open_yaml(task, &yaml, &config.display().to_string(), purpose)
}

/// Rebuilds a grid's task from the resolved config stored in its plan (`task` names the
/// parser: `classify`, `detect` or `segment`).
pub fn grid_setup(task: &str, config_yaml: &str, origin: &str) -> Result<GridSetup> {
    open_yaml(task, config_yaml, origin, Purpose::Grid)
}

/// A task from its resolved config (YAML text; `origin` names it in errors).
pub fn open_yaml(
    task: &str,
    config_yaml: &str,
    origin: &str,
    purpose: Purpose,
) -> Result<GridSetup> {
    let (harness, device) = match task {
        "classify" => classify::open(&Config::from_yaml_str(config_yaml, origin, &[])?, purpose)?,
        "detect" => {
            detect::open(&detect::DetectConfig::from_yaml_str(config_yaml, origin, &[])?, purpose)?
        }
        "segment" => segment::open(
            &segment::SegmentConfig::from_yaml_str(config_yaml, origin, &[])?,
            purpose,
        )?,
        other => {
            return Err(invalid(
                "task",
                format!("`{other}` in {origin}: expected classify, detect or segment"),
            ))
        }
    };
    Ok(GridSetup { cfg: harness.deploy_config(), harness, device })
}
