//! Tables and plots for comparison runs: results.csv, a Markdown table (mean ± std), and
//! PNG line charts drawn with plotters.
use plotters::prelude::*;
use std::path::Path;

/// One line of a chart: a label and (x, y, y_err) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Draws y against x for several series, with error bars, into a PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log2_x: bool,
) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let tx = |x: f64| if log2_x { x.log2() } else { x };
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y, e) in pts {
        x0 = x0.min(tx(*x));
        x1 = x1.max(tx(*x));
        y0 = y0.min(y - e);
        y1 = y1.max(y + e);
    }
    if x0 > x1 {
        return Err("nothing to plot".into());
    }
    let pad_x = ((x1 - x0) * 0.05).max(0.1);
    let pad_y = ((y1 - y0) * 0.08).max(0.5);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), (y0 - pad_y)..(y1 + pad_y))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| {
            if log2_x {
                // Label only ticks that land on a whole number of levels.
                let n = 2f64.powf(*v);
                if (n - n.round()).abs() < 0.02 {
                    format!("{:.0}", n.round())
                } else {
                    String::new()
                }
            } else {
                format!("{v:.1}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = s.points.iter().map(|(x, y, _)| (tx(*x), *y)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|(x, y, e)| {
                PathElement::new(vec![(tx(*x), y - e), (tx(*x), y + e)], color.stroke_width(1))
            }))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// A Markdown table from a header and rows.
pub fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", header.join(" | "));
    s.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}
