//! Checkpoints: safetensors with torchvision names, written to a temporary file and renamed
//! so that a crash never leaves a half-written file; strict loading that names every
//! missing, unexpected or mis-shaped tensor.
use crate::error::{file_err, GqcimError, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

fn ckpt_err(path: &Path, msg: impl Into<String>) -> GqcimError {
    GqcimError::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

/// The temporary sibling of `path` (keeps the `.safetensors` extension tch dispatches on).
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}.safetensors", std::process::id()))
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| ckpt_err(path, format!("cannot move into place: {e}")))
}

/// Writes named tensors to `path` atomically (temporary file, fsync, rename).
pub fn write_tensors_atomic(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, "create the folder", e))?;
    }
    let tmp = temp_sibling(path);
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu))).collect();
    if let Err(e) = Tensor::write_safetensors(&cpu, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ckpt_err(path, format!("cannot write {}: {e}", tmp.display())));
    }
    sync_file(&tmp)?;
    rename_into_place(&tmp, path)
}

/// Saves every variable of a var store (model weights and BN buffers) atomically.
pub fn save_varstore(vs: &VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomic(&named, path)
}

/// Writes text atomically.
pub fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, "create the folder", e))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, text) {
        // A full disk leaves a partial temporary file; do not leave it behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(&tmp, "write", e));
    }
    sync_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, "move the new file into place", e))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| file_err(path, "sync to disk", e))
}

/// Writes a JSON value atomically, pretty-printed.
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    write_text_atomic(path, &serde_json::to_string_pretty(value).unwrap_or_default())
}

/// Reads a safetensors file into a name -> tensor map, with a clear error when it is not one.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(ckpt_err(path, "not found"));
    }
    let named = Tensor::read_safetensors(path)
        .map_err(|e| ckpt_err(path, format!("not a readable safetensors file: {e}")))?;
    Ok(named.into_iter().collect())
}

/// Loads `path` into the var store, strictly: the file must hold exactly the model's
/// tensors with the model's shapes. Errors list the offending names (the layer they
/// belong to is the key's prefix).
pub fn load_strict(vs: &mut VarStore, path: &Path) -> Result<()> {
    let file = read_tensors(path)?;
    let model: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut problems = Vec::new();
    let missing: Vec<&String> = model.keys().filter(|k| !file.contains_key(*k)).collect();
    let mut unexpected: Vec<&String> = file.keys().filter(|k| !model.contains_key(*k)).collect();
    unexpected.sort();
    let list = |v: &[&String]| {
        let mut s = v.iter().take(6).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        if v.len() > 6 {
            s.push_str(&format!(" and {} more", v.len() - 6));
        }
        s
    };
    if !missing.is_empty() {
        problems.push(format!("{} missing tensors: {}", missing.len(), list(&missing)));
    }
    if !unexpected.is_empty() {
        problems.push(format!("{} unexpected tensors: {}", unexpected.len(), list(&unexpected)));
    }
    for (name, var) in &model {
        if let Some(t) = file.get(name) {
            if t.size() != var.size() {
                problems.push(format!(
                    "`{name}` has shape {:?} in the file, the model expects {:?}",
                    t.size(),
                    var.size()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ckpt_err(path, format!("does not match the model: {}", problems.join("; "))));
    }
    for (name, t) in model.keys().map(|k| (k, &file[k])) {
        check_values(name, t).map_err(|msg| ckpt_err(path, msg))?;
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &model {
            let src = &file[name];
            var.shallow_clone()
                .f_copy_(&src.to_kind(var.kind()).to_device(var.device()))
                .map_err(|e| ckpt_err(path, format!("`{name}`: {e}")))?;
        }
        Ok(())
    })
}

/// A loaded tensor must hold finite values (a NaN weight turns every logit into NaN and
/// the accuracy into whatever argmax makes of it), and a BatchNorm `running_var` must be
/// >= 0 (its square root is taken); the message names the tensor.
pub fn check_values(name: &str, t: &Tensor) -> std::result::Result<(), String> {
    if !t.is_floating_point() || t.numel() == 0 {
        return Ok(());
    }
    let t = t.detach().to_kind(tch::Kind::Double);
    let bad = t.isfinite().logical_not().sum(tch::Kind::Int64).int64_value(&[]);
    if bad > 0 {
        let first = t.flatten(0, -1).masked_select(&t.flatten(0, -1).isfinite().logical_not());
        return Err(format!(
            "`{name}` holds {bad} non-finite value(s) (first: {})",
            first.double_value(&[0])
        ));
    }
    if name.ends_with("running_var") {
        let min = t.min().double_value(&[]);
        if min < 0.0 {
            return Err(format!("`{name}` (a BatchNorm variance) has a negative entry {min}"));
        }
    }
    Ok(())
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| file_err(path, "read", e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// sha256 of a string, hex.
pub fn sha256_str(s: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(s.as_bytes()))
}
