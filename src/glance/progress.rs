//! Progress lines of the grid (σ in %, at most `WIDTH` columns) and an ETA from the time
//! spent so far: evaluation seconds per (network, σ) cell and fine-tuning seconds per
//! fine-tuned network are averaged separately, since fine-tuning dominates a row's time.
use super::points::{sigma_pct, GridPoint};

/// Terminal width the grid's output keeps to.
pub const WIDTH: usize = 100;

#[derive(Debug, Default, Clone)]
pub struct Eta {
    eval_s: f64,
    eval_cells: usize,
    tune_s: f64,
    tuned: usize,
}

impl Eta {
    /// Records one finished network: its evaluated cells and fine-tuning time (None when it
    /// was not fine-tuned).
    pub fn record(&mut self, cells: usize, eval_s: f64, tune_s: Option<f64>) {
        self.eval_cells += cells;
        self.eval_s += eval_s;
        if let Some(t) = tune_s {
            self.tuned += 1;
            self.tune_s += t;
        }
    }

    /// Seconds left for `cells` more cells of which `tuned` networks are fine-tuned; None
    /// while there is no measurement for a kind of work that remains.
    pub fn remaining(&self, cells: usize, tuned: usize) -> Option<f64> {
        let eval = if cells == 0 {
            0.0
        } else if self.eval_cells > 0 {
            cells as f64 * self.eval_s / self.eval_cells as f64
        } else {
            return None;
        };
        let tune = if tuned == 0 {
            0.0
        } else if self.tuned > 0 {
            tuned as f64 * self.tune_s / self.tuned as f64
        } else {
            return None;
        };
        Some(eval + tune)
    }
}

/// `45 s`, `12 min`, `2.3 h`.
pub fn duration(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The lines printed when a unit is done: `head` (which unit: `[3/12] gq-qat-N8-s1`), its
/// digital metric, the ETA of the grid (`eta`: None prints none, `Some(None)` "ETA ?" while
/// nothing is measured yet) and its time last, then the σ sweep wrapped to `WIDTH`.
pub fn unit_lines(
    head: &str,
    points: &[GridPoint],
    digital: f64,
    seconds: f64,
    eta: Option<Option<f64>>,
) -> Vec<String> {
    if points.is_empty() {
        return Vec::new();
    }
    let eta = match eta {
        None => String::new(),
        Some(Some(s)) => format!("  ETA {}", duration(s)),
        Some(None) => "  ETA ?".into(),
    };
    let head = format!("{head}  digital {:.2}%{eta}  ({})", 100.0 * digital, duration(seconds));
    let sweep: Vec<String> = points
        .iter()
        .map(|p| {
            let at = match &p.variant {
                Some(v) => format!("σ {}% {v}", sigma_pct(p.sigma)),
                None => format!("σ {}%", sigma_pct(p.sigma)),
            };
            match p.ci_pct() {
                Some(ci) => format!("{at}: {:.2}±{:.2}", p.mean_pct(), ci),
                None => format!("{at}: {:.2}", p.mean_pct()),
            }
        })
        .collect();
    let indent = " ".repeat(6);
    let mut lines = vec![head];
    let mut line = String::new();
    for entry in sweep {
        let len = indent.len() + line.chars().count() + 3 + entry.chars().count();
        if !line.is_empty() && len > WIDTH {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push_str("   ");
        }
        line.push_str(&entry);
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_weights_fine_tuning_separately() {
        let mut e = Eta::default();
        assert_eq!(e.remaining(4, 0), None);
        e.record(4, 8.0, None);
        assert_eq!(e.remaining(4, 0), Some(8.0));
        assert_eq!(e.remaining(4, 1), None, "no fine-tuning measured yet");
        e.record(4, 8.0, Some(100.0));
        assert_eq!(e.remaining(8, 2), Some(16.0 + 200.0));
        assert_eq!(duration(200.0), "3 min");
    }

    #[test]
    fn progress_lines_fit_and_use_percent() {
        let pts: Vec<GridPoint> = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]
            .iter()
            .map(|s| GridPoint {
                method: "uniform-mse".into(),
                levels: 16,
                mode: "qat-noise".into(),
                sigma: *s,
                variant: None,
                policy: None,
                seeds: 1,
                trials: 10,
                mean: 0.9123,
                ci95: 0.0042,
            })
            .collect();
        let head = "[12/133] uniform-mse-qat-noise-N16-sigma10-s1";
        let lines = unit_lines(head, &pts, 0.93, 3600.0, Some(Some(7200.0)));
        assert!(lines.len() >= 2);
        for l in &lines {
            assert!(l.chars().count() <= WIDTH, "{l}");
        }
        assert!(lines[0].contains("ETA 2.0 h") || lines[0].contains("ETA 120 min"), "{lines:?}");
        assert!(lines[0].ends_with("(60 min)"), "the unit's time comes last: {lines:?}");
        let child = unit_lines("unit 3 lsq-qat-N8-s1:", &pts, 0.93, 12.0, None);
        assert!(!child[0].contains("ETA") && child[0].ends_with(" s)"), "{child:?}");
        assert!(lines[1].contains("σ 1%: 91.23±0.42"), "{lines:?}");
    }
}
