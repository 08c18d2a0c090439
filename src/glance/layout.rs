//! Pixel layout of a chart, computed before drawing: title on top, caption at the bottom,
//! legend in its own column to the right of the plot area, so the legend can never hide
//! data. The data area (inside the axes) is read back from plotters after drawing and
//! checked to lie inside the plot area.

/// A pixel rectangle: top-left corner, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    /// Whether the two rectangles share any pixel.
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    pub fn inside(&self, outer: &Rect) -> bool {
        self.x >= outer.x
            && self.y >= outer.y
            && self.right() <= outer.right()
            && self.bottom() <= outer.bottom()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartLayout {
    pub size: (u32, u32),
    pub title: Rect,
    /// The axes with their tick labels and descriptions.
    pub plot: Rect,
    /// Inside the axes, where data is drawn (known after drawing).
    pub data: Rect,
    pub legend: Rect,
    pub caption: Rect,
}

pub const MARGIN: i32 = 12;
pub const TITLE_H: i32 = 34;
pub const CAPTION_LINE_H: i32 = 19;
pub const LEGEND_ROW_H: i32 = 24;
/// Approximate advance of one legend character at the legend's font size.
pub const LEGEND_CHAR_W: i32 = 9;

/// The layout of a `size` chart with `entries` legend rows whose longest label has `chars`
/// characters and `caption_lines` lines of caption.
pub fn chart_layout(
    size: (u32, u32),
    entries: usize,
    chars: usize,
    caption_lines: usize,
) -> ChartLayout {
    let (w, h) = (size.0 as i32, size.1 as i32);
    let title = Rect { x: MARGIN, y: MARGIN, w: w - 2 * MARGIN, h: TITLE_H };
    let cap_h = caption_lines as i32 * CAPTION_LINE_H + 6;
    let caption = Rect { x: MARGIN, y: h - MARGIN - cap_h, w: w - 2 * MARGIN, h: cap_h };
    let legend_w = (56 + LEGEND_CHAR_W * chars as i32).clamp(160, w / 3);
    let top = title.bottom() + 6;
    let avail = caption.y - 6 - top;
    let legend_h = (entries as i32 * LEGEND_ROW_H + 16).min(avail);
    let legend = Rect { x: w - MARGIN - legend_w, y: top + 8, w: legend_w, h: legend_h };
    let plot = Rect { x: MARGIN, y: top, w: legend.x - 16 - MARGIN, h: avail };
    ChartLayout { size, title, plot, data: plot, legend, caption }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_column_is_beside_the_plot() {
        let l = chart_layout((1100, 620), 12, 24, 2);
        assert!(!l.legend.intersects(&l.plot), "{l:?}");
        assert!(!l.caption.intersects(&l.plot) && !l.title.intersects(&l.plot));
        let full = Rect { x: 0, y: 0, w: 1100, h: 620 };
        assert!(l.legend.inside(&full) && l.plot.inside(&full) && l.caption.inside(&full));
        assert!(l.plot.w > 600, "plot area too narrow: {l:?}");
    }
}
