//! Reading configs: size-limited files, `--set key.path=value` overrides on the YAML tree,
//! the typed parse with dotted field paths, did-you-mean hints, finite-number checks.
use crate::error::{GqcimError, Result};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Reads a config file, applies `key.path=value` overrides, parses it and runs `validate`;
/// every error names the file (the `load` of every task config).
pub fn load_validated<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
    validate: impl Fn(&T) -> Result<()>,
) -> Result<T> {
    let text = read_config_text(path)?;
    parse_validated(&text, &path.display().to_string(), overrides, validate)
}

/// The largest config file read (the reference configs are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file of at most `MAX_CONFIG_BYTES`: the size is checked before reading,
/// and the read itself stops one byte past the limit, because devices and pipes
/// (`/dev/zero`, `<(yes)`) report a size of 0 and never end.
pub fn read_config_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let cfg_err = |msg: String| GqcimError::Config { path: path.display().to_string(), msg };
    let too_big = || cfg_err(format!("config file is larger than {} MiB", MAX_CONFIG_BYTES >> 20));
    let file =
        std::fs::File::open(path).map_err(|e| cfg_err(format!("cannot read config file: {e}")))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cfg_err(format!("cannot read config file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| cfg_err(format!("config file is not UTF-8 text: {e}")))
}

/// `load_validated` from text; `origin` names the source in errors.
pub fn parse_validated<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
    validate: impl Fn(&T) -> Result<()>,
) -> Result<T> {
    let cfg: T = parse_yaml(text, origin, overrides)?;
    validate(&cfg)
        .map_err(|e| GqcimError::Config { path: origin.to_string(), msg: e.to_string() })?;
    Ok(cfg)
}

/// Parses any task's YAML config: the text becomes a value tree, `--set` overrides apply,
/// then the typed parse, whose errors name the dotted field with a did-you-mean hint.
/// Every task config (classification, detection, segmentation) loads through here.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T> {
    let cfg_err = |msg: String| GqcimError::Config { path: origin.to_string(), msg };
    let mut tree: Value =
        serde_yaml::from_str(text).map_err(|e| cfg_err(format!("not valid YAML: {e}")))?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    for o in overrides {
        apply_override(&mut tree, o).map_err(|m| cfg_err(format!("--set {o}: {m}")))?;
    }
    check_numbers(&tree, "").map_err(cfg_err)?;
    crate::device::presets::expand_in_tree(&mut tree, origin).map_err(cfg_err)?;
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner().to_string();
        cfg_err(describe_serde_error(&field, &inner))
    })
}

/// Every number of a config must survive the trip to the f32 tensors it ends up in: finite,
/// and 0 or of magnitude in [f32::MIN_POSITIVE, f32::MAX]. `g_max: 1e39` is finite in f64
/// but infinite in f32, `std: 1e-300` becomes 0 (a division by zero), `.nan` compares false
/// with every range check; each is refused here, naming the dotted field.
fn check_numbers(v: &Value, field: &str) -> std::result::Result<(), String> {
    let name = |k: &str| if field.is_empty() { k.to_string() } else { format!("{field}.{k}") };
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let a = x.abs();
            let field = if field.is_empty() { "<top level>" } else { field };
            if !x.is_finite() {
                return Err(format!("field `{field}`: {x} is not a finite number"));
            }
            if a > f32::MAX as f64 {
                return Err(format!(
                    "field `{field}`: {x} is too large (the largest f32 is {:e})",
                    f32::MAX
                ));
            }
            if a != 0.0 && a < f32::MIN_POSITIVE as f64 {
                return Err(format!(
                    "field `{field}`: {x} is too small to compute with in f32 (nonzero \
                     magnitudes must be >= {:e}); write 0 for zero",
                    f32::MIN_POSITIVE
                ));
            }
            Ok(())
        }
        Value::Mapping(m) => {
            for (k, x) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                check_numbers(x, &name(&key))?;
            }
            Ok(())
        }
        Value::Sequence(s) => {
            for (i, x) in s.iter().enumerate() {
                check_numbers(x, &format!("{field}[{i}]"))?;
            }
            Ok(())
        }
        Value::Tagged(t) => check_numbers(&t.value, field),
        _ => Ok(()),
    }
}

/// Applies one `a.b.c=value` override to the YAML tree; the value is parsed as YAML.
pub fn apply_override(tree: &mut Value, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) =
        assignment.split_once('=').ok_or_else(|| "expected key.path=value".to_string())?;
    if raw.trim().is_empty() {
        // YAML reads "" as null, which would silently reset a whole section to defaults.
        return Err(
            "empty value (write the value after `=`; `null` where a field allows it)".to_string()
        );
    }
    let value: Value =
        serde_yaml::from_str(raw).map_err(|e| format!("value is not valid YAML: {e}"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("empty component in key `{key}`"));
    }
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            _ => return Err(format!("`{}` is not a section", parts[..i].join("."))),
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    Ok(())
}

/// Turns serde's message into one line naming the field, with a did-you-mean for unknown
/// keys and variants ("unknown field `lrr`, expected one of `lr`, ...").
fn describe_serde_error(field: &str, inner: &str) -> String {
    let field = if field == "." || field.is_empty() { "<top level>" } else { field };
    for kind in ["unknown field", "unknown variant"] {
        if let Some(rest) = inner.strip_prefix(kind) {
            let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            if let Some((bad, expected)) = names.split_first() {
                let hint = did_you_mean(bad, expected)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let what = if kind == "unknown field" { "unknown key" } else { "unknown value" };
                let at = if kind == "unknown field" {
                    let parent = field.rsplit_once('.').map(|(p, _)| p).unwrap_or("<top level>");
                    if field.ends_with(bad) {
                        format!("in section `{parent}`")
                    } else {
                        format!("in section `{field}`")
                    }
                } else {
                    format!("for field `{field}`")
                };
                return format!(
                    "{what} `{bad}` {at}{hint} (allowed: {})",
                    expected.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    format!("field `{field}`: {inner}")
}

/// The closest allowed name, when it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(bad: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(bad, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use crate::config::{Arch, Config};

    #[test]
    fn override_sets_nested_value_and_parses_yaml_scalars() {
        let cfg = Config::from_yaml_str(
            "train:\n  epochs: 3\n",
            "t.yaml",
            &["train.lr=0.05".into(), "model.arch=resnet32".into()],
        )
        .unwrap();
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.train.lr, 0.05);
        assert_eq!(cfg.model.arch, Arch::Resnet32);
    }

    #[test]
    fn unknown_key_gets_did_you_mean() {
        let err = Config::from_yaml_str("train:\n  lrr: 0.1\n", "t.yaml", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key `lrr`"), "{msg}");
        assert!(msg.contains("did you mean `lr`"), "{msg}");
        assert!(msg.contains("train"), "{msg}");
    }
}
