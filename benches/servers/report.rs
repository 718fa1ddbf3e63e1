//! The benchmark's output: markdown tables with every figure's ratio to each
//! anchor, and SVG line charts (plotters).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Column header, with its unit.
    pub name: String,
    /// Whether a ratio column follows it.
    pub ratio: bool,
}

impl Figure {
    /// A figure with a ratio column.
    pub fn ratio(name: &str) -> Self {
        Figure {
            name: name.to_owned(),
            ratio: true,
        }
    }

    /// A figure without one (counts, for which a ratio means nothing).
    pub fn plain(name: &str) -> Self {
        Figure {
            name: name.to_owned(),
            ratio: false,
        }
    }
}

/// A table cell.
#[derive(Debug, Clone)]
pub enum Cell {
    /// A number.
    Value(f64),
    /// Words instead (a server that cannot run the scenario, or waited).
    Text(String),
}

impl Cell {
    /// The number, if it is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            Cell::Text(_) => None,
        }
    }
}

/// A table: one row per server, one column (plus a ratio column) per figure.
#[derive(Debug, Clone)]
pub struct Table {
    /// The heading above it.
    pub title: String,
    /// A sentence under the heading.
    pub note: String,
    /// The columns.
    pub figures: Vec<Figure>,
    /// Server name and its cells, in column order.
    pub rows: Vec<(String, Vec<Cell>)>,
}

impl Table {
    /// A table with no rows yet.
    pub fn new(title: &str, note: &str, figures: Vec<Figure>) -> Self {
        Table {
            title: title.to_owned(),
            note: note.to_owned(),
            figures,
            rows: Vec::new(),
        }
    }

    /// The cell of `server` for the figure at `column`.
    pub fn get(&self, server: &str, column: usize) -> Option<f64> {
        self.rows
            .iter()
            .find(|(name, _)| name == server)
            .and_then(|(_, cells)| cells.get(column))
            .and_then(Cell::value)
    }

    /// Markdown: ratios are this row's figure divided by the anchor's, for
    /// each of `anchors` present in the table.
    pub fn markdown(&self, anchors: &[&str]) -> String {
        let present: Vec<&str> = anchors
            .iter()
            .copied()
            .filter(|a| self.rows.iter().any(|(name, _)| name == a))
            .collect();
        let ratio_header = if present.is_empty() {
            String::new()
        } else {
            format!("÷ {}", present.join(" / "))
        };
        let mut out = String::new();
        let _ = writeln!(out, "### {}\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(out, "{}\n", self.note);
        }
        let mut header = vec!["server".to_owned()];
        for figure in &self.figures {
            header.push(figure.name.clone());
            if figure.ratio && !present.is_empty() {
                header.push(ratio_header.clone());
            }
        }
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for (name, cells) in &self.rows {
            let mut line = vec![name.clone()];
            for (column, figure) in self.figures.iter().enumerate() {
                let cell = cells.get(column);
                line.push(match cell {
                    Some(Cell::Value(v)) => format_value(*v),
                    Some(Cell::Text(t)) => t.clone(),
                    None => "–".into(),
                });
                if figure.ratio && !present.is_empty() {
                    let ratios: Vec<String> = present
                        .iter()
                        .map(|anchor| {
                            match (cell.and_then(Cell::value), self.get(anchor, column)) {
                                (Some(v), Some(a)) if a > 0.0 => format_ratio(v / a),
                                _ => "–".into(),
                            }
                        })
                        .collect();
                    line.push(ratios.join(" / "));
                }
            }
            let _ = writeln!(out, "| {} |", line.join(" | "));
        }
        out
    }
}

/// A figure, to three significant digits or as a whole number.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let whole = v.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

/// A ratio: two decimals below 10, one above.
pub fn format_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// One panel of a chart.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// A stable color per server name.
fn color(name: &str) -> RGBColor {
    const COLORS: [(&str, RGBColor); 8] = [
        ("socketserver sync", RGBColor(148, 103, 189)),
        ("socketserver threading", RGBColor(214, 39, 40)),
        ("socketserver pool", RGBColor(255, 127, 14)),
        ("std threads", RGBColor(31, 119, 180)),
        ("tokio", RGBColor(44, 160, 44)),
        ("CPython", RGBColor(127, 127, 127)),
        ("socketserver framed", RGBColor(214, 39, 40)),
        ("CPython framed", RGBColor(127, 127, 127)),
    ];
    COLORS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(RGBColor(23, 190, 207), |(_, c)| *c)
}

/// Writes `panels` side by side into an SVG at `path`.
pub fn chart(path: &Path, panels: &[Panel]) -> Result<(), Box<dyn std::error::Error>> {
    let width = 560 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64> + Clone, log: bool) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (1.0, 10.0);
    }
    // Headroom above the data for the legend, which sits top left.
    if log {
        let lo = lo.max(1e-9);
        (lo / 1.5, (hi * 3.0).max(lo * 2.0))
    } else {
        (0.0, (hi * 1.25).max(1e-9))
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let xs = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let (x0, x1) = bounds(xs, panel.x_log);
    let (x0, x1) = if panel.x_log {
        (x0, x1)
    } else {
        (x0.min(0.0), x1)
    };
    let (y0, y1) = bounds(ys, panel.y_log);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    // Four combinations of linear and logarithmic axes are four types.
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .y_label_formatter(&|v| format_value(*v))
                .x_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
            for series in &panel.series {
                let c = color(&series.name);
                chart
                    .draw_series(LineSeries::new(series.points.clone(), c.stroke_width(2)))?
                    .label(series.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart.draw_series(
                    series
                        .points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, c.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    match (panel.x_log, panel.y_log) {
        (true, true) => {
            draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?)
        }
        (true, false) => draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (false, true) => draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (false, false) => draw!(builder.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    Ok(())
}

/// Horizontal bars: one row per server, one bar per group (e.g. 1,000 and
/// 10,000 idle connections), the value written at the end of each bar.
#[derive(Debug, Clone)]
pub struct Bars {
    /// Caption.
    pub title: String,
    /// What the bars measure.
    pub x_label: String,
    /// The groups, in bar order within a row.
    pub groups: Vec<String>,
    /// Server name and its value per group.
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

/// Writes `bars` as an SVG at `path`.
pub fn bar_chart(path: &Path, bars: &Bars) -> Result<(), Box<dyn std::error::Error>> {
    let n = bars.rows.len().max(1);
    let groups = bars.groups.len().max(1);
    let height = 90 + 26 * (groups as u32 + 1) * n as u32;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = bars
        .rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let mut chart = ChartBuilder::on(&root)
        .caption(&bars.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max * 1.3, 0.0..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc(bars.x_label.as_str())
        .x_label_formatter(&|v| format_value(*v))
        .draw()?;
    let slot = 0.72 / groups as f64;
    for (i, (name, values)) in bars.rows.iter().enumerate() {
        // The first row at the top.
        let top = (n - i) as f64;
        let c = color(name);
        chart.draw_series(std::iter::once(Text::new(
            name.clone(),
            (max * 0.01, top - 0.05),
            ("sans-serif", 14).into_font().color(&BLACK),
        )))?;
        for (j, value) in values.iter().enumerate() {
            let y1 = top - 0.25 - slot * j as f64;
            let y0 = y1 - slot * 0.85;
            let shade = if j == 0 { c.to_rgba() } else { c.mix(0.45) };
            let label = match value {
                Some(v) => format!(
                    "{} {}",
                    format_value(*v),
                    bars.groups.get(j).map_or("", |g| g.as_str())
                ),
                None => format!("– {}", bars.groups.get(j).map_or("", |g| g.as_str())),
            };
            let v = value.unwrap_or(0.0);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y0), (v, y1)],
                shade.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                label,
                (v + max * 0.01, y1 - 0.02),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}
