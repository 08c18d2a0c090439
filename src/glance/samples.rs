//! The same evaluation samples under every grid network, side by side: for each sample and
//! each N, one picture of the task's common panels (input, ground truth), fp32's prediction
//! and every method's at that N, each captioned with its network, and the task's colour
//! legend below. Logged to the grid's run as `samples/<task>/sample_<i>/N<n>`.
use super::picture::{captioned, grid, stack, Picture};
use crate::tb::Tb;

/// Panels per row before the picture wraps.
pub const COLUMNS: usize = 5;

#[derive(Default)]
pub struct SampleBook {
    /// Per sample: captioned panels shared by all networks.
    pub inputs: Vec<Vec<(String, Picture)>>,
    /// (network label, N or None for fp32, one picture per sample).
    pub nets: Vec<(String, Option<usize>, Vec<Picture>)>,
}

/// Two caption lines for a network: `gq qat-noise` / `N = 8 levels`.
fn net_caption(label: &str, levels: Option<usize>) -> Vec<String> {
    match levels {
        None => vec!["fp32".into(), "32-bit float".into()],
        Some(n) => {
            let head = label.trim_end_matches(&format!("-N{n}")).to_string();
            vec![head, format!("N = {n} levels")]
        }
    }
}

impl SampleBook {
    pub fn add(&mut self, label: String, levels: Option<usize>, pictures: Vec<Picture>) {
        // gq-noise has one network per σ under one label: its first is shown.
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
        for (label, levels, pics) in &self.nets {
            if levels.is_none() || *levels == Some(n) {
                if let Some(p) = pics.get(i) {
                    panels.push(captioned(p, &net_caption(label, *levels)));
                }
            }
        }
        if panels.is_empty() {
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
        tb.flush();
    }
}
