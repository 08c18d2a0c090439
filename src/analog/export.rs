//! Export of each layer's level table and target conductance matrices, split into crossbar
//! tiles, as safetensors plus a JSON index, so that a chip could be programmed from them.
//!
//! Crossbar orientation: rows are inputs (a conv's (channel, ky, kx) taps, a linear layer's
//! features), columns are outputs; G[rows, cols] = W.reshape(c_out, -1)ᵀ mapped to µS.
use super::device::map_to_pairs;
use super::tiling::row_tiles;
use crate::checkpoint::{write_json_atomic, write_tensors_atomic};
use crate::config::AnalogConfig;
use crate::error::Result;
use crate::nets::Network;
use serde_json::{json, Map, Value};
use std::path::Path;
use tch::{Kind, Tensor};

/// Writes `conductances.safetensors` and `index.json` into `out`; returns the index.
pub fn export_crossbars(net: &Network, cfg: &AnalogConfig, out: &Path) -> Result<Value> {
    std::fs::create_dir_all(out)
        .map_err(|e| crate::error::file_err(out, "create the folder", e))?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut layers = Map::new();
    for l in net.layers.layers() {
        let w = l.effective_weight().detach().to_kind(Kind::Float);
        let c_out = w.size()[0];
        let pairs = map_to_pairs(&w, cfg.g_min, cfg.g_max, cfg.per_column_scale);
        let gp = pairs.g_pos.reshape([c_out, -1]).tr().contiguous();
        let gn = pairs.g_neg.reshape([c_out, -1]).tr().contiguous();
        let (rows, cols) = (gp.size()[0], gp.size()[1]);
        // Row tiles as the periphery splits the layer (`tiling.rs`, `analog.tile_split`).
        let taps: i64 = w.size()[2..].iter().product::<i64>().max(1);
        let mut tiles = Vec::new();
        for (ti, (r0, nr)) in
            row_tiles(rows, taps, cfg.tile_rows, cfg.tile_split).into_iter().enumerate()
        {
            let mut c0 = 0;
            while c0 < cols {
                let nc = cfg.tile_cols.min(cols - c0);
                let tj = c0 / cfg.tile_cols;
                let kp = format!("{}/g_pos/r{ti}_c{tj}", l.spec.name);
                let kn = format!("{}/g_neg/r{ti}_c{tj}", l.spec.name);
                tensors.push((kp.clone(), gp.narrow(0, r0, nr).narrow(1, c0, nc).contiguous()));
                tensors.push((kn.clone(), gn.narrow(0, r0, nr).narrow(1, c0, nc).contiguous()));
                tiles.push(
                    json!({"rows": [r0, r0 + nr], "cols": [c0, c0 + nc], "g_pos": kp, "g_neg": kn}),
                );
                c0 += nc;
            }
        }
        // The level table: each distinct weight and the conductance pair that encodes it.
        let levels = w.flatten(0, -1).unique_dim(0, true, false, false).0;
        let level_table = if levels.size()[0] <= 256 && !cfg.per_column_scale {
            let lv = Vec::<f64>::try_from(levels.to_kind(Kind::Double)).unwrap_or_default();
            let alpha = w.abs().max().double_value(&[]) / (cfg.g_max - cfg.g_min);
            let gpl = Vec::<f64>::try_from(
                (levels.clamp_min(0.0) / alpha + cfg.g_min).to_kind(Kind::Double),
            )
            .unwrap_or_default();
            let gnl = Vec::<f64>::try_from(
                ((-&levels).clamp_min(0.0) / alpha + cfg.g_min).to_kind(Kind::Double),
            )
            .unwrap_or_default();
            json!(lv
                .iter()
                .zip(gpl.iter().zip(&gnl))
                .map(|(w, (p, n))| json!({"weight": w, "g_pos_uS": p, "g_neg_uS": n}))
                .collect::<Vec<_>>())
        } else {
            json!(format!("{} distinct values (not a level table)", levels.size()[0]))
        };
        layers.insert(
            l.spec.name.clone(),
            json!({
                "weight_shape": w.size(),
                "crossbar_shape": [rows, cols],
                "alpha_uS_to_weight": Vec::<f64>::try_from(pairs.alpha.flatten(0, -1).to_kind(Kind::Double)).unwrap_or_default(),
                "source": l.describe(),
                "levels": level_table,
                "tiles": tiles,
            }),
        );
    }
    write_tensors_atomic(&tensors, &out.join("conductances.safetensors"))?;
    let index = json!({
        "format": "gqcim crossbar export v1",
        "units": "microsiemens",
        "g_min": cfg.g_min, "g_max": cfg.g_max,
        "tile_rows": cfg.tile_rows, "tile_cols": cfg.tile_cols,
        "per_column_scale": cfg.per_column_scale,
        "orientation": "G[rows = inputs, cols = outputs] = W.reshape(c_out, -1).T; w = alpha*(G+ - G-)",
        "tensors": "conductances.safetensors",
        "layers": layers,
    });
    write_json_atomic(&out.join("index.json"), &index)?;
    Ok(index)
}
