//! PNG charts under bench/charts/ (target/bench-partial/charts/ for a
//! partial run): a line chart (a figure by concurrency,
//! one line per peer) and a bar chart of the ratios ours/peer.

use std::path::PathBuf;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::model::{human, Cell, Chart, Ratio};
use super::Ctx;

/// The font every chart uses (registered from DejaVuSans.ttf at start).
const FONT: &str = "sans-serif";
/// Where Debian's fonts-dejavu-core puts the font.
pub(crate) const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Loads the font; charts are skipped (with a note) when this fails.
pub(crate) fn init_font() -> Result<(), String> {
    let bytes = std::fs::read(FONT_PATH).map_err(|e| format!("cannot read {FONT_PATH}: {e}"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| format!("{FONT_PATH} is not a usable font"))
}

/// Line colours; ours is always the first (red, thicker).
const COLORS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn out_path(ctx: &Ctx, name: &str) -> Result<(PathBuf, String), String> {
    let dir = ctx.out_dir.join("charts");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let rel = format!("charts/{name}.png");
    Ok((dir.join(format!("{name}.png")), rel))
}

/// A line chart of `cells`' medians: one line per peer (those of the
/// first cell, in its order), a point per cell at its x (equally spaced).
/// Returns `None` (after saying why on stderr) when nothing was drawn.
pub(crate) fn lines<'a>(
    ctx: &Ctx,
    name: &str,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    cells: impl IntoIterator<Item = &'a Cell>,
) -> Option<Chart> {
    let cells: Vec<&Cell> = cells.into_iter().collect();
    let series: Vec<(String, Vec<(f64, f64)>)> = cells
        .first()
        .map(|first| {
            first
                .series
                .iter()
                .map(|s| {
                    let pts = cells
                        .iter()
                        .filter_map(|c| Some((c.x, c.get(&s.peer)?.median()?)))
                        .collect();
                    (s.peer.clone(), pts)
                })
                .collect()
        })
        .unwrap_or_default();
    if !ctx.charts || series.iter().all(|(_, p)| p.is_empty()) {
        return None;
    }
    drawn(
        name,
        title,
        draw_lines(ctx, name, title, x_desc, y_desc, &series),
    )
}

/// The chart, or `None` after saying on stderr why it was not drawn.
fn drawn(name: &str, title: &str, res: Result<String, String>) -> Option<Chart> {
    match res {
        Ok(rel) => Some(Chart {
            title: title.to_string(),
            path: rel,
        }),
        Err(e) => {
            eprintln!("suite: chart {name}: {e}");
            None
        }
    }
}

fn draw_lines(
    ctx: &Ctx,
    name: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String, String> {
    let (path, rel) = out_path(ctx, name)?;
    // The x values (concurrency, depth) are equally spaced categories.
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .collect();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.dedup();
    let idx = |x: f64| xs.iter().position(|v| *v == x).unwrap_or(0) as i32;
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(&path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, (FONT, 21))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        // An integer range is inclusive in plotters: 0..=len-1 is len segments.
        .build_cartesian_2d((0..xs.len() as i32 - 1).into_segmented(), 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.15))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .x_labels(xs.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => xs
                .get(*i as usize)
                .map(|x| format!("{x:.0}"))
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| human(*v))
        .draw()
        .map_err(|e| err(&e))?;
    let mut legend_y = 60;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let width = if i == 0 { 4 } else { 2 };
        let pts: Vec<(SegmentValue<i32>, f64)> = points
            .iter()
            .map(|&(x, y)| (SegmentValue::CenterOf(idx(x)), y))
            .collect();
        if !pts.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().cloned(),
                    color.stroke_width(width),
                ))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new(p.clone(), 4, color.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        // The legend, beside the plot; a peer without points says so.
        let text = if pts.is_empty() {
            format!("{label} (n/a)")
        } else {
            label.clone()
        };
        right
            .draw(&PathElement::new(
                vec![(4, legend_y), (30, legend_y)],
                color.stroke_width(width),
            ))
            .map_err(|e| err(&e))?;
        right
            .draw(&Text::new(text, (38, legend_y - 9), (FONT, 16).into_font()))
            .map_err(|e| err(&e))?;
        legend_y += 26;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(rel)
}

/// A horizontal bar chart of ratios ours/peer (median, whisker min–max),
/// log scale, bars starting at 1.0.
pub(crate) fn ratios(
    ctx: &Ctx,
    name: &str,
    title: &str,
    rows: &[(String, Ratio)],
) -> Option<Chart> {
    if !ctx.charts || rows.is_empty() {
        return None;
    }
    drawn(name, title, draw_ratios(ctx, name, title, rows))
}

fn draw_ratios(
    ctx: &Ctx,
    name: &str,
    title: &str,
    rows: &[(String, Ratio)],
) -> Result<String, String> {
    let (path, rel) = out_path(ctx, name)?;
    let lo = rows
        .iter()
        .map(|(_, r)| r.min)
        .fold(1.0f64, f64::min)
        .max(1e-3)
        / 1.3;
    let hi = rows.iter().map(|(_, r)| r.max).fold(1.0f64, f64::max) * 1.3;
    let (lo, hi) = (lo.min(0.5), hi.max(2.0));
    let n = rows.len() as i32;
    let height = (110 + 30 * rows.len()).min(4000) as u32;
    let longest = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(10);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(&path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size((longest as u32 * 8 + 16).min(480))
        // An integer range is inclusive in plotters: n segments.
        .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("ours/peer (peer/ours for CPU costs), log scale; > 1: ours better")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => rows
                .get((n - 1 - *i) as usize)
                .map(|(l, _)| l.clone())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_labels(12)
        .x_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(|e| err(&e))?;
    // Rows top to bottom in the given order: row k sits at segment n-1-k.
    chart
        .draw_series(rows.iter().enumerate().map(|(k, (_, r))| {
            let i = n - 1 - k as i32;
            let color = if r.median >= 1.0 {
                RGBColor(44, 160, 44)
            } else {
                RGBColor(214, 39, 40)
            };
            let mut bar = Rectangle::new(
                [
                    (1.0, SegmentValue::Exact(i)),
                    (r.median, SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.75).filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(k, (_, r))| {
            let i = n - 1 - k as i32;
            PathElement::new(
                vec![
                    (r.min, SegmentValue::CenterOf(i)),
                    (r.max, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(rel)
}
