//! A store of fine-tuned (or post-training quantized) grid networks, so that re-running a
//! grid with more σ values, more trials or a wider table reuses them instead of
//! fine-tuning again. Entries live outside run folders (`<out_dir>/cache/<task>/<key>/`)
//! and are keyed by a hash of everything that determines the network: the code version,
//! the checkpoint's sha256, the resolved config without the evaluation-only parts
//! (`compare`, `analog.trials`), the method, N, mode, fit σ, seed and thread count. An entry
//! holds the var store (master weights, BatchNorm statistics), the effective weight of every
//! layer and the fine-tuning record; it is written atomically and read strictly.
use super::plan::{Plan, Unit};
use crate::checkpoint::{read_tensors, write_json_atomic, write_tensors_atomic};
use crate::engine::finetune::FinetuneStats;
use crate::error::{GqcimError, Result};
use crate::nets::layers::{LayerSpec, WeightPath};
use crate::nets::Network;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The cache key of a unit's network.
pub fn key(plan: &Plan, unit: &Unit) -> String {
    let mut tree: serde_yaml::Value =
        serde_yaml::from_str(&plan.config_yaml).unwrap_or(serde_yaml::Value::Null);
    if let serde_yaml::Value::Mapping(m) = &mut tree {
        // Evaluation-only settings do not change the network.
        for k in ["compare", "run_name", "out_dir", "eval"] {
            m.remove(k);
        }
        if let Some(serde_yaml::Value::Mapping(a)) = m.get_mut("analog") {
            a.remove("trials");
        }
    }
    let identity = json!({
        "commit": plan.commit,
        "task": plan.task,
        "checkpoint_sha256": plan.checkpoint_sha256,
        "config": serde_yaml::to_string(&tree).unwrap_or_default(),
        "method": unit.method,
        "levels": unit.levels,
        "mode": unit.mode,
        "fit_sigma": unit.fit_sigma,
        "keep_fp32": unit.keep_fp32,
        "seed": unit.seed,
        "threads": plan.threads,
    });
    format!("{:x}", Sha256::digest(identity.to_string().as_bytes()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    key: String,
    unit_key: String,
    /// Each layer's path description, in layer order (the crossbar reports it).
    describe: Vec<String>,
    finetune: Option<FinetuneStats>,
}

fn entry_dir(dir: &Path, key: &str) -> PathBuf {
    dir.join(key)
}

/// A layer frozen at the weight a cached network computed with.
#[derive(Debug)]
struct Frozen {
    weight: Tensor,
    describe: String,
}

impl WeightPath for Frozen {
    fn weight(&mut self, _layer: &LayerSpec, _train: bool) -> Tensor {
        self.weight.shallow_clone()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Stores a unit's network: its variables, each layer's effective weight and description,
/// and the fine-tuning record.
pub fn store(
    dir: &Path,
    key: &str,
    unit: &Unit,
    net: &Network,
    ft: &Option<FinetuneStats>,
) -> Result<()> {
    let entry = entry_dir(dir, key);
    let mut named: Vec<(String, Tensor)> =
        net.vs.variables().into_iter().map(|(n, t)| (format!("vs/{n}"), t)).collect();
    let mut describe = Vec::new();
    for l in net.layers.layers() {
        named.push((format!("effective/{}", l.spec.name), l.effective_weight()));
        describe.push(l.describe());
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomic(&named, &entry.join("network.safetensors"))?;
    let meta = Meta { key: key.into(), unit_key: unit.key.clone(), describe, finetune: ft.clone() };
    let value = serde_json::to_value(&meta).map_err(|e| GqcimError::Config {
        path: entry.join("meta.json").display().to_string(),
        msg: e.to_string(),
    })?;
    // meta.json last: an entry without it is incomplete and ignored.
    write_json_atomic(&entry.join("meta.json"), &value)
}

/// Loads a cached network into `net` (built from the checkpoint): variables copied in,
/// every layer frozen at its cached effective weight. `None` when there is no entry.
pub fn load(dir: &Path, key: &str, net: &Network) -> Result<Option<Option<FinetuneStats>>> {
    let entry = entry_dir(dir, key);
    let meta_path = entry.join("meta.json");
    let Ok(text) = std::fs::read_to_string(&meta_path) else { return Ok(None) };
    let bad = |msg: String| GqcimError::Checkpoint { path: entry.clone(), msg };
    let meta: Meta = serde_json::from_str(&text)
        .map_err(|e| bad(format!("corrupt cache entry meta.json ({e}); delete the folder")))?;
    let file = read_tensors(&entry.join("network.safetensors"))?;
    let layers = net.layers.layers();
    if meta.describe.len() != layers.len() || meta.key != key {
        return Err(bad(format!(
            "cache entry holds {} layers for key {}…; the network has {}",
            meta.describe.len(),
            &meta.key[..meta.key.len().min(12)],
            layers.len()
        )));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in net.vs.variables() {
            let src = file
                .get(&format!("vs/{name}"))
                .ok_or_else(|| bad(format!("cache entry lacks variable `{name}`")))?;
            if src.size() != t.size() {
                return Err(bad(format!("variable `{name}` has shape {:?}", src.size())));
            }
            t.copy_(src);
        }
        Ok(())
    })?;
    let device = net.vs.device();
    for (l, describe) in layers.iter().zip(meta.describe) {
        let w = file
            .get(&format!("effective/{}", l.spec.name))
            .ok_or_else(|| bad(format!("cache entry lacks layer `{}`", l.spec.name)))?;
        if w.size() != l.spec.weight.size() {
            return Err(bad(format!("layer `{}` has shape {:?}", l.spec.name, w.size())));
        }
        l.set_path(Box::new(Frozen { weight: w.to_device(device), describe }));
    }
    Ok(Some(meta.finetune))
}
