//! `report --plot out.svg`: private memory over time for the top suspects, one line each,
//! with labelled axes (time in minutes, memory in MiB) and a legend naming the processes.
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::model::table::Process;

pub struct Series {
    pub label: String,
    /// (seconds since trace start, bytes)
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Minute troughs for the history older than the fine window, then every fine sample.
    pub fn of(p: &Process, comm: &str) -> Self {
        let fine_start = p.fine.first().map_or(f64::INFINITY, |s| s.t);
        let mut points: Vec<(f64, f64)> = p
            .coarse
            .iter()
            .filter(|b| b.t < fine_start)
            .map(|b| (b.t, b.last_private as f64))
            .collect();
        points.extend(p.fine.iter().map(|s| (s.t, s.private() as f64)));
        Self {
            label: format!("{comm} ({})", p.pid),
            points,
        }
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn write_svg(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        / 60.0;
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        / 1048576.0
        * 1.1;
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).context("drawing the chart")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Private memory (anon + shmem + swap) of the top suspects",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max.max(0.1), 0f64..y_max.max(1.0))
        .context("building the chart")?;
    chart
        .configure_mesh()
        .x_desc("time since start of trace (minutes)")
        .y_desc("private memory (MiB)")
        .draw()
        .context("drawing axes")?;
    if series.is_empty() {
        root.draw(&Text::new(
            "no process grew during this trace",
            (380, 280),
            ("sans-serif", 18),
        ))
        .context("drawing text")?;
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|(t, b)| (t / 60.0, b / 1048576.0)),
                color.stroke_width(2),
            ))
            .context("drawing a series")?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .context("drawing the legend")?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
