//! The outputs: a table for the terminal and a self-contained HTML report whose charts are
//! inline SVG (plotters), so the file can be mailed or attached to a pull request as is.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{PolicyResult, Results, SimulateError};

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
}

/// The terminal table: one row per policy, ratios to the HPA and the oracle.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let t = &results.trace;
    let m = &results.model;
    let _ = writeln!(
        out,
        "trace {} ({:.1} days, peak {:.2} rps, mean {:.2} rps); capacity {:.4} rps/replica, target {:.4}, start-up {} s",
        t.name,
        t.duration_seconds / 86_400.0,
        t.peak_rps,
        t.mean_rps,
        m.capacity_rps,
        m.target_rps(),
        m.startup_seconds
    );
    let _ = writeln!(
        out,
        "{:<7} {:>12} {:>6} {:>14} {:>14} {:>6} {:>6} {:>12} {:>6} {:>7} {:>5}",
        "policy",
        "under-cap s",
        "×hpa",
        "unserved req",
        "replica-s",
        "×hpa",
        "×orc",
        "rs/burst",
        "×hpa",
        "events",
        "peak"
    );
    for p in &results.policies {
        let f = &p.figures;
        let _ = writeln!(
            out,
            "{:<7} {:>12.0} {:>6} {:>14.0} {:>14.0} {:>6} {:>6} {:>12.0} {:>6} {:>7} {:>5}",
            p.name,
            f.under_capacity_seconds,
            ratio(p.vs_hpa.under_capacity_seconds),
            f.unserved_requests,
            f.replica_seconds,
            ratio(p.vs_hpa.replica_seconds),
            ratio(p.vs_oracle.replica_seconds),
            f.replica_seconds_per_burst,
            ratio(p.vs_hpa.replica_seconds_per_burst),
            f.scale_events,
            f.peak_replicas
        );
    }
    let _ = writeln!(
        out,
        "bursts in the trace: {}",
        results.policies.first().map_or(0, |p| p.figures.bursts)
    );
    out
}

const WIDTH: u32 = 1300;
const HEIGHT: u32 = 250;
const LOAD: RGBColor = RGBColor(31, 119, 180);
const CAPACITY: RGBColor = RGBColor(44, 160, 44);
const REPLICAS: RGBColor = RGBColor(255, 127, 14);
const SHORT: RGBColor = RGBColor(214, 39, 40);

/// Points to draw: (t, load, capacity, replicas, under-capacity seconds).
type Points = Vec<(f64, f64, f64, f64, f64)>;

/// The whole run, `buckets` points at most, means per point (so cost reads right).
fn overview(p: &PolicyResult, buckets: usize) -> Points {
    let s = &p.series;
    let per = s.len().div_ceil(buckets.max(1)).max(1);
    (0..s.len())
        .step_by(per)
        .map(|i| {
            let j = (i + per).min(s.len());
            let n = (j - i) as f64;
            let mean = |v: &[f64]| v[i..j].iter().sum::<f64>() / n;
            (
                i as f64 * s.resolution,
                mean(&s.load_mean),
                mean(&s.capacity_mean),
                mean(&s.replicas_mean),
                s.under_seconds[i..j].iter().sum(),
            )
        })
        .collect()
}

/// A window at full resolution: peak load and lowest capacity per point (shortfalls show).
fn zoom(p: &PolicyResult, from: usize, to: usize) -> Points {
    let s = &p.series;
    (from..to.min(s.len()))
        .map(|i| {
            (
                i as f64 * s.resolution,
                s.load_max[i],
                s.capacity_min[i],
                s.replicas_mean[i],
                s.under_seconds[i],
            )
        })
        .collect()
}

/// The highest value a chart of these points must show, in requests/s.
fn top(points: &Points, capacity_rps: f64) -> f64 {
    points
        .iter()
        .map(|p| p.1.max(p.2).max(p.3 * capacity_rps))
        .fold(0.0, f64::max)
}

/// The window (in series points) to zoom on, and what it shows: where the policies (but
/// the oracle) spent the most seconds under capacity together, or, if none ever was, the
/// hours around the peak load.
fn worst_window(results: &Results, width: usize) -> (usize, usize, &'static str) {
    let Some(first) = results.policies.first() else {
        return (0, 0, "on the start");
    };
    let n = first.series.len();
    if n <= width {
        return (0, n, "on the whole trace");
    }
    let mut under = vec![0.0; n];
    for p in results.policies.iter().filter(|p| p.name != "oracle") {
        for (u, v) in under.iter_mut().zip(&p.series.under_seconds) {
            *u += v;
        }
    }
    let mut sum: f64 = under[..width].iter().sum();
    let (mut best, mut at) = (sum, 0);
    for i in width..n {
        sum += under[i] - under[i - width];
        if sum > best {
            best = sum;
            at = i + 1 - width;
        }
    }
    if best > 0.0 {
        return (at, at + width, "where the policies fell short most");
    }
    let peak = first
        .series
        .load_max
        .iter()
        .enumerate()
        .fold(
            (0, f64::MIN),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0;
    let from = peak.saturating_sub(width * 2 / 3).min(n - width);
    (
        from,
        from + width,
        "around the peak load (no policy fell short)",
    )
}

fn time_unit(span: f64) -> (f64, &'static str) {
    if span > 3.0 * 86_400.0 {
        (86_400.0, "days since the trace start")
    } else if span > 90.0 * 60.0 {
        (3_600.0, "hours since the trace start")
    } else {
        (60.0, "minutes since the trace start")
    }
}

/// One chart. Both y axes share a scale (replicas × per-replica capacity = requests/s), so
/// where the replica band rises above the capacity line, replicas are still starting.
fn chart(
    title: &str,
    points: &Points,
    capacity_rps: f64,
    top: f64,
) -> Result<String, SimulateError> {
    let plot = |e: &dyn std::fmt::Display| SimulateError::Plot(e.to_string());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot(&e))?;
        let (t0, t1) = match (points.first(), points.last()) {
            (Some(a), Some(b)) => (a.0, b.0.max(a.0 + 1.0)),
            _ => (0.0, 1.0),
        };
        let (unit, unit_name) = time_unit(t1 - t0);
        let y_max = top.max(1e-9) * 1.08;
        let r_max = y_max / capacity_rps;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .right_y_label_area_size(56)
            .build_cartesian_2d(t0 / unit..t1 / unit, 0.0..y_max)
            .map_err(|e| plot(&e))?
            .set_secondary_coord(t0 / unit..t1 / unit, 0.0..r_max);
        let decimals = |v: &f64| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        };
        c.configure_mesh()
            .x_desc(unit_name)
            .y_desc("requests/s")
            .x_label_formatter(&|v| {
                if (t1 - t0) / unit < 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                }
            })
            .y_label_formatter(&decimals)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot(&e))?;
        c.configure_secondary_axes()
            .y_desc("replicas")
            .y_label_formatter(&|v| {
                if r_max < 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()
            .map_err(|e| plot(&e))?;
        // Replicas first, wide and light, so the capacity line stays readable on top.
        c.draw_secondary_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.3)),
            REPLICAS.mix(0.45).stroke_width(4),
        ))
        .map_err(|e| plot(&e))?;
        c.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.2)),
            CAPACITY.stroke_width(1),
        ))
        .map_err(|e| plot(&e))?;
        c.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.1)),
            LOAD.stroke_width(1),
        ))
        .map_err(|e| plot(&e))?;
        // Under capacity: a red band along the bottom wherever load exceeded ready capacity.
        let band = y_max * 0.04;
        let width = points.get(1).map_or(60.0, |p| p.0 - points[0].0) / unit;
        c.draw_series(points.iter().filter(|p| p.4 > 0.0).map(|p| {
            Rectangle::new(
                [(p.0 / unit, 0.0), (p.0 / unit + width, band)],
                SHORT.filled(),
            )
        }))
        .map_err(|e| plot(&e))?;
        root.present().map_err(|e| plot(&e))?;
    }
    Ok(svg)
}

fn legend() -> String {
    let item = |c: RGBColor, label: &str, wide: bool| {
        format!(
            "<span style=\"margin-right:18px\"><span style=\"display:inline-block;width:22px;height:{}px;\
             background:rgb({},{},{});opacity:{};vertical-align:middle;margin-right:6px\"></span>{label}</span>",
            if wide { 5 } else { 2 },
            c.0,
            c.1,
            c.2,
            if wide { 0.6 } else { 1.0 }
        )
    };
    format!(
        "<p class=\"legend\">{}{}{}{}</p>",
        item(LOAD, "load (requests/s)", false),
        item(CAPACITY, "ready capacity (requests/s)", false),
        item(
            REPLICAS,
            "replicas, right axis (above the capacity line: still starting)",
            true
        ),
        item(SHORT, "under capacity", true)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The self-contained HTML report.
pub fn html(results: &Results) -> Result<String, SimulateError> {
    let t = &results.trace;
    let m = &results.model;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>simulate: {name}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222;max-width:1320px}}\
         table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         .good{{background:#e3f4e3}}.bad{{background:#fbe3e3}}.note{{color:#555;font-size:14px;max-width:1100px}}.legend{{font-size:14px}}\
         h2{{margin-top:32px}}svg{{display:block;margin:6px 0}}</style></head><body>",
        name = escape(&t.name)
    );
    let _ = write!(
        h,
        "<h1>Scaling simulation: {}</h1><p class=\"note\">Trace <code>{}</code>: {:.1} days, peak {:.3} rps, \
         mean {:.3} rps. Model: one replica saturates at {:.4} rps; every policy targets {:.0}% of it \
         ({:.4} rps per replica); a new replica serves {} s after it is created; metrics are scraped every {} s.</p>",
        escape(&t.name),
        escape(&t.source),
        t.duration_seconds / 86_400.0,
        t.peak_rps,
        t.mean_rps,
        m.capacity_rps,
        m.target_utilization * 100.0,
        m.target_rps(),
        m.startup_seconds,
        m.scrape_interval_seconds
    );
    h.push_str(
        "<table><tr><th>policy</th><th>under-capacity s</th><th>× hpa</th><th>unserved requests</th>\
         <th>replica-seconds</th><th>× hpa</th><th>× oracle</th><th>replica-s per burst</th><th>× hpa</th>\
         <th>scale events</th><th>peak replicas</th></tr>",
    );
    for p in &results.policies {
        let f = &p.figures;
        let mark = |ok: Option<bool>| match ok {
            Some(true) => " class=\"good\"",
            Some(false) => " class=\"bad\"",
            None => "",
        };
        let is_policy = p.name == "policy";
        let uc_ok = is_policy.then(|| p.vs_hpa.under_capacity_seconds.is_none_or(|r| r <= 0.5));
        let cost_h = is_policy.then(|| p.vs_hpa.replica_seconds.is_none_or(|r| r <= 1.0));
        let cost_o = is_policy.then(|| p.vs_oracle.replica_seconds.is_none_or(|r| r <= 1.15));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td{}>{}</td><td>{:.0}</td><td>{:.0}</td><td{}>{}</td><td{}>{}</td>\
             <td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            f.under_capacity_seconds,
            mark(uc_ok),
            ratio(p.vs_hpa.under_capacity_seconds),
            f.unserved_requests,
            f.replica_seconds,
            mark(cost_h),
            ratio(p.vs_hpa.replica_seconds),
            mark(cost_o),
            ratio(p.vs_oracle.replica_seconds),
            f.replica_seconds_per_burst,
            ratio(p.vs_hpa.replica_seconds_per_burst),
            f.scale_events,
            f.peak_replicas
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p class=\"note\">Goals for <b>policy</b> (green met, red missed): under-capacity ≤ 0.5 × hpa, \
         replica-seconds ≤ hpa and ≤ 1.15 × oracle. A burst ({} in this trace) starts where load reaches 1.5 × \
         its trailing one-hour mean and exceeds it by 6 replicas' worth, and stays above 1.2 × that mean for at \
         least 3 minutes; it lasts until load falls under that, plus a 10-minute tail. Replica-s per burst is what a policy runs above the pre-burst need \
         during bursts, per burst. The oracle has exactly the needed replicas ready at every instant and pays \
         for each from its start, one start-up earlier.</p>",
        results.policies.first().map_or(0, |p| p.figures.bursts)
    );
    charts(&mut h, results)?;
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The zoom on the worst hours and the whole run, one chart per policy, on shared scales.
fn charts(h: &mut String, results: &Results) -> Result<(), SimulateError> {
    let m = &results.model;
    let resolution = results
        .policies
        .first()
        .map_or(60.0, |p| p.series.resolution);
    let window = ((3.0 * 3600.0 / resolution).round() as usize).max(1);
    let (from, to, what) = worst_window(results, window);
    let _ = write!(
        h,
        "<h2>Zoom {what}: {:.1} h to {:.1} h</h2><p class=\"note\">Per {:.0} s: peak load and \
         lowest ready capacity, so every shortfall shows.</p>{}",
        from as f64 * resolution / 3600.0,
        to as f64 * resolution / 3600.0,
        resolution,
        legend()
    );
    // One scale for every policy, so the charts compare at a glance.
    let zooms: Vec<Points> = results.policies.iter().map(|p| zoom(p, from, to)).collect();
    let zoom_top = zooms
        .iter()
        .map(|z| top(z, m.capacity_rps))
        .fold(0.0, f64::max);
    for (i, p) in results.policies.iter().enumerate() {
        let f = &p.figures;
        let title = format!(
            "{} — zoom ({:.0} s under capacity in the whole run)",
            p.name, f.under_capacity_seconds
        );
        h.push_str(&chart(&title, &zooms[i], m.capacity_rps, zoom_top)?);
    }
    h.push_str("<h2>The whole trace</h2><p class=\"note\">Means per point; red marks where any second was under capacity.</p>");
    h.push_str(&legend());
    let overviews: Vec<Points> = results.policies.iter().map(|p| overview(p, 1200)).collect();
    let overview_top = overviews
        .iter()
        .map(|o| top(o, m.capacity_rps))
        .fold(0.0, f64::max);
    for (i, p) in results.policies.iter().enumerate() {
        let f = &p.figures;
        let title = format!(
            "{} — {:.0} replica-s, {:.0} s under capacity, peak {} replicas",
            p.name, f.replica_seconds, f.under_capacity_seconds, f.peak_replicas
        );
        h.push_str(&chart(&title, &overviews[i], m.capacity_rps, overview_top)?);
    }
    Ok(())
}

/// The report of `marketplace-operator dev`: per service, the same trace through the
/// controllers on the devcluster and through the simulator, side by side.
pub fn services_html(title: &str, intro: &str, runs: &[Results]) -> Result<String, SimulateError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222;max-width:1320px}}\
         table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         .note{{color:#555;font-size:14px;max-width:1100px}}.legend{{font-size:14px}}\
         h2{{margin-top:32px}}svg{{display:block;margin:6px 0}}</style></head><body><h1>{t}</h1><p class=\"note\">{intro}</p>",
        t = escape(title),
        intro = escape(intro),
    );
    h.push_str(
        "<table><tr><th>service</th><th>run</th><th>under-capacity s</th><th>unserved requests</th>\
         <th>replica-seconds</th><th>scale events</th><th>peak replicas</th></tr>",
    );
    for r in runs {
        for p in &r.policies {
            let f = &p.figures;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.trace.name),
                escape(&p.name),
                f.under_capacity_seconds,
                f.unserved_requests,
                f.replica_seconds,
                f.scale_events,
                f.peak_replicas
            );
        }
    }
    h.push_str("</table>");
    for r in runs {
        let _ = write!(
            h,
            "<h2>{}</h2><p class=\"note\">One replica saturates at {:.1} rps and targets {:.1} rps; \
             a new replica serves {} s after it is created.</p>",
            escape(&r.trace.name),
            r.model.capacity_rps,
            r.model.target_rps(),
            r.model.startup_seconds
        );
        charts(&mut h, r)?;
    }
    h.push_str("</body></html>\n");
    Ok(h)
}
