//! How a layer's crossbar rows are split into tiles: one rule for the periphery's partial
//! sums, the cost model's tile count and the conductance export, so that the three describe
//! the same chip.
//!
//! A layer's rows are its fan-in in (channel, ky, kx) order for a conv (`taps` = kh·kw rows
//! per input channel), its features for a linear layer (`taps` = 1); the cost model and the
//! export split each group of a grouped conv alike, while the periphery runs a grouped conv
//! as one tile (a group is its own small crossbar; its rows rarely exceed one tile: 9 for a
//! depthwise 3x3 conv). `TileSplit::Channels` (the default) fills tiles with whole
//! channels in order; `TileSplit::Balanced` is aihwkit's `TileModuleArray`: ⌈rows /
//! tile_rows⌉ tiles of equal rows, a boundary possibly inside a channel's taps.
use crate::config::TileSplit;

/// The row tiles of `rows` rows with `taps` rows per input channel, as (first row, rows).
pub fn row_tiles(rows: i64, taps: i64, tile_rows: i64, split: TileSplit) -> Vec<(i64, i64)> {
    let rows = rows.max(0);
    let taps = taps.max(1);
    let tile_rows = tile_rows.max(1);
    if rows == 0 {
        return Vec::new();
    }
    let sizes: Vec<i64> = match split {
        TileSplit::Balanced => {
            let n = (rows + tile_rows - 1) / tile_rows;
            let (base, extra) = (rows / n, rows % n);
            (0..n).map(|i| base + i64::from(i < extra)).collect()
        }
        TileSplit::Channels => {
            // At least one whole channel per tile, even where its taps exceed `tile_rows`.
            let per = (tile_rows / taps).max(1) * taps;
            let n = (rows + per - 1) / per;
            (0..n).map(|i| per.min(rows - i * per)).collect()
        }
    };
    let mut start = 0;
    sizes
        .into_iter()
        .map(|len| {
            let tile = (start, len);
            start += len;
            tile
        })
        .collect()
}

/// One tile of a layer: its rows (first, count) and the input channels they touch
/// (first, count); `partial` when it holds only some taps of its first or last channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSpan {
    pub rows: (i64, i64),
    pub channels: (i64, i64),
    pub partial: bool,
}

impl TileSpan {
    pub fn new((start, len): (i64, i64), taps: i64) -> TileSpan {
        let taps = taps.max(1);
        let first = start / taps;
        let end = (start + len + taps - 1) / taps;
        TileSpan {
            rows: (start, len),
            channels: (first, end - first),
            partial: start % taps != 0 || (start + len) % taps != 0,
        }
    }
}

/// The tiles of a layer with `c_in` input channels (per group) of `taps` rows each.
pub fn layer_spans(c_in: i64, taps: i64, tile_rows: i64, split: TileSplit) -> Vec<TileSpan> {
    row_tiles(c_in * taps.max(1), taps, tile_rows, split)
        .into_iter()
        .map(|rows| TileSpan::new(rows, taps))
        .collect()
}
