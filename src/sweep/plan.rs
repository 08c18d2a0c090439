//! The plan of a comparison grid: `plan.json` in the run folder lists every unit and the
//! facts its results depend on. Its hash is stamped into every cell, so a cell written under
//! another plan (other commit, config, checkpoint or thread count) is refused, never mixed.
use crate::checkpoint::{sha256_file, write_text_atomic};
use crate::config::{CompareConfig, QuantMethod, TuneMode};
use crate::error::{GqcimError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const PLAN_FILE: &str = "plan.json";
/// Bumped when the plan or cell layout changes meaning.
pub const PLAN_VERSION: u32 = 1;

/// One network of the grid and the σ values it is evaluated at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub index: usize,
    /// Folder name under `cells/`, e.g. `gq-qat-N8-s1` or `gq-noise-qat-N8-sigma2-s1`.
    pub key: String,
    pub method: QuantMethod,
    pub levels: usize,
    pub mode: TuneMode,
    /// Fine-tuning seed (data order, noise draws) and base of the Monte-Carlo trial seeds.
    pub seed: u64,
    pub sigmas: Vec<f64>,
    /// gq-noise: the σ its quanta are fitted for (one unit per σ).
    pub fit_sigma: Option<f64>,
    /// gq-noise at σ = 0 is gq by construction: this unit's cells are those of unit
    /// `alias_of`, relabelled at merge time; nothing runs for it.
    pub alias_of: Option<usize>,
    /// The layer policy of `compare.keep_fp32_sets` this unit belongs to: the layers kept
    /// fp32 instead of `quant.keep_fp32` (`None`: the config's own).
    #[serde(default)]
    pub keep_fp32: Option<Vec<String>>,
}

/// A layer set as a key and table fragment: `conv1+fc` (empty: every layer quantized).
pub fn layers_label(layers: &[String]) -> String {
    layers.join("+")
}

/// What fixes a grid's results; hashed into `hash`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    /// sha256 over every other field (with `hash` empty).
    pub hash: String,
    /// The code version the cells must be computed with.
    pub commit: String,
    /// `classify`, `detect` or `segment`: which task parser reads `config_yaml`.
    pub task: String,
    pub metric: String,
    /// The task's own resolved config (the run folder's config.yaml).
    pub config_yaml: String,
    pub compare: CompareConfig,
    pub trials: usize,
    pub checkpoint: PathBuf,
    pub checkpoint_sha256: String,
    /// libtorch intra-op threads every cell runs with (results differ between counts).
    pub threads: usize,
    pub eval_samples: i64,
    /// Where fine-tuned networks are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    pub units: Vec<Unit>,
}

/// σ as a key fragment: 0.02 -> `2`, 0.005 -> `0.5` (percent, no trailing zeros).
fn sigma_key(s: f64) -> String {
    let p = format!("{:.4}", 100.0 * s);
    p.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Expands `compare` into units, in the order of the results table: fp32 first, gq before
/// the other methods (so gq-noise at σ = 0 can alias it), then levels, modes, the fit σ of
/// gq-noise, and the fine-tuning seed innermost.
pub fn expand_units(cc: &CompareConfig, seeds: &[u64]) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let push = |units: &mut Vec<Unit>, mut u: Unit| {
        u.index = units.len();
        units.push(u);
    };
    let base = |method, levels, mode, seed, sigmas: Vec<f64>, fit_sigma: Option<f64>| Unit {
        index: 0,
        key: String::new(),
        method,
        levels,
        mode,
        seed,
        sigmas,
        fit_sigma,
        alias_of: None,
        keep_fp32: None,
    };
    if cc.include_fp32 {
        for &seed in seeds {
            let mut u = base(QuantMethod::Fp32, 32, TuneMode::Ptq, seed, cc.sigmas.clone(), None);
            u.key = format!("fp32-s{seed}");
            push(&mut units, u);
        }
    }
    let mut methods = cc.methods.clone();
    methods.sort_by_key(|m| if *m == QuantMethod::Gq { 0 } else { 1 });
    // One pass per layer policy; policies are the outermost loop so each forms its own
    // block of rows.
    let policies: Vec<Option<Vec<String>>> = if cc.keep_fp32_sets.is_empty() {
        vec![None]
    } else {
        cc.keep_fp32_sets.iter().cloned().map(Some).collect()
    };
    let mut planned: Vec<Unit> = Vec::new();
    for policy in &policies {
        let suffix = match policy {
            Some(l) if !l.is_empty() => format!("-fp32-{}", layers_label(l)),
            _ => String::new(),
        };
        for &m in &methods {
            for &n in &cc.levels {
                for &mode in &cc.modes {
                    let fits: Vec<Option<f64>> = if m == QuantMethod::GqNoise {
                        cc.sigmas.iter().map(|s| Some(*s)).collect()
                    } else {
                        vec![None]
                    };
                    for fit in fits {
                        for &seed in seeds {
                            let sigmas = fit.map(|s| vec![s]).unwrap_or_else(|| cc.sigmas.clone());
                            let mut u = base(m, n, mode, seed, sigmas, fit);
                            u.keep_fp32 = policy.clone();
                            u.key = match fit {
                                Some(s) => format!(
                                    "{}-{}-N{n}{suffix}-sigma{}-s{seed}",
                                    m.name(),
                                    mode.name(),
                                    sigma_key(s)
                                ),
                                None => {
                                    format!("{}-{}-N{n}{suffix}-s{seed}", m.name(), mode.name())
                                }
                            };
                            planned.push(u);
                        }
                    }
                }
            }
        }
    }
    let offset = units.len();
    for (i, mut u) in planned.iter().cloned().enumerate() {
        // An ideal device makes gq-noise's fit and refits exactly gq's (not so under the
        // device's own noise, `compare.device_noise`).
        if u.method == QuantMethod::GqNoise && u.fit_sigma == Some(0.0) && !cc.device_noise {
            u.alias_of = planned
                .iter()
                .position(|g| {
                    g.method == QuantMethod::Gq
                        && g.levels == u.levels
                        && g.mode == u.mode
                        && g.seed == u.seed
                        && g.keep_fp32 == u.keep_fp32
                        && g.sigmas.contains(&0.0)
                })
                .map(|p| p + offset);
        }
        debug_assert_eq!(i + offset, units.len());
        push(&mut units, u);
    }
    units
}

impl Plan {
    /// Stamps `hash` from every other field.
    pub fn seal(mut self) -> Plan {
        self.hash = String::new();
        let text = serde_json::to_string(&self).unwrap_or_default();
        self.hash = format!("{:x}", Sha256::digest(text.as_bytes()));
        self
    }

    pub fn path(run: &Path) -> PathBuf {
        run.join(PLAN_FILE)
    }

    /// Reads `plan.json` and checks that its hash matches its content.
    pub fn read(run: &Path) -> Result<Plan> {
        let path = Plan::path(run);
        let text = std::fs::read_to_string(&path).map_err(|e| GqcimError::Config {
            path: path.clone().display().to_string(),
            msg: format!("cannot read the grid plan ({e}); create it with `gqcim compare --plan`"),
        })?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| GqcimError::Config {
            path: path.clone().display().to_string(),
            msg: format!("not a gqcim grid plan: {e}"),
        })?;
        if plan.version != PLAN_VERSION {
            return Err(GqcimError::Config {
                path: path.display().to_string(),
                msg: format!("plan version {} (this gqcim reads {PLAN_VERSION})", plan.version),
            });
        }
        let stated = plan.hash.clone();
        if plan.clone().seal().hash != stated {
            return Err(GqcimError::Config {
                path: path.display().to_string(),
                msg: "the plan was edited after it was written (its hash does not match)".into(),
            });
        }
        Ok(plan)
    }

    /// Writes the plan into a new run folder, or checks it against the one already there:
    /// the same plan resumes, another plan (commit, config, checkpoint, threads) is refused.
    pub fn write_or_resume(&self, run: &Path) -> Result<bool> {
        let path = Plan::path(run);
        if path.exists() {
            let old = Plan::read(run)?;
            if old.hash != self.hash {
                return Err(GqcimError::Config {
                    path: path.display().to_string(),
                    msg: format!(
                        "this run folder holds another grid ({}); it was planned with commit \
                         {}, {} threads and checkpoint sha256 {}…; now: commit {}, {} threads, \
                         sha256 {}…. Use a new --run-dir, or the same code, config and \
                         checkpoint to resume",
                        differing(&old, self),
                        short(&old.commit),
                        old.threads,
                        short(&old.checkpoint_sha256),
                        short(&self.commit),
                        self.threads,
                        short(&self.checkpoint_sha256)
                    ),
                });
            }
            return Ok(true);
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| GqcimError::Config {
            path: path.clone().display().to_string(),
            msg: e.to_string(),
        })?;
        write_text_atomic(&path, &text)?;
        Ok(false)
    }

    /// Refuses to run cells with other code or another checkpoint than the plan's.
    pub fn check_runnable(&self, run: &Path, commit: &str) -> Result<()> {
        if self.commit != commit {
            return Err(GqcimError::Config {
                path: Plan::path(run).display().to_string(),
                msg: format!(
                    "planned with commit {} but this gqcim is {}; cells must be computed with \
                     the plan's code",
                    self.commit, commit
                ),
            });
        }
        let sha = sha256_file(&self.checkpoint)?;
        if sha != self.checkpoint_sha256 {
            return Err(GqcimError::Checkpoint {
                path: self.checkpoint.clone(),
                msg: format!(
                    "sha256 {} differs from the plan's {}; the checkpoint changed since \
                     planning",
                    short(&sha),
                    short(&self.checkpoint_sha256)
                ),
            });
        }
        Ok(())
    }

    pub fn unit(&self, run: &Path, index: usize) -> Result<&Unit> {
        self.units.get(index).ok_or_else(|| GqcimError::Config {
            path: Plan::path(run).display().to_string(),
            msg: format!(
                "unit index {index} is out of range: the plan has {} units (0..={})",
                self.units.len(),
                self.units.len().saturating_sub(1)
            ),
        })
    }

    /// Units that run (aliases are resolved at merge time).
    pub fn runnable(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(|u| u.alias_of.is_none())
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Names the first fields in which two plans differ, for the refusal message.
fn differing(a: &Plan, b: &Plan) -> String {
    let mut d = Vec::new();
    if a.commit != b.commit {
        d.push("commit");
    }
    if a.config_yaml != b.config_yaml {
        d.push("config");
    }
    if a.checkpoint_sha256 != b.checkpoint_sha256 {
        d.push("checkpoint");
    }
    if a.threads != b.threads {
        d.push("threads");
    }
    if a.units != b.units {
        d.push("units");
    }
    if d.is_empty() {
        "plans differ".into()
    } else {
        format!("differs in: {}", d.join(", "))
    }
}
