//! The SVG plots of a run. Text is written as SVG `<text>` elements (plotters' built-in
//! layout estimate, no font files), so rendering needs no system fonts.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::ms;
use super::{Outcome, Percentiles, Report};

const SIZE: (u32, u32) = (960, 600);
const SUCCESS_SIZE: (u32, u32) = (960, 720);
/// Points drawn per CDF: enough for a smooth curve, while keeping the SVG small when the
/// run kept up to `MAX_LATENCY_SAMPLES` samples.
const CDF_POINTS: usize = 1000;
const FONT: &str = "sans-serif";

const CDF_COLOUR: RGBColor = RGBColor(31, 119, 180);
const P50_COLOUR: RGBColor = RGBColor(44, 160, 44);
const P90_COLOUR: RGBColor = RGBColor(255, 127, 14);
const P99_COLOUR: RGBColor = RGBColor(214, 39, 40);
const LOOKUP_COLOUR: RGBColor = CDF_COLOUR;
const CALL_COLOUR: RGBColor = P99_COLOUR;
const LIVE_COLOUR: RGBColor = RGBColor(80, 80, 80);

type Svg<'a> = SVGBackend<'a>;

/// CDF of the successful lookups' latencies.
pub(crate) fn lookup_latency_cdf(report: &Report) -> Result<String, String> {
    cdf(
        report,
        &Cdf {
            title: "Lookup latency CDF",
            x_desc: "lookup latency (ms)",
            y_desc: "fraction of successful lookups",
            samples: &report.lookup_latency_samples_ms,
            percentiles: report.lookup_latency_ms,
            empty_note: "no samples: no lookup succeeded",
        },
    )
}

/// CDF of the successful calls' setup times.
pub(crate) fn call_setup_cdf(report: &Report) -> Result<String, String> {
    cdf(
        report,
        &Cdf {
            title: "Call setup time CDF",
            x_desc: "call setup time (ms)",
            y_desc: "fraction of successful calls",
            samples: &report.call_setup_samples_ms,
            percentiles: report.call_setup_ms,
            empty_note: "no samples: no call succeeded",
        },
    )
}

struct Cdf<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    samples: &'a [f64],
    /// The run's percentiles (over every sample, not only the kept ones) for the markers.
    percentiles: Percentiles,
    empty_note: &'a str,
}

fn cdf(report: &Report, spec: &Cdf<'_>) -> Result<String, String> {
    let mut sorted: Vec<f64> = spec
        .samples
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    // A report built by hand may carry samples without percentiles.
    let percentiles = if spec.percentiles.count > 0 {
        spec.percentiles
    } else {
        Percentiles::of(&sorted)
    };

    let (x_min, x_max, cut) = cdf_x_range(&sorted);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!("{} - {}", spec.title, run_label(report));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0f64..1f64)
            .map_err(draw_error)?;
        let x_decimals = decimals_for(x_max - x_min);
        chart
            .configure_mesh()
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .x_label_formatter(&|x| format!("{x:.x_decimals$}"))
            .y_labels(11)
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(draw_error)?;

        if sorted.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), spec.empty_note)?;
        } else {
            let label = match cut {
                Some(cut) => format!(
                    "CDF of {} samples (x axis cut past {}; max {})",
                    sorted.len(),
                    cut.name,
                    ms(cut.max)
                ),
                None => format!("CDF of {} samples", sorted.len()),
            };
            chart
                .draw_series(LineSeries::new(
                    cdf_points(&sorted, x_max),
                    CDF_COLOUR.stroke_width(2),
                ))
                .map_err(draw_error)?
                .label(label)
                .legend(|(x, y)| legend_line(x, y, CDF_COLOUR));
            for (name, value, colour) in [
                ("p50", percentiles.p50, P50_COLOUR),
                ("p90", percentiles.p90, P90_COLOUR),
                ("p99", percentiles.p99, P99_COLOUR),
            ] {
                let x = value.clamp(x_min, x_max);
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x, 0.0), (x, 1.0)],
                        6,
                        4,
                        colour.stroke_width(2),
                    ))
                    .map_err(draw_error)?
                    .label(format!("{name} = {}", ms(value)))
                    .legend(move |(x, y)| legend_line(x, y, colour));
            }
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// The x range of a CDF, and where the axis is cut short with the largest sample: a long
/// tail (a few timeouts) would otherwise squash the whole curve against the left edge.
/// The cut keeps p99.9 in view, or p99 or p90 when there are too few samples for the higher
/// percentile to differ from the maximum.
fn cdf_x_range(sorted: &[f64]) -> (f64, f64, Option<Cut>) {
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return (0.0, 1.0, None);
    };
    let x_min = first.min(0.0);
    let (quantile, name) = match sorted.len() {
        1000.. => (0.999, "p99.9"),
        100.. => (0.99, "p99"),
        _ => (0.9, "p90"),
    };
    let kept = nearest_rank(sorted, quantile);
    let (mut x_max, cut) = if kept > 0.0 && last > 2.0 * kept {
        (kept * 1.1, Some(Cut { name, max: last }))
    } else {
        (last * 1.05, None)
    };
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    (x_min, x_max, cut)
}

/// An x axis cut short of the largest sample.
struct Cut {
    /// The percentile kept in view.
    name: &'static str,
    max: f64,
}

fn nearest_rank(sorted: &[f64], quantile: f64) -> f64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(0.0)
}

/// At most about `CDF_POINTS` points of the empirical CDF, up to `x_max`. Starts at
/// fraction 0 at the smallest sample and keeps the exact last point, so the curve reaches 1.
fn cdf_points(sorted: &[f64], x_max: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(CDF_POINTS).max(1);
    let mut points = Vec::with_capacity(n / step + 2);
    if let Some(&first) = sorted.first() {
        points.push((first, 0.0));
    }
    let mut index = step - 1;
    loop {
        let index_clamped = index.min(n - 1);
        let x = sorted[index_clamped];
        let y = (index_clamped + 1) as f64 / n as f64;
        if x > x_max {
            // Where the cut axis ends, at the fraction reached before it.
            let reached = points.last().map_or(0.0, |&(_, y)| y);
            points.push((x_max, reached));
            break;
        }
        points.push((x, y));
        if index_clamped == n - 1 {
            break;
        }
        index += step;
    }
    points
}

/// Lookup and call success ratio per interval (top) and live nodes (bottom).
pub(crate) fn success_over_time(report: &Report) -> Result<String, String> {
    let timeline = &report.timeline;
    let t_max = timeline
        .iter()
        .map(|s| s.t_secs)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    let t_max = if t_max > 0.0 { t_max } else { 1.0 };
    let live_max = timeline.iter().map(|s| s.live_nodes).max().unwrap_or(0);
    // At least 10, so a tiny or empty run does not get fractional node counts as ticks.
    let live_top = ((live_max as f64) * 1.1).max(10.0);
    let t_decimals = decimals_for(t_max);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SUCCESS_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let body = root
            .titled(
                &format!("Success over time - {}", run_label(report)),
                (FONT, 24),
            )
            .map_err(draw_error)?;
        let (top, bottom) = body.split_vertically(SUCCESS_SIZE.1 * 3 / 5);

        let mut ratios = ChartBuilder::on(&top)
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_max, 0f64..1.05f64)
            .map_err(draw_error)?;
        ratios
            .configure_mesh()
            .x_desc("time since workload start (s)")
            .x_label_formatter(&|t| format!("{t:.t_decimals$}"))
            .y_desc("success ratio per interval")
            .y_labels(11)
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(draw_error)?;
        if timeline.is_empty() {
            note(
                &ratios.plotting_area().strip_coord_spec(),
                "no timeline samples",
            )?;
        } else {
            for (name, colour, pick) in [
                (
                    "lookups",
                    LOOKUP_COLOUR,
                    (|s| s.lookups) as fn(&super::TimelineSample) -> Outcome,
                ),
                ("calls", CALL_COLOUR, |s| s.calls),
            ] {
                draw_ratio(&mut ratios, timeline, name, colour, pick)?;
            }
            draw_legend(&mut ratios, SeriesLabelPosition::LowerLeft)?;
        }

        let mut live = ChartBuilder::on(&bottom)
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_max, 0f64..live_top)
            .map_err(draw_error)?;
        live.configure_mesh()
            .x_desc("time since workload start (s)")
            .x_label_formatter(&|t| format!("{t:.t_decimals$}"))
            .y_desc("live nodes")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(draw_error)?;
        if timeline.is_empty() {
            note(
                &live.plotting_area().strip_coord_spec(),
                "no timeline samples",
            )?;
        } else {
            live.draw_series(LineSeries::new(
                timeline.iter().map(|s| (s.t_secs, s.live_nodes as f64)),
                LIVE_COLOUR.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label(format!("live nodes (max {live_max})"))
            .legend(|(x, y)| legend_line(x, y, LIVE_COLOUR));
            draw_legend(&mut live, SeriesLabelPosition::LowerLeft)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Every chart here: f64 on both axes.
type Chart<'a, 'b> = ChartContext<
    'a,
    Svg<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One success-ratio curve. Intervals where nothing was attempted have no ratio (the
/// model's 1.0 would show a success that did not happen), so the line breaks there; every
/// interval with a ratio also gets a dot, so isolated ones stay visible.
fn draw_ratio(
    chart: &mut Chart<'_, '_>,
    timeline: &[super::TimelineSample],
    name: &str,
    colour: RGBColor,
    pick: fn(&super::TimelineSample) -> Outcome,
) -> Result<(), String> {
    let points: Vec<Option<(f64, f64)>> = timeline
        .iter()
        .map(|s| {
            let outcome = pick(s);
            (outcome.attempted > 0).then(|| (s.t_secs, outcome.ratio()))
        })
        .collect();
    for run in points.split(Option::is_none) {
        if run.len() > 1 {
            chart
                .draw_series(LineSeries::new(
                    run.iter().flatten().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(draw_error)?;
        }
    }
    let dots: Vec<(f64, f64)> = points.iter().flatten().copied().collect();
    let label = if dots.is_empty() {
        format!("{name} (none attempted)")
    } else {
        name.to_string()
    };
    chart
        .draw_series(
            dots.into_iter()
                .map(|point| Circle::new(point, 3, colour.filled())),
        )
        .map_err(draw_error)?
        .label(label)
        .legend(move |(x, y)| legend_line(x, y, colour));
    Ok(())
}

/// The legend box, the same on every chart.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)
}

/// Decimals for axis labels over `span`: "50", not "50.0", on a 0..200 ms axis.
fn decimals_for(span: f64) -> usize {
    if span >= 10.0 {
        0
    } else if span >= 1.0 {
        1
    } else {
        2
    }
}

/// "1000 nodes, seed 42": every plot says which run it shows.
fn run_label(report: &Report) -> String {
    format!(
        "{} nodes, seed {}",
        report.scenario.nodes, report.scenario.seed
    )
}

fn legend_line(x: i32, y: i32, colour: RGBColor) -> PathElement<(i32, i32)> {
    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
}

/// A centred note on an area that has no data to show.
fn note(area: &DrawingArea<Svg<'_>, Shift>, text: &str) -> Result<(), String> {
    let (width, height) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 20).into_font())
        .color(&LIVE_COLOUR)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        text.to_string(),
        ((width / 2) as i32, (height / 2) as i32),
        style,
    ))
    .map_err(draw_error)
}

fn draw_error(error: impl std::fmt::Display) -> String {
    error.to_string()
}
