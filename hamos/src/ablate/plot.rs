//! The ablation's figure: FPR95 per setting, near-OOD and far-OOD side by side, each a mean
//! with a ± one sample standard deviation error bar over the seeds.

use std::path::Path;

use hamos_api::Result;
use plotters::prelude::*;

use crate::eval::aggregate::MeanStd;
use crate::eval::plots::{draw_legend, render, tab10, DrawResult, Root, FONT};

/// One setting's FPR95 (fractions) over the seeds.
pub struct Point {
    /// The setting (and model) on the x axis.
    pub label: String,
    /// Near-OOD average FPR95.
    pub near: MeanStd,
    /// Far-OOD average FPR95.
    pub far: MeanStd,
}

/// Draws `points` to `path` (PNG): one column per setting, near-OOD left, far-OOD right.
pub fn fpr95_bars(path: &Path, title: &str, points: &[Point]) -> Result<()> {
    let top = points
        .iter()
        .flat_map(|p| [p.near, p.far])
        .map(|m| 100.0 * (m.mean + m.std.unwrap_or(0.0)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let y_max = (top * 1.1).clamp(5.0, 100.0);
    let labels: Vec<String> = points.iter().map(|p| p.label.clone()).collect();
    render(path, |root: &Root| -> DrawResult {
        let n = points.len() as f64;
        let mut chart = ChartBuilder::on(root)
            .margin(18)
            .caption(title, (FONT, 22))
            .x_label_area_size(if labels.iter().any(|l| l.len() > 12) { 110 } else { 56 })
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..y_max)?;
        let name = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .x_labels(points.len() * 2 + 1)
            .x_label_formatter(&name)
            .y_desc("FPR95 (%), lower is better")
            .draw()?;
        for (series, offset, colour) in [("near-OOD", -0.12, tab10(1)), ("far-OOD", 0.12, tab10(2))] {
            let pick = |p: &Point| if series == "near-OOD" { p.near } else { p.far };
            for (i, p) in points.iter().enumerate() {
                let m = pick(p);
                let (mean, spread) = (100.0 * m.mean, 100.0 * m.std.unwrap_or(0.0));
                let x = i as f64 + offset;
                let line = colour.stroke_width(2);
                let (low, high, cap) = (mean - spread, mean + spread, 0.05);
                chart.draw_series([
                    PathElement::new([(x, low), (x, high)], line),
                    PathElement::new([(x - cap, low), (x + cap, low)], line),
                    PathElement::new([(x - cap, high), (x + cap, high)], line),
                ])?;
            }
            let means = points
                .iter()
                .enumerate()
                .map(|(i, p)| Circle::new((i as f64 + offset, 100.0 * pick(p).mean), 5, colour.filled()));
            chart
                .draw_series(means)?
                .label(series)
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, colour.filled()));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}
