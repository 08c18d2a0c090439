//! The resumable checkpoint set of a training run: `checkpoints/last.safetensors` (model),
//! `last.optim.safetensors` (momentum buffers) and `last.json` (the sidecar naming the
//! epoch, the history and the run's metrics).
//!
//! Each file is written atomically (temporary file, fsync, rename), but a process killed
//! between two of the renames would leave a model of one epoch next to a sidecar of
//! another. The sidecar is therefore written last and records the sha256 of the model and
//! optimizer files it belongs to (the "generation" of the set); `resume` refuses, naming
//! the file, when either differs, when `epoch` is not a non-negative integer, or when the
//! history does not hold one entry per finished epoch. Resuming never rewrites history:
//! the entries are carried over as read (serde_json's `float_roundtrip` reads every f64
//! back bit for bit).
use crate::checkpoint::{
    load_strict, read_tensors, save_varstore, sha256_file, write_json_atomic, write_tensors_atomic,
};
use crate::error::{file_err, GqcimError, Result};
use crate::sgd::Sgd;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// Version of the sidecar layout (1: no hashes, before the set was checked).
pub const FORMAT: u64 = 2;

pub struct CheckpointSet {
    pub model: PathBuf,
    pub optim: PathBuf,
    pub meta: PathBuf,
}

/// What a resumed run continues from.
pub struct Resumed {
    /// Epochs already finished.
    pub epoch: usize,
    /// One entry per finished epoch, as written.
    pub history: Vec<Value>,
    /// The whole sidecar.
    pub meta: Value,
}

fn err(path: &Path, msg: impl Into<String>) -> GqcimError {
    GqcimError::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

impl CheckpointSet {
    /// The set of the run folder `run`.
    pub fn in_run(run: &Path) -> CheckpointSet {
        let dir = run.join("checkpoints");
        CheckpointSet {
            model: dir.join("last.safetensors"),
            optim: dir.join("last.optim.safetensors"),
            meta: dir.join("last.json"),
        }
    }

    /// Saves the set after `epoch` finished epochs: optimizer state, model, then the sidecar
    /// `sidecar` (a JSON object; `epoch`, `checkpoint_format` and the two file hashes are
    /// added) that makes the new set current.
    pub fn save(&self, vs: &VarStore, opt: &Sgd, epoch: usize, mut sidecar: Value) -> Result<()> {
        write_tensors_atomic(&opt.state(), &self.optim)?;
        save_varstore(vs, &self.model)?;
        let obj = sidecar
            .as_object_mut()
            .ok_or_else(|| err(&self.meta, "internal: the sidecar must be a JSON object"))?;
        obj.insert("epoch".into(), epoch.into());
        obj.insert("checkpoint_format".into(), FORMAT.into());
        obj.insert("model_sha256".into(), sha256_file(&self.model)?.into());
        obj.insert("optim_sha256".into(), sha256_file(&self.optim)?.into());
        write_json_atomic(&self.meta, &sidecar)
    }

    /// Reads and checks the sidecar, then loads the model into `vs` and the optimizer state
    /// into `opt`. `config_sha256`: the current config's hash (a mismatch is a warning: the
    /// run may continue with, say, more epochs).
    pub fn resume(&self, vs: &mut VarStore, opt: &mut Sgd, config_sha256: &str) -> Result<Resumed> {
        let meta = self.read_sidecar()?;
        let epoch = match meta.get("epoch") {
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0) as usize,
            other => {
                return Err(err(
                    &self.meta,
                    format!(
                        "`epoch` is {}, expected a non-negative integer",
                        other.map_or("missing".to_string(), |v| v.to_string())
                    ),
                ))
            }
        };
        let history = match meta.get("history") {
            Some(Value::Array(h)) if h.len() == epoch => h.clone(),
            Some(Value::Array(h)) => {
                return Err(err(
                    &self.meta,
                    format!("`history` has {} entries but `epoch` is {epoch}", h.len()),
                ))
            }
            _ => return Err(err(&self.meta, "`history` is missing or not a list")),
        };
        if meta.get("checkpoint_format").and_then(Value::as_u64) != Some(FORMAT) {
            return Err(err(
                &self.meta,
                format!(
                    "`checkpoint_format` is {}, expected {FORMAT}: written by another gqcim \
                     version; start a new run",
                    meta.get("checkpoint_format").unwrap_or(&Value::Null)
                ),
            ));
        }
        for (file, key) in [(&self.model, "model_sha256"), (&self.optim, "optim_sha256")] {
            if !file.is_file() {
                return Err(err(file, format!("missing, but {} names it", self.meta.display())));
            }
            let want = meta.get(key).and_then(Value::as_str).unwrap_or("");
            if sha256_file(file)? != want {
                return Err(err(
                    file,
                    format!(
                        "does not belong to the checkpoint set of epoch {epoch} named by {} \
                         (sha256 differs from its `{key}`): the run was interrupted while \
                         saving, or a file was replaced; start a new run or restore the set",
                        self.meta.display()
                    ),
                ));
            }
        }
        if meta.get("config_sha256").and_then(Value::as_str) != Some(config_sha256) {
            log::warn!("resuming with a config that differs from the checkpoint's");
        }
        load_strict(vs, &self.model)?;
        opt.load_state(&read_tensors(&self.optim)?).map_err(|m| err(&self.optim, m))?;
        Ok(Resumed { epoch, history, meta })
    }

    fn read_sidecar(&self) -> Result<Value> {
        if !self.meta.is_file() {
            return Err(err(&self.meta, "--resume given but the run folder has no checkpoint"));
        }
        let text = std::fs::read_to_string(&self.meta)
            .map_err(|e| file_err(&self.meta, "read the checkpoint sidecar", e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| err(&self.meta, format!("not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(err(&self.meta, "expected a JSON object"));
        }
        Ok(v)
    }
}
