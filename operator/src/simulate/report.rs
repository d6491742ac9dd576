//! The outputs: a table for the terminal and a self-contained HTML report whose charts are
//! inline SVG (plotters), so the file can be mailed or attached to a pull request as is.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{PolicyResult, Results, SimulateError};

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
}

/// The terminal table: one row per policy, ratios to the HPA and the oracle.
/// A rate with the digits a reader uses: 2640, 94.3, 6.13, 0.612.
fn figure(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let t = &results.trace;
    let m = &results.model;
    let _ = writeln!(
        out,
        "trace {} ({:.1} days, peak {} rps, mean {} rps); capacity {} rps/replica, target {}, start-up {} s",
        t.name,
        t.duration_seconds / 86_400.0,
        figure(t.peak_rps),
        figure(t.mean_rps),
        figure(m.capacity_rps),
        figure(m.target_rps()),
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
/// The narrowest under-capacity mark, in pixels.
const MIN_MARK_PX: f64 = 4.0;

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

/// Per series point, the seconds under capacity the zoom should show: the policy under
/// test's and the HPA's (the comparison a reader makes), or, where neither ever fell short,
/// every policy's but the oracle's.
fn shortfalls(results: &Results, n: usize) -> Vec<f64> {
    let mut under = vec![0.0; n];
    let mut add = |p: &PolicyResult| {
        for (u, v) in under.iter_mut().zip(&p.series.under_seconds) {
            *u += v;
        }
    };
    let compared: Vec<&PolicyResult> = results
        .policies
        .iter()
        .filter(|p| p.name == "policy" || p.name == "hpa")
        .collect();
    if compared
        .iter()
        .any(|p| p.figures.under_capacity_seconds > 0.0)
    {
        compared.into_iter().for_each(&mut add);
    } else {
        results
            .policies
            .iter()
            .filter(|p| p.name != "oracle")
            .for_each(add);
    }
    under
}

/// The window (in series points) to zoom on, and what it shows: centred on the worst
/// shortfall (the busiest window of shortfalls, then its weighted middle, so a lone
/// shortfall sits in the middle of the chart rather than on its edge), or, if no policy
/// ever fell short, the hours around the peak load.
fn worst_window(results: &Results, width: usize) -> (usize, usize, &'static str) {
    let Some(first) = results.policies.first() else {
        return (0, 0, "on the start");
    };
    let n = first.series.len();
    if n <= width {
        return (0, n, "on the whole trace");
    }
    let under = shortfalls(results, n);
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
        // The weighted middle of the shortfalls in the best window.
        let (mut acc, mut centre) = (0.0, at);
        for (i, u) in under.iter().enumerate().skip(at).take(width) {
            acc += u;
            if acc >= best / 2.0 {
                centre = i;
                break;
            }
        }
        let from = centre.saturating_sub(width / 2).min(n - width);
        return (from, from + width, "centred on the worst shortfall");
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

/// A shortfall episode of one policy: series points [from, to) with seconds under capacity,
/// gaps of up to `EPISODE_GAP` points merged (one sale onset is one episode).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Episode {
    from: usize,
    to: usize,
    seconds: f64,
}

const EPISODE_GAP: usize = 5;

fn episodes(under: &[f64]) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    for (i, &u) in under.iter().enumerate() {
        if u <= 0.0 {
            continue;
        }
        match out.last_mut() {
            Some(e) if i <= e.to + EPISODE_GAP => {
                e.to = i + 1;
                e.seconds += u;
            }
            _ => out.push(Episode {
                from: i,
                to: i + 1,
                seconds: u,
            }),
        }
    }
    out
}

/// The policy's worst `count` shortfalls plotted, an hour around each, the policy and the
/// HPA side by side on one scale.
fn episode_charts(h: &mut String, results: &Results, count: usize) -> Result<(), SimulateError> {
    let Some(policy) = results.get("policy") else {
        return Ok(());
    };
    let mut list = episodes(&policy.series.under_seconds);
    list.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let n = policy.series.len();
    let res = policy.series.resolution;
    let width = ((3600.0 / res).round() as usize).clamp(1, n.max(1));
    let shown: Vec<&PolicyResult> = ["policy", "hpa"]
        .iter()
        .filter_map(|name| results.get(name))
        .collect();
    for (k, e) in list.iter().take(count).enumerate() {
        let centre = (e.from + e.to) / 2;
        let from = centre
            .saturating_sub(width / 2)
            .min(n.saturating_sub(width));
        let to = (from + width).min(n);
        let zooms: Vec<Points> = shown.iter().map(|p| zoom(p, from, to)).collect();
        let scale = zooms
            .iter()
            .map(|z| top(z, results.model.capacity_rps))
            .fold(0.0, f64::max);
        let _ = write!(
            h,
            "<h3>Shortfall {} of the policy: {} ({:.0} s under capacity)</h3>",
            k + 1,
            clock(e.from as f64 * res),
            e.seconds
        );
        for (p, z) in shown.iter().zip(&zooms) {
            let under: f64 = p.series.under_seconds[from..to].iter().sum();
            let title = format!("{}: {:.0} s under capacity in this hour", p.name, under);
            h.push_str(&chart(&title, z, results.model.capacity_rps, scale)?);
        }
    }
    Ok(())
}

/// "day 3, 14:05" for a time since the trace start.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!(
        "day {}, {:02}:{:02}",
        s / 86_400 + 1,
        (s % 86_400) / 3600,
        (s % 3600) / 60
    )
}

/// The policy's worst shortfalls, worst first, with what the HPA did over the same minutes.
fn worst_episodes(results: &Results, limit: usize) -> String {
    let (Some(policy), hpa) = (results.get("policy"), results.get("hpa")) else {
        return String::new();
    };
    let mut list = episodes(&policy.series.under_seconds);
    list.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let mut h = String::from("<h2>Where the policy fell short</h2>");
    if list.is_empty() {
        h.push_str("<p class=\"note\">Never under capacity.</p>");
        return h;
    }
    let _ = write!(
        h,
        "<p class=\"note\">{} episodes (shortfalls less than {} minutes apart are one); the worst {}:</p>\
         <table><tr><th>from</th><th>minutes</th><th>policy s under</th><th>hpa s under, same minutes</th>\
         <th>peak load rps</th></tr>",
        list.len(),
        EPISODE_GAP,
        list.len().min(limit)
    );
    let res = policy.series.resolution;
    for e in list.iter().take(limit) {
        let hpa_s: f64 = hpa.map_or(0.0, |p| {
            p.series.under_seconds[e.from..e.to.min(p.series.len())]
                .iter()
                .sum()
        });
        let peak = policy.series.load_max[e.from..e.to]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.1}</td></tr>",
            clock(e.from as f64 * res),
            (e.to - e.from) as f64 * res / 60.0,
            e.seconds,
            hpa_s,
            peak
        );
    }
    h.push_str("</table>");
    h
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
        // Replicas first, wide and light (the band above the capacity line is replicas still
        // starting), then ready capacity, then replicas again dashed on top: where every
        // replica is ready the two lines coincide and the dashes on the green line say so.
        c.draw_secondary_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.3)),
            REPLICAS.mix(0.35).stroke_width(5),
        ))
        .map_err(|e| plot(&e))?;
        c.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.2)),
            CAPACITY.stroke_width(2),
        ))
        .map_err(|e| plot(&e))?;
        c.draw_secondary_series(DashedLineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.3)),
            6,
            6,
            REPLICAS.stroke_width(1),
        ))
        .map_err(|e| plot(&e))?;
        c.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0 / unit, p.1)),
            LOAD.stroke_width(1),
        ))
        .map_err(|e| plot(&e))?;
        // Under capacity: a red band along the bottom wherever load exceeded ready capacity,
        // each mark at least `MIN_MARK_PX` wide and centred on its point, so one short
        // second in a month still shows.
        let band = y_max * 0.05;
        let step = points.get(1).map_or(60.0, |p| p.0 - points[0].0) / unit;
        let plot_px = f64::from(WIDTH.saturating_sub(140)).max(1.0);
        let min_width = (t1 - t0) / unit / plot_px * MIN_MARK_PX;
        let width = step.max(min_width);
        let (lo, hi) = (t0 / unit, t1 / unit);
        c.draw_series(points.iter().filter(|p| p.4 > 0.0).map(|p| {
            let mid = p.0 / unit + step / 2.0;
            let a = (mid - width / 2.0).max(lo);
            let b = (a + width).min(hi);
            Rectangle::new([(b - width, 0.0), (b, band)], SHORT.filled())
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
            "replicas, right axis, dashed (the light band above the green line: replicas still starting)",
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
        "<h1>Scaling simulation: {}</h1><p class=\"note\">Trace <code>{}</code>: {:.1} days, peak {} rps, \
         mean {} rps. Model: one replica saturates at {} rps; every policy targets {:.0}% of it \
         ({} rps per replica); a new replica serves {} s after it is created; metrics are scraped every {} s.</p>",
        escape(&t.name),
        escape(&t.source),
        t.duration_seconds / 86_400.0,
        figure(t.peak_rps),
        figure(t.mean_rps),
        figure(m.capacity_rps),
        m.target_utilization * 100.0,
        figure(m.target_rps()),
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
        let uc_ok = is_policy.then(|| p.vs_hpa.under_capacity_seconds.is_none_or(|r| r <= 1.0));
        let cost_h = is_policy.then(|| p.vs_hpa.replica_seconds.is_none_or(|r| r <= 1.02));
        let events_ok = is_policy.then(|| p.vs_hpa.scale_events.is_none_or(|r| r <= 1.5));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td{}>{}</td><td>{:.0}</td><td>{:.0}</td><td{}>{}</td><td>{}</td>\
             <td>{:.0}</td><td>{}</td><td{}>{}</td><td>{}</td></tr>",
            escape(&p.name),
            f.under_capacity_seconds,
            mark(uc_ok),
            ratio(p.vs_hpa.under_capacity_seconds),
            f.unserved_requests,
            f.replica_seconds,
            mark(cost_h),
            ratio(p.vs_hpa.replica_seconds),
            ratio(p.vs_oracle.replica_seconds),
            f.replica_seconds_per_burst,
            ratio(p.vs_hpa.replica_seconds_per_burst),
            mark(events_ok),
            f.scale_events,
            f.peak_replicas
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p class=\"note\">The floor for <b>policy</b> on every trace (green met, red missed): \
         under-capacity ≤ hpa, replica-seconds ≤ 1.02 × hpa, scale events ≤ 1.5 × hpa. A burst ({} in this trace) starts where load reaches 1.5 × \
         its trailing one-hour mean and exceeds it by 6 replicas' worth, and stays above 1.2 × that mean for at \
         least 3 minutes; it lasts until load falls under that, plus a 10-minute tail. Replica-s per burst is what a policy runs above the pre-burst need \
         during bursts, per burst. The oracle has exactly the needed replicas ready at every instant and pays \
         for each from its start, one start-up earlier.</p>",
        results.policies.first().map_or(0, |p| p.figures.bursts)
    );
    h.push_str(&worst_episodes(results, 10));
    episode_charts(&mut h, results, 3)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfalls_close_together_are_one_episode() {
        let mut under = vec![0.0; 40];
        under[3] = 10.0;
        under[6] = 5.0; // 3 points after: the same onset
        under[30] = 45.0;
        let e = episodes(&under);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].from, e[0].to, e[0].seconds), (3, 7, 15.0));
        assert_eq!((e[1].from, e[1].to, e[1].seconds), (30, 31, 45.0));
    }

    #[test]
    fn a_time_reads_as_day_and_clock() {
        assert_eq!(clock(86_400.0 + 3_600.0 * 14.0 + 300.0), "day 2, 14:05");
    }
}
