//! Plots drawn with plotters, each once for any backend and written as SVG and PNG: line charts
//! (with optional 95 % intervals and a threshold), horizontal bar charts, and timelines (sequence
//! diagrams of actors over time). Text comes from the DejaVu Sans font embedded in the binary.
//!
//! Depends on `plotters` and `dejavu` only.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

/// The size of every plot's chart, in pixels; a line chart with many series adds its legend below.
pub const SIZE: (u32, u32) = (900, 480);
/// The most legend entries drawn inside a line chart's plotting area; more go below it.
const LEGEND_INSIDE_MAX: usize = 5;
/// The height of one row of a legend drawn below a chart, in pixels, and its columns.
const LEGEND_ROW_HEIGHT: u32 = 18;
const LEGEND_COLUMNS: usize = 2;
/// The most series a line chart draws (a sweep's configurations), so its legend stays bounded.
const SERIES_MAX: usize = 64;
/// The most timeline entries drawn.
const TIMELINE_ENTRIES_MAX: usize = 80;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Whether series `index` is marked by hollow circles: the second round of the palette is told
/// from the first by its marks.
fn hollow(index: usize) -> bool {
    (index / PALETTE.len()) % 2 == 1
}

/// The size of a plot in pixels: the chart, and below it the legend of a line chart whose entries
/// would cover the plotting area.
pub fn size(plot: &Plot) -> (u32, u32) {
    match plot {
        Plot::Lines(chart) => {
            let rows = legend_below(chart).len().div_ceil(LEGEND_COLUMNS) as u32;
            let legend = if rows == 0 {
                0
            } else {
                rows * LEGEND_ROW_HEIGHT + 16
            };
            (SIZE.0, SIZE.1 + legend)
        }
        _ => SIZE,
    }
}

/// A legend entry: its text, its colour and whether its marks are hollow (a threshold has none).
struct LegendEntry<'a> {
    name: &'a str,
    color: RGBColor,
    marks: Option<bool>,
}

/// The legend entries of a line chart that go below it (none when few enough to go inside).
fn legend_below(plot: &LineChart) -> Vec<LegendEntry<'_>> {
    let count = plot.series.len().min(SERIES_MAX) + usize::from(plot.threshold.is_some());
    if count <= LEGEND_INSIDE_MAX {
        return Vec::new();
    }
    let series = plot.series.iter().take(SERIES_MAX).enumerate();
    let mut entries: Vec<LegendEntry<'_>> = series
        .map(|(index, series)| LegendEntry {
            name: &series.name,
            color: color(index),
            marks: Some(hollow(index)),
        })
        .collect();
    if let Some((name, _)) = &plot.threshold {
        entries.push(LegendEntry {
            name,
            color: BLACK,
            marks: None,
        });
    }
    entries
}

/// Draws legend entries in columns on `area`, the strip below a chart.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Drawn {
    let column_width = (SIZE.0 as usize / LEGEND_COLUMNS) as i32;
    for (k, entry) in entries.iter().enumerate() {
        let x = 12 + (k % LEGEND_COLUMNS) as i32 * column_width;
        let y = 8 + (k / LEGEND_COLUMNS) as i32 * LEGEND_ROW_HEIGHT as i32 + 8;
        area.draw(&PathElement::new(
            vec![(x, y), (x + 24, y)],
            entry.color.stroke_width(2),
        ))
        .map_err(text_error)?;
        if let Some(hollow) = entry.marks {
            let style = if hollow {
                entry.color.stroke_width(1)
            } else {
                entry.color.filled()
            };
            area.draw(&Circle::new((x + 12, y), 3, style))
                .map_err(text_error)?;
        }
        area.draw(&Text::new(
            entry.name.to_string(),
            (x + 32, y - 7),
            ("sans-serif", 12),
        ))
        .map_err(text_error)?;
    }
    Ok(())
}

/// A series of a line chart: points and, optionally, a 95 % interval at each.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub intervals: Vec<(f64, f64, f64)>,
}

pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A horizontal line, e.g. an objective.
    pub threshold: Option<(String, f64)>,
}

pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub categories: Vec<String>,
    /// Named groups of one value per category.
    pub groups: Vec<(String, Vec<f64>)>,
}

/// One entry of a timeline: when, which lane, and what.
pub struct Mark {
    pub at_s: f64,
    pub lane: String,
    pub label: String,
}

pub struct Timeline {
    pub title: String,
    pub marks: Vec<Mark>,
}

pub enum Plot {
    Lines(LineChart),
    Bars(BarChart),
    Timeline(Timeline),
}

fn fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let bytes = match style {
                FontStyle::Bold => dejavu::sans::bold(),
                _ => dejavu::sans::regular(),
            };
            plotters::style::register_font("sans-serif", style, bytes)
                .unwrap_or_else(|_| panic!("the embedded font parses"));
        }
    });
}

type Drawn = Result<(), String>;

fn text_error<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

fn range(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for value in values.filter(|v| v.is_finite()) {
        low = low.min(value);
        high = high.max(value);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        low = low.min(0.0);
    }
    if high - low < 1e-9 {
        high = low + 1.0;
    }
    let pad = (high - low) * 0.05;
    (if from_zero { low } else { low - pad }, high + pad)
}

/// The axes' ranges of a line chart: every point, interval end and the threshold.
fn line_ranges(plot: &LineChart) -> ((f64, f64), (f64, f64)) {
    let xs = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = plot.series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.intervals.iter().flat_map(|i| [i.1, i.2]))
    });
    let threshold = plot.threshold.iter().map(|t| t.1);
    (range(xs, false), range(ys.chain(threshold), true))
}

fn draw_lines<DB: DrawingBackend>(whole: &DrawingArea<DB, Shift>, plot: &LineChart) -> Drawn {
    whole.fill(&WHITE).map_err(text_error)?;
    let below = legend_below(plot);
    let (root, legend) = whole.split_vertically(SIZE.1);
    let root = &root;
    let ((x0, x1), (y0, y1)) = line_ranges(plot);
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(text_error)?;
    for (index, series) in plot.series.iter().take(SERIES_MAX).enumerate() {
        let style = color(index).stroke_width(2);
        chart
            .draw_series(LineSeries::new(series.points.iter().copied(), style))
            .map_err(text_error)?
            .label(&series.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color(index)));
        chart
            .draw_series(series.points.iter().map(|p| {
                let style = if hollow(index) {
                    color(index).stroke_width(1)
                } else {
                    color(index).filled()
                };
                Circle::new(*p, 3, style)
            }))
            .map_err(text_error)?;
        chart
            .draw_series(series.intervals.iter().map(|(x, low, high)| {
                PathElement::new(vec![(*x, *low), (*x, *high)], color(index).stroke_width(1))
            }))
            .map_err(text_error)?;
    }
    if let Some((name, value)) = &plot.threshold {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, *value), (x1, *value)],
                BLACK.stroke_width(1),
            )))
            .map_err(text_error)?
            .label(name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    if below.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(text_error)?;
    } else {
        draw_legend(&legend, &below)?;
    }
    whole.present().map_err(text_error)
}

fn draw_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &BarChart) -> Drawn {
    root.fill(&WHITE).map_err(text_error)?;
    let values = plot.groups.iter().flat_map(|(_, v)| v.iter().copied());
    let (_, x1) = range(values, true);
    let n = plot.categories.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..x1, 0.0..n)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_labels(0)
        .disable_y_mesh()
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(text_error)?;
    let groups = plot.groups.len().max(1) as f64;
    for (g, (name, values)) in plot.groups.iter().enumerate() {
        let bars = values.iter().enumerate().map(|(i, value)| {
            let top = n - i as f64 - 0.1 - 0.8 * g as f64 / groups;
            let bottom = top - 0.8 / groups;
            Rectangle::new([(0.0, bottom), (*value, top)], color(g).mix(0.8).filled())
        });
        chart
            .draw_series(bars)
            .map_err(text_error)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color(g).filled()));
    }
    let labels = plot.categories.iter().enumerate().map(|(i, name)| {
        Text::new(
            name.clone(),
            (x1 * 0.01, n - i as f64 - 0.5),
            ("sans-serif", 13).into_font(),
        )
    });
    chart.draw_series(labels).map_err(text_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text_error)?;
    root.present().map_err(text_error)
}

fn draw_timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Timeline) -> Drawn {
    root.fill(&WHITE).map_err(text_error)?;
    let marks = &plot.marks[..plot.marks.len().min(TIMELINE_ENTRIES_MAX)];
    let mut lanes: Vec<&str> = Vec::new();
    for mark in marks {
        if !lanes.contains(&mark.lane.as_str()) {
            lanes.push(&mark.lane);
        }
    }
    let (x0, x1) = range(marks.iter().map(|m| m.at_s), false);
    let n = lanes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(x0..x1, 0.0..n)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_labels(0)
        .disable_y_mesh()
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(text_error)?;
    let lane_y = |lane: &str| n - lanes.iter().position(|l| *l == lane).unwrap_or(0) as f64 - 0.5;
    let lines = lanes
        .iter()
        .map(|lane| PathElement::new(vec![(x0, lane_y(lane)), (x1, lane_y(lane))], BLACK.mix(0.2)));
    chart.draw_series(lines).map_err(text_error)?;
    let names = lanes.iter().map(|lane| {
        Text::new(
            lane.to_string(),
            (x0, lane_y(lane) + 0.25),
            ("sans-serif", 12).into_font(),
        )
    });
    chart.draw_series(names).map_err(text_error)?;
    let steps = marks.windows(2).map(|pair| {
        PathElement::new(
            vec![
                (pair[0].at_s, lane_y(&pair[0].lane)),
                (pair[1].at_s, lane_y(&pair[1].lane)),
            ],
            BLUE.mix(0.4),
        )
    });
    chart.draw_series(steps).map_err(text_error)?;
    let dots = marks
        .iter()
        .enumerate()
        .map(|(i, mark)| Circle::new((mark.at_s, lane_y(&mark.lane)), 4, color(i % 3).filled()));
    chart.draw_series(dots).map_err(text_error)?;
    let labels = marks.iter().enumerate().map(|(i, mark)| {
        let offset = if i % 2 == 0 { 0.12 } else { -0.28 };
        Text::new(
            mark.label.clone(),
            (mark.at_s, lane_y(&mark.lane) + offset),
            ("sans-serif", 10).into_font(),
        )
    });
    chart.draw_series(labels).map_err(text_error)?;
    root.present().map_err(text_error)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plot: &Plot) -> Drawn {
    match plot {
        Plot::Lines(chart) => draw_lines(&root, chart),
        Plot::Bars(chart) => draw_bars(&root, chart),
        Plot::Timeline(chart) => draw_timeline(&root, chart),
    }
}

/// The plot as an SVG document.
pub fn svg(plot: &Plot) -> Result<String, String> {
    fonts();
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, size(plot)).into_drawing_area(),
        plot,
    )?;
    Ok(text)
}

/// The plot as a PNG file at `path`.
pub fn png(plot: &Plot, path: &std::path::Path) -> Result<(), String> {
    fonts();
    draw(
        BitMapBackend::new(path, size(plot)).into_drawing_area(),
        plot,
    )
}
