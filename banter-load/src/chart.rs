//! The PNG chart: end-to-end latency per second of the run, and its distribution.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{Report, SecondRow};

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> anyhow::Result<()> {
    let bytes = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| anyhow!("no DejaVuSans.ttf (Debian package fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("the font could not be read"))
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("{e:?}")
}

pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    if report.timeline.is_empty() || report.cdf.is_empty() {
        return Err(anyhow!("no latencies were recorded"));
    }
    register_font()?;
    let root = BitMapBackend::new(path, (1400, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "{} {:?}: {} users, {} channels, {:.0} deliveries/s",
        report.label, report.scenario, report.users, report.channels, report.deliveries_per_s
    );
    let root = root.titled(&title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(760);

    let max_ms = report
        .timeline
        .iter()
        .map(|s| s.max_ms)
        .fold(1.0f64, f64::max)
        * 1.5;
    let seconds = report.timeline.len() as f64;
    let mut over_time = ChartBuilder::on(&left)
        .caption(
            "end-to-end latency per second (ms, log)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..seconds, (0.01f64..max_ms).log_scale())
        .map_err(err)?;
    over_time
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    type Series = (&'static str, RGBColor, fn(&SecondRow) -> f64);
    let series: [Series; 3] = [
        ("p50", BLUE, |s| s.p50_ms),
        ("p99", RED, |s| s.p99_ms),
        ("max", RGBColor(120, 120, 120), |s| s.max_ms),
    ];
    for (name, color, value) in series {
        over_time
            .draw_series(LineSeries::new(
                report
                    .timeline
                    .iter()
                    .filter(|s| s.delivered > 0)
                    .map(|s| (s.t as f64 + 0.5, value(s).max(0.01))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    over_time
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;

    let cdf_max = report.cdf.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    let mut cdf = ChartBuilder::on(&right)
        .caption("latency distribution", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.01f64..cdf_max).log_scale(), 0f64..100f64)
        .map_err(err)?;
    cdf.configure_mesh()
        .x_desc("ms (log)")
        .y_desc("percent of deliveries")
        .draw()
        .map_err(err)?;
    cdf.draw_series(LineSeries::new(
        report.cdf.iter().map(|(q, ms)| (ms.max(0.01), *q)),
        BLUE.stroke_width(2),
    ))
    .map_err(err)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
