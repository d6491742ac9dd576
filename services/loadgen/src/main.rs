//! loadgen: replays a trace (the CSV of `marketplace-operator simulate`) or a constant rate
//! against the domain services as an *open-loop* arrival process: each request has an
//! intended send time drawn from the trace's rate (Poisson arrivals), is sent then whether
//! or not earlier ones have answered, and its latency is measured from that intended time.
//! A slow server therefore shows up in the percentiles instead of silently slowing the
//! generator down (no coordinated omission). Latencies go into HDR histograms.

mod trace;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::trace::Trace;

#[derive(Parser, Debug)]
#[command(about = "Open-loop load generator for the marketplace services")]
struct Args {
    /// Trace CSV (`t_seconds,requests_per_second`) giving the arrival rate over time.
    #[arg(long, conflicts_with = "rate")]
    trace: Option<String>,
    /// A constant arrival rate (requests/s) instead of a trace.
    #[arg(long)]
    rate: Option<f64>,
    /// Multiplies the trace's rates.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Trace seconds replayed per real second (60: a trace minute per second).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Where in the trace to start (trace seconds).
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    /// How long to send (real seconds).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Leading seconds whose requests are sent but left out of the figures.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Base URL of every service (the monolith); the per-service URLs override it.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long)]
    users_url: Option<String>,
    #[arg(long)]
    inventory_url: Option<String>,
    #[arg(long)]
    payments_url: Option<String>,
    #[arg(long)]
    orders_url: Option<String>,
    /// Request mix as kind=weight: get_user, get_item, get_order, create_order, charge.
    #[arg(
        long,
        default_value = "get_user=50,get_order=30,get_item=10,create_order=10"
    )]
    mix: String,
    /// Users, items and orders created before the run (reads pick among them uniformly).
    #[arg(long, default_value_t = 200)]
    seed_users: usize,
    #[arg(long, default_value_t = 50)]
    seed_items: usize,
    #[arg(long, default_value_t = 200)]
    seed_orders: usize,
    /// Use existing ids instead of (or besides) seeded ones, as FIRST-LAST ranges.
    #[arg(long, value_parser = parse_range)]
    user_ids: Option<(i64, i64)>,
    #[arg(long, value_parser = parse_range)]
    item_ids: Option<(i64, i64)>,
    #[arg(long, value_parser = parse_range)]
    order_ids: Option<(i64, i64)>,
    /// Stock of each seeded item.
    #[arg(long, default_value_t = 100_000_000)]
    stock: i64,
    /// Per-request timeout (seconds); a timed-out request counts as an error at this latency.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Requests in flight beyond this are not sent and count as dropped.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Seed of the arrival process and of the request choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// Permit targets outside the loopback range (off: load tests stay on this machine).
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    GetUser,
    GetItem,
    GetOrder,
    CreateOrder,
    Charge,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "get_user" => Self::GetUser,
            "get_item" => Self::GetItem,
            "get_order" => Self::GetOrder,
            "create_order" => Self::CreateOrder,
            "charge" => Self::Charge,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Self::GetUser => "get_user",
            Self::GetItem => "get_item",
            Self::GetOrder => "get_order",
            Self::CreateOrder => "create_order",
            Self::Charge => "charge",
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("failed to seed {what}: {detail}")]
    Seed { what: &'static str, detail: String },
    #[error("failed to write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

struct Targets {
    users: String,
    inventory: String,
    payments: String,
    orders: String,
}

struct Ids {
    users: Vec<i64>,
    items: Vec<i64>,
    orders: Vec<i64>,
}

enum Outcome {
    Status(u16),
    Transport,
}

struct Sample {
    kind: Kind,
    intended: Duration,
    latency_us: u64,
    outcome: Outcome,
}

fn parse_range(s: &str) -> Result<(i64, i64), String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST")?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|e| format!("{a}: {e}"))?,
        b.trim().parse().map_err(|e| format!("{b}: {e}"))?,
    );
    if a < 1 || b < a || b - a > 10_000_000 {
        return Err(format!("{s}: need 1 <= FIRST <= LAST, at most 10^7 ids"));
    }
    Ok((a, b))
}

fn parse_mix(s: &str) -> Result<Vec<(Kind, f64)>, LoadError> {
    let mut mix = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, w) = part.split_once('=').ok_or_else(|| {
            LoadError::Usage(format!("--mix: expected kind=weight, got {part:?}"))
        })?;
        let kind = Kind::parse(k.trim())
            .ok_or_else(|| LoadError::Usage(format!("--mix: unknown kind {k:?}")))?;
        let w: f64 = w
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| LoadError::Usage(format!("--mix: bad weight {w:?}")))?;
        mix.push((kind, w));
    }
    if mix.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err(LoadError::Usage("--mix: weights sum to zero".into()));
    }
    Ok(mix)
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host.strip_prefix('[').map_or_else(
        || host.rsplit_once(':').map_or(host, |(h, _)| h),
        |h| h.split(']').next().unwrap_or(h),
    );
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Arrival times (real seconds from the start): Poisson with the trace's rate, the trace
/// time running `speed` times faster.
struct Arrivals {
    trace: Trace,
    scale: f64,
    speed: f64,
    from: f64,
    duration: f64,
    t: f64,
    rng: fastrand::Rng,
}

impl Iterator for Arrivals {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        loop {
            if self.t >= self.duration {
                return None;
            }
            let trace_t = self.from + self.t * self.speed;
            if trace_t >= self.trace.end() {
                return None;
            }
            let rate = self.trace.rate_at(trace_t) * self.scale;
            let boundary = (self.trace.next_change(trace_t) - self.from) / self.speed;
            if rate <= 0.0 {
                self.t = boundary;
                continue;
            }
            // 1 - U is in (0, 1]: no ln(0).
            let gap = -(1.0 - self.rng.f64()).ln() / rate;
            if self.t + gap >= boundary {
                // Memoryless: restart the draw at the rate change.
                self.t = boundary;
                continue;
            }
            self.t += gap;
            return (self.t < self.duration).then_some(self.t);
        }
    }
}

async fn seed(
    http: &reqwest::Client,
    t: &Targets,
    args: &Args,
    run: u64,
) -> Result<Ids, LoadError> {
    async fn post(
        http: &reqwest::Client,
        url: String,
        body: serde_json::Value,
        what: &'static str,
    ) -> Result<i64, LoadError> {
        let r = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| LoadError::Seed {
                what,
                detail: format!("{url}: {e}"),
            })?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.map_err(|e| LoadError::Seed {
            what,
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(LoadError::Seed {
                what,
                detail: format!("{url}: {status}: {v}"),
            });
        }
        v["id"].as_i64().ok_or_else(|| LoadError::Seed {
            what,
            detail: format!("no id in {v}"),
        })
    }
    let mut ids = Ids {
        users: Vec::new(),
        items: Vec::new(),
        orders: Vec::new(),
    };
    for i in 0..args.seed_users {
        ids.users.push(
            post(
                http,
                format!("{}/users", t.users),
                json!({"email": format!("u{i}-{run}@loadgen.test"), "name": format!("User {i}")}),
                "users",
            )
            .await?,
        );
    }
    for i in 0..args.seed_items {
        ids.items.push(
            post(http, format!("{}/items", t.inventory), json!({"sku": format!("LG-{run}-{i}"), "name": format!("Item {i}"), "price_minor": 100 + i as i64, "currency": "EUR", "stock": args.stock}), "items").await?,
        );
    }
    let mut rng = fastrand::Rng::with_seed(args.seed ^ 0x5eed);
    for _ in 0..args.seed_orders {
        if ids.users.is_empty() || ids.items.is_empty() {
            break;
        }
        let user = ids.users[rng.usize(..ids.users.len())];
        let item = ids.items[rng.usize(..ids.items.len())];
        ids.orders.push(
            post(
                http,
                format!("{}/orders", t.orders),
                json!({"user_id": user, "item_id": item, "quantity": 1}),
                "orders",
            )
            .await?,
        );
    }
    Ok(ids)
}

async fn send(
    http: &reqwest::Client,
    t: &Targets,
    ids: &Ids,
    kind: Kind,
    n: u64,
    run: u64,
    rng: &mut fastrand::Rng,
) -> Outcome {
    let pick = |v: &Vec<i64>, rng: &mut fastrand::Rng| {
        if v.is_empty() {
            1
        } else {
            v[rng.usize(..v.len())]
        }
    };
    let request = match kind {
        Kind::GetUser => http.get(format!("{}/users/{}", t.users, pick(&ids.users, rng))),
        Kind::GetItem => http.get(format!("{}/items/{}", t.inventory, pick(&ids.items, rng))),
        Kind::GetOrder => http.get(format!("{}/orders/{}", t.orders, pick(&ids.orders, rng))),
        Kind::CreateOrder => http
            .post(format!("{}/orders", t.orders))
            .header("idempotency-key", format!("lg-{run}-{n}"))
            .json(&json!({"user_id": pick(&ids.users, rng), "item_id": pick(&ids.items, rng), "quantity": 1})),
        Kind::Charge => http
            .post(format!("{}/charges", t.payments))
            .header("idempotency-key", format!("lg-{run}-{n}"))
            .json(&json!({"user_id": pick(&ids.users, rng), "amount_minor": 1 + rng.i64(..999), "currency": "EUR"})),
    };
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            // Read the body: the request is over when the response is.
            match r.bytes().await {
                Ok(_) => Outcome::Status(status),
                Err(_) => Outcome::Transport,
            }
        }
        Err(_) => Outcome::Transport,
    }
}

#[derive(Serialize, Default)]
struct KindReport {
    sent: u64,
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    transport_errors: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

#[derive(Serialize)]
struct Report {
    duration_s: f64,
    warmup_s: f64,
    offered_rps: f64,
    achieved_rps: f64,
    dropped: u64,
    total: KindReport,
    by_kind: BTreeMap<&'static str, KindReport>,
    /// How late the generator itself sent requests (p99, ms): large values mean the
    /// generator, not the server, was the bottleneck.
    send_lag_p99_ms: f64,
}

struct Tally {
    hist: Histogram<u64>,
    report: KindReport,
}

/// Microseconds from 1 µs to 10 min at 3 significant digits.
fn histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| LoadError::Usage(format!("histogram: {e}")))
}

impl Tally {
    fn new() -> Result<Self, LoadError> {
        Ok(Self {
            hist: histogram()?,
            report: KindReport::default(),
        })
    }
    fn add(&mut self, s: &Sample) {
        self.report.sent += 1;
        match s.outcome {
            Outcome::Status(c) if c < 400 => self.report.ok += 1,
            Outcome::Status(c) if c < 500 => self.report.client_errors += 1,
            Outcome::Status(_) => self.report.server_errors += 1,
            Outcome::Transport => self.report.transport_errors += 1,
        }
        self.hist.saturating_record(s.latency_us.max(1));
    }
    fn finish(mut self) -> KindReport {
        let ms = |us: u64| us as f64 / 1000.0;
        if !self.hist.is_empty() {
            self.report.p50_ms = ms(self.hist.value_at_quantile(0.5));
            self.report.p90_ms = ms(self.hist.value_at_quantile(0.9));
            self.report.p99_ms = ms(self.hist.value_at_quantile(0.99));
            self.report.p999_ms = ms(self.hist.value_at_quantile(0.999));
            self.report.max_ms = ms(self.hist.max());
            self.report.mean_ms = self.hist.mean() / 1000.0;
        }
        self.report
    }
}

async fn run(args: Args) -> Result<Report, LoadError> {
    let mix = parse_mix(&args.mix)?;
    let targets = Targets {
        users: args.users_url.clone().unwrap_or_else(|| args.url.clone()),
        inventory: args
            .inventory_url
            .clone()
            .unwrap_or_else(|| args.url.clone()),
        payments: args
            .payments_url
            .clone()
            .unwrap_or_else(|| args.url.clone()),
        orders: args.orders_url.clone().unwrap_or_else(|| args.url.clone()),
    };
    for u in [
        &targets.users,
        &targets.inventory,
        &targets.payments,
        &targets.orders,
    ] {
        if !args.allow_remote && !is_loopback(u) {
            return Err(LoadError::Usage(format!(
                "{u} is not on this machine; pass --allow-remote to load it"
            )));
        }
    }
    let trace = match (&args.trace, args.rate) {
        (Some(path), _) => Trace::from_file(path)?,
        (None, Some(rate)) if rate > 0.0 && rate.is_finite() => {
            Trace::constant(rate, args.duration * args.speed + args.from)
        }
        _ => {
            return Err(LoadError::Usage(
                "give --trace FILE.csv or --rate RPS".into(),
            ));
        }
    };
    if !(args.speed > 0.0 && args.duration > 0.0 && args.scale >= 0.0) {
        return Err(LoadError::Usage(
            "--speed and --duration must be positive, --scale not negative".into(),
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .pool_max_idle_per_host(4096)
        .build()
        .map_err(|e| LoadError::Usage(format!("http client: {e}")))?;
    let run_id = args.seed
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
    eprintln!(
        "seeding {} users, {} items, {} orders",
        args.seed_users, args.seed_items, args.seed_orders
    );
    let mut ids = seed(&http, &targets, &args, run_id).await?;
    for (range, v) in [
        (args.user_ids, &mut ids.users),
        (args.item_ids, &mut ids.items),
        (args.order_ids, &mut ids.orders),
    ] {
        if let Some((a, b)) = range {
            v.extend(a..=b);
        }
    }
    let ids = Arc::new(ids);
    let targets = Arc::new(targets);

    let total_weight: f64 = mix.iter().map(|(_, w)| w).sum();
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let arrivals = Arrivals {
        trace,
        scale: args.scale,
        speed: args.speed,
        from: args.from,
        duration: args.duration,
        t: 0.0,
        rng: fastrand::Rng::with_seed(args.seed.wrapping_mul(31).wrapping_add(7)),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut dropped = 0u64;
    let mut lag = histogram()?;
    let start = Instant::now();
    eprintln!("sending for {} s", args.duration);
    for (n, at) in arrivals.enumerate() {
        let intended = start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(intended).await;
        lag.saturating_record((Instant::now() - intended).as_micros() as u64 + 1);
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            dropped += 1;
            continue;
        }
        let mut pick = rng.f64() * total_weight;
        let kind = mix
            .iter()
            .find(|(_, w)| {
                pick -= w;
                pick < 0.0
            })
            .map_or(mix[0].0, |(k, _)| *k);
        let (http, targets, ids, tx, in_flight) = (
            http.clone(),
            targets.clone(),
            ids.clone(),
            tx.clone(),
            in_flight.clone(),
        );
        let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let outcome = send(&http, &targets, &ids, kind, n as u64, run_id, &mut task_rng).await;
            let latency_us = (Instant::now() - intended).as_micros() as u64;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(Sample {
                kind,
                intended: intended - start,
                latency_us,
                outcome,
            });
        });
    }
    drop(tx);
    let sent_window = start.elapsed().as_secs_f64().max(args.duration);
    let mut total = Tally::new()?;
    let mut by_kind: BTreeMap<Kind, Tally> = BTreeMap::new();
    let warmup = Duration::from_secs_f64(args.warmup);
    while let Some(s) = rx.recv().await {
        if s.intended < warmup {
            continue;
        }
        total.add(&s);
        match by_kind.entry(s.kind) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().add(&s),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Tally::new()?).add(&s),
        }
    }
    let measured = (sent_window - args.warmup).max(1e-9);
    let total = total.finish();
    Ok(Report {
        duration_s: args.duration,
        warmup_s: args.warmup,
        offered_rps: (total.sent + dropped) as f64 / measured,
        achieved_rps: total.ok as f64 / measured,
        dropped,
        send_lag_p99_ms: lag.value_at_quantile(0.99) as f64 / 1000.0,
        by_kind: by_kind
            .into_iter()
            .map(|(k, t)| (k.name(), t.finish()))
            .collect(),
        total,
    })
}

fn print(report: &Report) {
    println!(
        "offered {:.1} req/s, achieved {:.1} req/s (2xx/3xx), dropped {}, generator lag p99 {:.2} ms",
        report.offered_rps, report.achieved_rps, report.dropped, report.send_lag_p99_ms
    );
    println!(
        "{:<13} {:>8} {:>8} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind",
        "sent",
        "ok",
        "4xx",
        "5xx",
        "io",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    let row = |name: &str, r: &KindReport| {
        println!(
            "{:<13} {:>8} {:>8} {:>6} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            r.sent,
            r.ok,
            r.client_errors,
            r.server_errors,
            r.transport_errors,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms
        );
    };
    for (k, r) in &report.by_kind {
        row(k, r);
    }
    row("total", &report.total);
}

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let json_path = args.json.clone();
    match run(args).await {
        Ok(report) => {
            print(&report);
            if let Some(path) = json_path {
                let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                if let Err(source) = std::fs::write(&path, text) {
                    eprintln!("error: {}", LoadError::Write { path, source });
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_trace_rate() {
        let trace = Trace::parse("t", "0,100\n60,0\n120,400\n").expect("trace");
        let a = Arrivals {
            trace,
            scale: 1.0,
            speed: 60.0,
            from: 0.0,
            duration: 3.0,
            t: 0.0,
            rng: fastrand::Rng::with_seed(3),
        };
        let times: Vec<f64> = a.collect();
        let first = times.iter().filter(|t| **t < 1.0).count() as f64;
        let idle = times.iter().filter(|t| **t >= 1.0 && **t < 2.0).count();
        let third = times.iter().filter(|t| **t >= 2.0).count() as f64;
        assert!((first - 100.0).abs() < 35.0, "{first}");
        assert_eq!(idle, 0);
        assert!((third - 400.0).abs() < 80.0, "{third}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn only_loopback_targets_by_default() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost:1/x"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
        assert!(!is_loopback("http://example.org"));
    }

    #[test]
    fn the_mix_parses_and_rejects_nonsense() {
        assert_eq!(parse_mix("get_user=3,charge=1").expect("ok").len(), 2);
        assert!(parse_mix("get_users=1").is_err());
        assert!(parse_mix("get_user=0").is_err());
    }
}
