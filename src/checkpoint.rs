//! Checkpoints: safetensors with torchvision names, written to a temporary file and renamed
//! so that a crash never leaves a half-written file; strict loading that names every
//! missing, unexpected or mis-shaped tensor.
use crate::error::{GqcimError, Result};
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
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_sibling(path);
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, &tmp).map_err(|e| ckpt_err(path, e.to_string()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
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
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
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

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// sha256 of a string, hex.
pub fn sha256_str(s: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(s.as_bytes()))
}
