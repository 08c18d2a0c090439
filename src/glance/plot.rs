//! PNG line charts with an explicit layout (`layout::chart_layout`): the legend sits in its
//! own column beside the axes; a reference (fp32) is a dashed black line with a shaded 95% CI
//! band; each series has capped 95% CI bars, offset horizontally by a few pixels per series
//! so that coincident points stay visible; x ticks sit exactly at the given values (every N,
//! every σ). Colours are Okabe-Ito (colour-blind safe), markers tell fine-tuning modes apart.
use super::layout::{chart_layout, ChartLayout, Rect, LEGEND_ROW_H};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The size of every chart the grid writes.
pub const SIZE: (u32, u32) = (1100, 620);

/// Okabe-Ito colours without black (the reference) and yellow (too light on white).
pub const OKABE_ITO: [RGBColor; 6] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotPoint {
    pub x: f64,
    pub y: f64,
    /// Half-width of the 95% CI; None draws no bar.
    pub ci: Option<f64>,
}

/// What a series draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// A line through the points, a marker at each.
    LineAndMarkers,
    /// Markers only (a scatter).
    Markers,
    /// A line only (e.g. a Pareto front over a scatter drawn separately).
    Line,
}

#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text; a series with an empty label gets no legend entry.
    pub label: String,
    pub colour: RGBColor,
    pub marker: Marker,
    pub draw: Draw,
    pub points: Vec<PlotPoint>,
}

#[derive(Debug, Clone)]
pub enum XAxis {
    /// Level counts on a log2 axis, one labelled tick per N.
    Levels(Vec<usize>),
    /// Linear axis with one labelled tick per value (σ in %).
    Values(Vec<f64>),
    /// A cost on a log10 axis spanning these values, a labelled tick per decade (`1e5`).
    Log10(Vec<f64>),
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub caption: Vec<String>,
    pub x: XAxis,
    pub lines: Vec<Line>,
    /// Dashed black line with a shaded CI band; a single point spans the whole x range.
    pub reference: Option<Line>,
    /// The values the quantity can take (0-100 for a metric in %): the y axis stops one
    /// point beyond them, and a CI bar or band reaching past is cut at the axis.
    pub y_bounds: Option<(f64, f64)>,
}

impl XAxis {
    fn map(&self, x: f64) -> f64 {
        match self {
            XAxis::Levels(_) => x.max(1e-9).log2(),
            XAxis::Values(_) => x,
            XAxis::Log10(_) => x.max(1e-300).log10(),
        }
    }

    /// Series are offset sideways on axes of a few discrete values, where equal values
    /// would hide each other; a continuous cost axis keeps every point where it is.
    fn offsets_series(&self) -> bool {
        !matches!(self, XAxis::Log10(_))
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            XAxis::Levels(ns) => ns.iter().map(|n| ((*n as f64).log2(), n.to_string())).collect(),
            XAxis::Values(v) => {
                v.iter().map(|x| (*x, super::points::sigma_pct(x / 100.0))).collect()
            }
            XAxis::Log10(v) => {
                let logs: Vec<f64> =
                    v.iter().filter(|x| **x > 0.0 && x.is_finite()).map(|x| x.log10()).collect();
                if logs.is_empty() {
                    return Vec::new();
                }
                let lo = logs.iter().copied().fold(f64::MAX, f64::min).floor() as i32;
                let hi = logs.iter().copied().fold(f64::MIN, f64::max).ceil() as i32;
                (lo..=hi.max(lo + 1)).map(|d| (f64::from(d), format!("1e{d}"))).collect()
            }
        }
    }
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `chart` into a PNG at `path` (written to a temporary name, then renamed) and
/// returns its layout, the data area as plotters placed it.
pub fn render(path: &Path, chart: &Chart) -> Result<ChartLayout, String> {
    let tmp = path.with_extension("tmp.png");
    let layout = draw(&tmp, chart)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(layout)
}

fn draw(path: &Path, chart: &Chart) -> Result<ChartLayout, String> {
    let ticks = chart.x.ticks();
    if ticks.is_empty() || chart.lines.iter().all(|l| l.points.is_empty()) {
        return Err("nothing to plot".into());
    }
    let mut entries: Vec<&Line> = chart.reference.iter().collect();
    entries.extend(chart.lines.iter());
    let chars = entries.iter().map(|l| l.label.chars().count()).max().unwrap_or(8);
    let rows = entries.iter().filter(|l| !l.label.is_empty()).count();
    let mut layout = chart_layout(SIZE, rows, chars, chart.caption.len());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    root.draw_text(
        &chart.title,
        &("sans-serif", 24).into_font().color(&BLACK),
        (layout.title.x, layout.title.y + 4),
    )
    .map_err(err)?;
    for (i, line) in chart.caption.iter().enumerate() {
        let y = layout.caption.y + 4 + i as i32 * super::layout::CAPTION_LINE_H;
        root.draw_text(
            line,
            &("sans-serif", 15).into_font().color(&RGBColor(60, 60, 60)),
            (layout.caption.x, y),
        )
        .map_err(err)?;
    }

    // Ranges: every tick, every point with its CI, the reference band.
    let (tx0, tx1) =
        ticks.iter().fold((f64::MAX, f64::MIN), |(a, b), (t, _)| (a.min(*t), b.max(*t)));
    let pad_x = ((tx1 - tx0) * 0.06).max(0.25);
    let (x0, x1) = (tx0 - pad_x, tx1 + pad_x);
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for p in entries.iter().flat_map(|l| l.points.iter()).filter(|p| p.y.is_finite()) {
        let e = p.ci.unwrap_or(0.0);
        y0 = y0.min(p.y - e);
        y1 = y1.max(p.y + e);
    }
    if y0 > y1 {
        return Err("no finite values to plot".into());
    }
    let pad_y = ((y1 - y0) * 0.08).max(0.5);
    let (mut y0, mut y1) = (y0 - pad_y, y1 + pad_y);
    if let Some((lo, hi)) = chart.y_bounds {
        y0 = y0.max(lo - 1.0);
        y1 = y1.min(hi + 1.0);
    }

    let p = layout.plot;
    let plot_area = root.clone().shrink((p.x, p.y), (p.w, p.h));
    let mut ctx = ChartBuilder::on(&plot_area)
        .margin(8)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_max_light_lines(1)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(err)?;
    let (xr, yr) = ctx.plotting_area().get_pixel_range();
    layout.data = Rect { x: xr.start, y: yr.start, w: xr.end - xr.start, h: yr.end - yr.start };
    // Data units per pixel, for pixel-sized offsets and caps.
    let per_px = (x1 - x0) / f64::from(layout.data.w.max(1));

    // x ticks: a light grid line and a label at each value.
    let tick_style = ("sans-serif", 15).into_font().color(&BLACK);
    for (t, label) in &ticks {
        ctx.draw_series(std::iter::once(PathElement::new(
            vec![(*t, y0), (*t, y1)],
            RGBColor(225, 225, 225).stroke_width(1),
        )))
        .map_err(err)?;
        let (px, py) = ctx.plotting_area().map_coordinate(&(*t, y0));
        let (w, _) = root.estimate_text_size(label, &tick_style).map_err(err)?;
        root.draw_text(label, &tick_style, (px - w as i32 / 2, py + 8)).map_err(err)?;
    }

    if let Some(r) = &chart.reference {
        let pts: Vec<(f64, f64, f64)> = if r.points.len() == 1 {
            let q = r.points[0];
            vec![(x0, q.y, q.ci.unwrap_or(0.0)), (x1, q.y, q.ci.unwrap_or(0.0))]
        } else {
            r.points.iter().map(|q| (chart.x.map(q.x), q.y, q.ci.unwrap_or(0.0))).collect()
        };
        if pts.iter().any(|q| q.2 > 0.0) {
            let mut band: Vec<(f64, f64)> = pts.iter().map(|q| (q.0, q.1 + q.2)).collect();
            band.extend(pts.iter().rev().map(|q| (q.0, q.1 - q.2)));
            ctx.draw_series(std::iter::once(Polygon::new(band, BLACK.mix(0.12).filled())))
                .map_err(err)?;
        }
        ctx.draw_series(DashedLineSeries::new(
            pts.iter().map(|q| (q.0, q.1)),
            10,
            6,
            BLACK.stroke_width(2),
        ))
        .map_err(err)?;
    }

    let k = chart.lines.len() as f64;
    for (i, l) in chart.lines.iter().enumerate() {
        let dx = if chart.x.offsets_series() {
            (i as f64 - (k - 1.0) / 2.0) * 7.0 * per_px
        } else {
            0.0
        };
        let cap = 4.0 * per_px;
        let pts: Vec<(f64, f64, Option<f64>)> = l
            .points
            .iter()
            .filter(|q| q.y.is_finite())
            .map(|q| (chart.x.map(q.x) + dx, q.y, q.ci))
            .collect();
        let style = l.colour.stroke_width(2);
        if l.draw != Draw::Markers {
            ctx.draw_series(LineSeries::new(pts.iter().map(|q| (q.0, q.1)), style)).map_err(err)?;
        }
        for (x, y, ci) in &pts {
            if let Some(e) = ci.filter(|e| *e > 0.0) {
                let s = l.colour.stroke_width(1);
                ctx.draw_series([
                    PathElement::new(vec![(*x, y - e), (*x, y + e)], s),
                    PathElement::new(vec![(x - cap, y - e), (x + cap, y - e)], s),
                    PathElement::new(vec![(x - cap, y + e), (x + cap, y + e)], s),
                ])
                .map_err(err)?;
            }
            if l.draw != Draw::Line {
                let c = ctx.plotting_area().map_coordinate(&(*x, *y));
                marker(&root, l.marker, c, l.colour)?;
            }
        }
    }
    draw_legend(&root, &layout.legend, chart)?;
    root.present().map_err(err)?;
    Ok(layout)
}

fn marker(
    root: &DrawingArea<BitMapBackend, Shift>,
    m: Marker,
    (x, y): (i32, i32),
    c: RGBColor,
) -> Result<(), String> {
    let fill = c.filled();
    let r = 5;
    match m {
        Marker::Circle => root.draw(&Circle::new((x, y), r, fill)),
        Marker::Square => root.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], fill)),
        Marker::Triangle => root.draw(&Polygon::new(
            vec![(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)],
            fill,
        )),
        Marker::Diamond => root.draw(&Polygon::new(
            vec![(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)],
            fill,
        )),
    }
    .map_err(err)
}

fn draw_legend(
    root: &DrawingArea<BitMapBackend, Shift>,
    r: &Rect,
    chart: &Chart,
) -> Result<(), String> {
    root.draw(&Rectangle::new([(r.x, r.y), (r.right(), r.bottom())], WHITE.filled()))
        .map_err(err)?;
    root.draw(&Rectangle::new([(r.x, r.y), (r.right(), r.bottom())], BLACK.stroke_width(1)))
        .map_err(err)?;
    let font = ("sans-serif", 15).into_font().color(&BLACK);
    let mut y = r.y + 8 + LEGEND_ROW_H / 2;
    let x = r.x + 10;
    if let Some(refl) = &chart.reference {
        root.draw(&Rectangle::new([(x, y - 6), (x + 34, y + 6)], BLACK.mix(0.12).filled()))
            .map_err(err)?;
        for s in [x, x + 14, x + 28] {
            root.draw(&PathElement::new(
                vec![(s, y), ((s + 8).min(x + 34), y)],
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
        }
        root.draw_text(&refl.label, &font, (x + 44, y - 8)).map_err(err)?;
        y += LEGEND_ROW_H;
    }
    for l in chart.lines.iter().filter(|l| !l.label.is_empty()) {
        if y + LEGEND_ROW_H / 2 > r.bottom() {
            break;
        }
        if l.draw != Draw::Markers {
            root.draw(&PathElement::new(vec![(x, y), (x + 34, y)], l.colour.stroke_width(2)))
                .map_err(err)?;
        }
        if l.draw != Draw::Line {
            marker(root, l.marker, (x + 17, y), l.colour)?;
        }
        root.draw_text(&l.label, &font, (x + 44, y - 8)).map_err(err)?;
        y += LEGEND_ROW_H;
    }
    Ok(())
}
