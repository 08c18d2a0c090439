//! The grid's results as tables: Markdown (table.md, TensorBoard's text summary) with a
//! Δ-vs-fp32 column per σ, and a fixed-width terminal table that fits `width` columns
//! (σ columns wrap into blocks). σ is in % everywhere; CIs are shown from `MIN_CI_TRIALS`.
use super::points::{
    delta_pct, short_metric, sigma_pct, some_ci_withheld, trial_summary, GridPoint, MIN_CI_TRIALS,
};

/// Rows of the table: one per network, in grid order (fp32 first when present).
fn rows<'a>(points: &'a [GridPoint], sigmas: &[f64]) -> Vec<Vec<Option<&'a GridPoint>>> {
    let mut nets: Vec<String> = Vec::new();
    for p in points {
        if !nets.contains(&p.net_label()) {
            nets.push(p.net_label());
        }
    }
    nets.iter()
        .map(|n| {
            sigmas
                .iter()
                .map(|s| points.iter().find(|p| &p.net_label() == n && p.sigma == *s))
                .collect()
        })
        .collect()
}

fn value(p: &GridPoint) -> String {
    match p.ci_pct() {
        Some(ci) => format!("{:.2} ± {:.2}", p.mean_pct(), ci),
        None if p.replications() > 1 => format!("{:.2}†", p.mean_pct()),
        None => format!("{:.2}", p.mean_pct()),
    }
}

fn delta(p: &GridPoint, points: &[GridPoint]) -> String {
    delta_pct(p, points).map(|d| format!("{d:+.2}")).unwrap_or_else(|| "–".into())
}

/// What the numbers are, for the line above either table.
pub fn legend_line(points: &[GridPoint], metric: &str) -> String {
    let mut s = format!(
        "{metric} on the crossbar: mean ± 95% CI of the mean (Student t), {}; σ = 0 is one \
         trial when the device is ideal there. σ = programming noise in % of the conductance \
         window. Δ = difference from fp32 at the same σ (percentage points).",
        trial_summary(points)
    );
    if some_ci_withheld(points) {
        s.push_str(&format!(
            " † = fewer than {MIN_CI_TRIALS} replications (seeds, or trials of one seed): \
             no CI reported (t with 1 dof is 12.7)."
        ));
    }
    s
}

/// table.md: method | N | fine-tuning | then `σ = s%` and `Δ` per σ.
pub fn markdown(points: &[GridPoint], metric: &str, sigmas: &[f64]) -> String {
    let mut header = vec!["method".to_string(), "N".into(), "fine-tuning".into()];
    let variants = points.iter().any(|p| p.variant.is_some());
    if variants {
        header.push("programming".into());
    }
    for s in sigmas {
        header.push(format!("σ = {}%", sigma_pct(*s)));
        header.push(format!("Δ {}%", sigma_pct(*s)));
    }
    let mut out = format!("{}\n\n", legend_line(points, metric));
    out.push_str(&format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len())));
    for row in rows(points, sigmas) {
        let Some(f) = row.iter().flatten().next() else { continue };
        let (n, mode) = if f.is_fp32() {
            ("32-bit float".to_string(), "-".to_string())
        } else {
            (f.levels.to_string(), f.mode.clone())
        };
        // A layer policy names its kept layers in the method column: `gq (fp32: conv1, fc)`.
        let method = match f.policy.as_deref().filter(|k| !k.is_empty()) {
            Some(kept) => format!("{} (fp32: {})", f.method, kept.replace('+', ", ")),
            None => f.method.clone(),
        };
        let mut r = vec![method, n, mode];
        if variants {
            r.push(f.variant.clone().unwrap_or_default());
        }
        for c in &row {
            match c {
                Some(p) => {
                    r.push(value(p));
                    r.push(delta(p, points));
                }
                None => r.extend(["".to_string(), "".to_string()]),
            }
        }
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// Words of `text` wrapped to `width` columns.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.chars().count() + 1 + w.chars().count() > width {
            lines.push(w.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(w);
        }
    }
    lines
}

/// Row name of the terminal table: `fp32 (32-bit float)`, `gq qat N=8`, then the
/// programming variant when the grid has several.
fn row_name(p: &GridPoint) -> String {
    let mut name = if p.is_fp32() {
        "fp32 (32-bit float)".into()
    } else {
        format!("{} {} N={}", p.method, p.mode, p.levels)
    };
    if let Some(kept) = p.policy.as_deref().filter(|k| !k.is_empty()) {
        name.push_str(&format!(" (fp32: {})", kept.replace('+', ", ")));
    }
    match &p.variant {
        Some(v) => format!("{name} {v}"),
        None => name,
    }
}

/// The terminal table: a name column, then per σ `mean ± ci  Δ`, in blocks of as many σ
/// columns as fit `width` characters.
pub fn terminal(points: &[GridPoint], metric: &str, sigmas: &[f64], width: usize) -> String {
    let table = rows(points, sigmas);
    let names: Vec<String> = table
        .iter()
        .map(|r| r.iter().flatten().next().map(|p| row_name(p)).unwrap_or_default())
        .collect();
    let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(7);
    let cells: Vec<Vec<String>> = table
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Some(p) => {
                        let v = value(p).replace(" ± ", "±");
                        if p.is_fp32() {
                            v
                        } else {
                            format!("{v} {}", delta(p, points))
                        }
                    }
                    None => String::new(),
                })
                .collect()
        })
        .collect();
    let col_w = cells.iter().flatten().map(|c| c.chars().count()).max().unwrap_or(8).max(9);
    let per_block = ((width.saturating_sub(name_w)) / (col_w + 3)).max(1);
    let mut out = String::new();
    for l in wrap(&legend_line(points, short_metric(metric)), width) {
        out.push_str(&l);
        out.push('\n');
    }
    for start in (0..sigmas.len()).step_by(per_block) {
        let end = (start + per_block).min(sigmas.len());
        out.push('\n');
        let mut head = format!("{:<name_w$}", "network");
        for s in &sigmas[start..end] {
            head.push_str(&format!(" │ {:<col_w$}", format!("σ = {}%  (Δ)", sigma_pct(*s))));
        }
        out.push_str(head.trim_end());
        out.push('\n');
        out.push_str(&"─".repeat(name_w + (end - start) * (col_w + 3)));
        out.push('\n');
        for (name, row) in names.iter().zip(&cells) {
            let mut line = format!("{name:<name_w$}");
            for c in &row[start..end] {
                line.push_str(&format!(" │ {c:<col_w$}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(trials: usize) -> Vec<GridPoint> {
        let sigmas = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];
        let mut v = Vec::new();
        for (m, mode, n) in [("fp32", "ptq", 32), ("uniform-mse", "qat-noise", 8), ("gq", "qat", 3)]
        {
            for s in sigmas {
                v.push(GridPoint {
                    method: m.into(),
                    levels: n,
                    mode: mode.into(),
                    sigma: s,
                    variant: None,
                    policy: None,
                    seeds: 1,
                    trials: if s == 0.0 { 1 } else { trials },
                    mean: 0.9 - s - if m == "fp32" { 0.0 } else { 0.01 },
                    ci95: 0.0123,
                });
            }
        }
        v
    }

    #[test]
    fn terminal_table_fits_100_columns_and_shows_delta() {
        let pts = grid(5);
        let sig = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];
        let t = terminal(&pts, "top-1 accuracy (%)", &sig, 100);
        for l in t.lines() {
            assert!(l.chars().count() <= 100, "{} columns: {l}", l.chars().count());
        }
        assert!(t.contains("fp32 (32-bit float)") && !t.contains("N=32"), "{t}");
        assert!(t.contains("-1.00"), "Δ of -1 point missing: {t}");
        assert!(t.contains("89.00±1.23"), "{t}");
        assert!(t.contains("σ = 20%"), "{t}");
    }

    #[test]
    fn markdown_has_delta_columns_and_marks_two_trial_cells() {
        let pts = grid(2);
        let md = markdown(&pts, "mIoU (%)", &[0.0, 0.05]);
        assert!(md.contains("| Δ 5% |"), "{md}");
        assert!(md.contains("| 32-bit float | - |"), "{md}");
        assert!(md.contains("84.00† | -1.00"), "{md}");
        assert!(md.contains("† = fewer than 3 replications"), "{md}");
        assert!(!md.contains("± 1.23"), "no CI with 2 trials: {md}");
    }
}
