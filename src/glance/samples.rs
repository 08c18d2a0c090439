//! The same evaluation samples under every grid network, side by side. Units run in
//! separate processes, so a unit saves its pictures in its cell folder
//! (`cells/<key>/samples/`: the shared input panels and its predictions as PNGs, listed in
//! `samples.json`, all written before the cell's result, which is written last); merge
//! composes, for each sample and each N, the input panels, fp32's prediction and every
//! method's at that N, captioned, with the task's colour legend below, into the grid's own
//! TensorBoard run as `samples/<task>/sample_<i>/N<n>`. One picture per network: the first
//! fine-tuning seed's (and for gq-noise, the network fitted for the first σ).
use super::picture::{captioned, grid, stack, Picture};
use crate::error::{GqcimError, Result};
use crate::sweep::cell::unit_dir;
use crate::sweep::plan::{Plan, Unit};
use crate::tb::Tb;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Panels per row before the picture wraps.
pub const COLUMNS: usize = 5;
/// The folder of a unit's sample pictures inside its cell folder.
pub const SAMPLES_DIR: &str = "samples";
const MANIFEST: &str = "samples.json";

/// What a unit saved: per sample the captioned input panels' files, and its predictions'.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    inputs: Vec<Vec<(String, String)>>,
    predictions: Vec<String>,
}

fn file_err(path: &Path, what: &str, e: impl std::fmt::Display) -> GqcimError {
    GqcimError::File {
        path: path.to_path_buf(),
        msg: format!("sample pictures: cannot {what}: {e}"),
    }
}

fn write_png(dir: &Path, name: &str, p: &Picture) -> Result<String> {
    let path = dir.join(name);
    let png = p.to_png().ok_or_else(|| file_err(&path, "encode", "PNG encoder failed"))?;
    std::fs::write(&path, png).map_err(|e| file_err(&path, "write", e))?;
    Ok(name.to_string())
}

/// Saves a unit's sample pictures into `cell_dir/samples/` (replacing what a previous,
/// interrupted run of the unit left). Nothing is written for a task without pictures.
pub fn save_unit_samples(
    cell_dir: &Path,
    inputs: &[Vec<(String, Picture)>],
    predictions: &[Picture],
) -> Result<()> {
    if predictions.is_empty() {
        return Ok(());
    }
    let dir = cell_dir.join(SAMPLES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, "create the folder", e))?;
    let mut m = Manifest { inputs: Vec::new(), predictions: Vec::new() };
    for (i, panels) in inputs.iter().enumerate() {
        let mut files = Vec::new();
        for (j, (caption, p)) in panels.iter().enumerate() {
            files.push((caption.clone(), write_png(&dir, &format!("input_{i}_{j}.png"), p)?));
        }
        m.inputs.push(files);
    }
    for (i, p) in predictions.iter().enumerate() {
        m.predictions.push(write_png(&dir, &format!("prediction_{i}.png"), p)?);
    }
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&m).map_err(|e| file_err(&path, "encode", e))?;
    crate::checkpoint::write_text_atomic(&path, &text)
}

type Inputs = Vec<Vec<(String, Picture)>>;

/// A unit's saved pictures; None when it saved none.
fn load_unit_samples(cell_dir: &Path) -> Result<Option<(Inputs, Vec<Picture>)>> {
    let dir = cell_dir.join(SAMPLES_DIR);
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(&path, "read", e)),
    };
    let m: Manifest = serde_json::from_str(&text).map_err(|e| file_err(&path, "parse", e))?;
    let read = |name: &str| -> Result<Picture> {
        // Names come from the manifest: only plain file names inside the folder are read.
        let p: PathBuf = dir.join(name);
        if name.contains('/') || name.contains("..") {
            return Err(file_err(&p, "read", "not a file name of the samples folder"));
        }
        let bytes = std::fs::read(&p).map_err(|e| file_err(&p, "read", e))?;
        Picture::from_png(&bytes).map_err(|e| file_err(&p, "decode", e))
    };
    let mut inputs = Vec::new();
    for panels in &m.inputs {
        let mut v = Vec::new();
        for (caption, f) in panels {
            v.push((caption.clone(), read(f)?));
        }
        inputs.push(v);
    }
    let preds = m.predictions.iter().map(|f| read(f)).collect::<Result<Vec<_>>>()?;
    Ok(Some((inputs, preds)))
}

/// The colour legend of a task's sample pictures, `width` pixels wide.
pub fn task_legend(task: &str, width: usize) -> Option<Picture> {
    match task {
        "detect" => Some(crate::tasks::detect::detection_legend(width)),
        "segment" => Some(crate::tasks::segment::mask_legend(width)),
        _ => None,
    }
}

/// [`task_legend`] with the class names of the dataset the grid's config reads (own
/// datasets name their classes; scenes, or a config that cannot be read, keep the scenes').
pub fn plan_legend(task: &str, config_yaml: &str, width: usize) -> Option<Picture> {
    let names = match task {
        "detect" => crate::tasks::detect::own::class_names_of_yaml(config_yaml),
        "segment" => crate::tasks::segment::class_names_of_yaml(config_yaml),
        _ => None,
    };
    match (task, names) {
        ("detect", Some(n)) => Some(crate::tasks::detect::legend_of(&n, width)),
        ("segment", Some(n)) => Some(crate::tasks::segment::mask_legend_of(&n, width)),
        _ => task_legend(task, width),
    }
}

#[derive(Default)]
pub struct SampleBook {
    /// Per sample: captioned panels shared by all networks.
    pub inputs: Inputs,
    /// (network label, N or None for fp32, one picture per sample).
    pub nets: Vec<(String, Option<usize>, Vec<Picture>)>,
}

/// Two caption lines for a network: `gq qat-noise` / `N = 8 levels`.
fn net_caption(label: &str, levels: Option<usize>) -> Vec<String> {
    match levels {
        None => vec!["fp32".into(), "32-bit float".into()],
        Some(n) => {
            let head = label.replacen(&format!("-N{n}"), "", 1);
            vec![head, format!("N = {n} levels")]
        }
    }
}

impl SampleBook {
    pub fn add(&mut self, label: String, levels: Option<usize>, pictures: Vec<Picture>) {
        if !pictures.is_empty() && !self.nets.iter().any(|n| n.0 == label) {
            self.nets.push((label, levels, pictures));
        }
    }

    /// The composed picture of sample `i` at level count `n`.
    pub fn compose(
        &self,
        i: usize,
        n: usize,
        legend: &dyn Fn(usize) -> Option<Picture>,
    ) -> Option<Picture> {
        let mut panels: Vec<Picture> = Vec::new();
        if let Some(inputs) = self.inputs.get(i) {
            for (cap, p) in inputs {
                panels.push(captioned(p, &[cap.clone(), String::new()]));
            }
        }
        let mut nets = 0;
        for (label, levels, pics) in &self.nets {
            if levels.is_none() || *levels == Some(n) {
                if let Some(p) = pics.get(i) {
                    panels.push(captioned(p, &net_caption(label, *levels)));
                    nets += 1;
                }
            }
        }
        if nets == 0 {
            return None;
        }
        let body = grid(&panels, COLUMNS, 6);
        Some(match legend(body.w) {
            Some(l) => stack(&body, &l, 6),
            None => body,
        })
    }

    /// Writes every sample at every N of `levels`.
    pub fn write(
        &self,
        tb: &mut Tb,
        task: &str,
        levels: &[usize],
        legend: &dyn Fn(usize) -> Option<Picture>,
    ) {
        let samples = self.nets.iter().map(|n| n.2.len()).max().unwrap_or(0);
        for i in 0..samples {
            for &n in levels {
                if let Some(p) = self.compose(i, n, legend) {
                    tb.image(&format!("samples/{task}/sample_{i}/N{n}"), &p.to_chw(), p.h, p.w, 0);
                }
            }
        }
    }
}

/// The units whose pictures the grid shows: one per network (the first seed; for gq-noise
/// the first fitted σ), aliases excluded (their network is another unit's).
fn shown_units(plan: &Plan) -> Vec<(&Unit, String)> {
    let first_seed = plan.units.first().map(|u| u.seed);
    let mut out: Vec<(&Unit, String)> = Vec::new();
    for u in plan.units.iter().filter(|u| u.alias_of.is_none() && Some(u.seed) == first_seed) {
        let label = unit_label(plan, u);
        if !out.iter().any(|(_, l)| *l == label) {
            out.push((u, label));
        }
    }
    out
}

/// A unit's network label as merge's sub-runs have it (the layer policy when the grid
/// compares several: then every unit carries its policy).
fn unit_label(plan: &Plan, u: &Unit) -> String {
    let mut label = super::points::net_label(u.method.name(), u.mode.name(), u.levels);
    if plan.compare.keep_fp32_sets.len() > 1 && u.method != crate::config::QuantMethod::Fp32 {
        let kept = u.keep_fp32.as_deref().unwrap_or(&[]);
        label.push_str(&super::points::policy_suffix(&crate::sweep::plan::layers_label(kept)));
    }
    label
}

/// Merge's part: reads the units' saved pictures and writes the side-by-side samples into
/// the grid's run `tb`.
pub fn write_grid_samples(tb: &mut Tb, run: &Path, plan: &Plan) -> Result<()> {
    let mut book = SampleBook::default();
    for (u, label) in shown_units(plan) {
        let Some((inputs, preds)) = load_unit_samples(&unit_dir(run, u))? else { continue };
        if book.inputs.is_empty() {
            book.inputs = inputs;
        }
        let levels = (u.method != crate::config::QuantMethod::Fp32).then_some(u.levels);
        book.add(label, levels, preds);
    }
    let (task, yaml) = (plan.task.clone(), plan.config_yaml.clone());
    book.write(tb, &plan.task, &plan.compare.levels, &|w| plan_legend(&task, &yaml, w));
    Ok(())
}
