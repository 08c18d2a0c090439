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

/// A task's setup from its config file and `--set` overrides, parsed as the task parses
/// them (`task`: classify, detect, segment): the grid's setup (harness with the test set cut
/// to `compare.eval_limit`) and the task's own resolved config, for the record.
pub fn task_setup(
    task: &str,
    config: &std::path::Path,
    overrides: &[String],
) -> Result<(GridSetup, serde_json::Value)> {
    let yaml = match task {
        "classify" => serde_yaml::to_string(&Config::load(config, overrides)?)
            .map_err(|e| invalid("config", e.to_string()))?,
        "detect" => detect::DetectConfig::load(config, overrides)?.to_yaml(),
        "segment" => segment::SegmentConfig::load(config, overrides)?.to_yaml(),
        other => {
            return Err(invalid(
                "--task",
                format!("expected classify, detect or segment, got `{other}`"),
            ))
        }
    };
    let record = serde_yaml::from_str(&yaml).unwrap_or(serde_json::Value::Null);
    Ok((grid_setup(task, &yaml, &config.display().to_string())?, record))
}

/// Rebuilds a grid's task from the resolved config stored in its plan (`task` names the
/// parser: `classify`, `detect` or `segment`).
pub fn grid_setup(task: &str, config_yaml: &str, origin: &str) -> Result<GridSetup> {
    match task {
        "classify" => {
            let cfg = Config::from_yaml_str(config_yaml, origin, &[])?;
            let device = crate::run::setup_device(&cfg)?;
            let harness = classify::classify_harness(&cfg, device)?;
            Ok(GridSetup { cfg, harness, device })
        }
        "detect" => {
            let dc = detect::DetectConfig::from_yaml_str(config_yaml, origin, &[])?;
            let cfg = dc.base_config();
            let device = crate::run::setup_device(&cfg)?;
            let mut h = detect::DetectHarness::new(&dc, device)?;
            if dc.compare.eval_limit > 0 {
                h.limit_test(dc.compare.eval_limit);
            }
            Ok(GridSetup { cfg, harness: Box::new(h), device })
        }
        "segment" => {
            let sc = segment::SegmentConfig::from_yaml_str(config_yaml, origin, &[])?;
            let cfg = sc.base_config();
            let device = crate::run::setup_device(&cfg)?;
            let mut data = segment::SegmentData::load(&sc, device)?;
            if sc.compare.eval_limit > 0 {
                data.test = data.test.first(sc.compare.eval_limit);
            }
            Ok(GridSetup {
                cfg,
                harness: Box::new(segment::SegmentHarness::from_data(&sc, data)),
                device,
            })
        }
        other => Err(invalid(
            "task",
            format!("the plan names task `{other}`; expected classify, detect or segment"),
        )),
    }
}
