//! The self-contained HTML page of `conduit bench --report FILE.html`:
//! charts drawn by plotters' SVG backend, inlined in the page, and the
//! table. No script, no external resource.

use plotters::prelude::*;

use crate::bench::Row;

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// `s` without ANSI color sequences (`ESC [ … m`), HTML-escaped.
fn escape(s: &str) -> String {
    let mut plain = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page.
pub fn html(title: &str, rows: &[Row], table: &str) -> String {
    let latency =
        latency_chart(rows).unwrap_or_else(|e| format!("<p>chart failed: {}</p>", escape(&e)));
    let p50_bars = bar_chart(
        "one-way latency p50 at 8 B (µs, lower is better)",
        rows.iter()
            .filter(|r| r.kind == "latency" && r.payload == 8)
            .filter_map(|r| r.p50_ns.map(|v| (r.mechanism.clone(), v / 1e3)))
            .collect(),
    )
    .unwrap_or_else(|e| format!("<p>chart failed: {}</p>", escape(&e)));
    let throughput = bar_chart(
        "stream throughput (GiB/s, higher is better)",
        rows.iter()
            .filter(|r| r.kind == "throughput")
            .filter_map(|r| {
                r.bytes_per_s
                    .map(|v| (r.mechanism.clone(), v / (1u64 << 30) as f64))
            })
            .collect(),
    )
    .unwrap_or_else(|e| format!("<p>chart failed: {}</p>", escape(&e)));
    let rate = bar_chart(
        "ping-pong messages per second at 8 B (higher is better)",
        rows.iter()
            .filter(|r| r.kind == "latency" && r.payload == 8)
            .filter_map(|r| r.msgs_per_s.map(|v| (r.mechanism.clone(), v)))
            .collect(),
    )
    .unwrap_or_else(|e| format!("<p>chart failed: {}</p>", escape(&e)));
    let cpus = conduit_bench::harness::cpus();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{t}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}\
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}}figure{{margin:2em 0}}</style></head>\
<body><h1>{t}</h1><p>Two processes pinned to CPU 0 and 1 ({cpus} CPUs online); latency is one-way \
(round trip / 2). Baselines are marked <code>*</code> in the table.</p>\
<h2>Latency vs payload size</h2><figure>{latency}</figure>\
<h2>Latency at 8 bytes</h2><figure>{p50_bars}</figure>\
<h2>Message rate</h2><figure>{rate}</figure>\
<h2>Throughput</h2><figure>{throughput}</figure>\
<h2>Table</h2><pre>{table}</pre>\
<h2>Raw results (JSON lines)</h2><pre>{json}</pre></body></html>\n",
        t = escape(title),
        table = escape(table),
        json = escape(
            &rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )
}

/// p50 one-way latency against payload size, log-log, one line per
/// mechanism measured at two sizes or more (points for the others).
fn latency_chart(rows: &[Row]) -> Result<String, String> {
    let points: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "latency" && r.p50_ns.is_some_and(|v| v > 0.0))
        .collect();
    if points.is_empty() {
        return Ok("<p>no latency results</p>".into());
    }
    let mut names: Vec<&str> = Vec::new();
    for r in &points {
        if !names.contains(&r.mechanism.as_str()) {
            names.push(&r.mechanism);
        }
    }
    let (xmin, xmax) = points.iter().fold((f64::MAX, 0f64), |(a, b), r| {
        (
            a.min(r.payload.max(1) as f64),
            b.max(r.payload.max(1) as f64),
        )
    });
    let (ymin, ymax) = points.iter().fold((f64::MAX, 0f64), |(a, b), r| {
        let v = r.p50_ns.unwrap_or(1.0) / 1e3;
        (a.min(v), b.max(v))
    });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "p50 one-way latency (µs) vs payload (bytes), log axes",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin / 2.0..xmax * 2.0).log_scale(),
                (ymin / 2.0..ymax * 2.0).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("payload (bytes)")
            .y_desc("p50 one-way (µs)")
            .x_label_formatter(&|v| crate::common::bytes(*v))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, name) in names.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut series: Vec<(f64, f64)> = points
                .iter()
                .filter(|r| r.mechanism == *name)
                .map(|r| (r.payload.max(1) as f64, r.p50_ns.unwrap_or(1.0) / 1e3))
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(series.clone(), style))
                .map_err(|e| e.to_string())?
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(series.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Horizontal bars, one per (label, value).
fn bar_chart(title: &str, bars: Vec<(String, f64)>) -> Result<String, String> {
    if bars.is_empty() {
        return Ok(format!("<p>{}: no results</p>", escape(title)));
    }
    let max = bars.iter().map(|b| b.1).fold(0f64, f64::max).max(1e-9);
    let n = bars.len();
    let height = 80 + 28 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(30)
            .y_label_area_size(280)
            .build_cartesian_2d(0f64..max * 1.1, 0f64..n as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|v| {
                let i = v.floor() as usize;
                if (v - v.floor() - 0.5).abs() < 0.01 && i < labels.len() {
                    labels[n - 1 - i].clone()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v| format!("{v:.3}"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let y = (n - 1 - i) as f64;
                let color = COLORS[i % COLORS.len()];
                Rectangle::new([(0.0, y + 0.15), (*v, y + 0.85)], color.filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
