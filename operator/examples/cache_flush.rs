//! Benchmark driver for bench/cache-flush.sh: a prefix flush of N keys among 2N, by the
//! operator's flush (SCAN + UNLINK in scripted batches) and by the naive KEYS + DEL, with
//! Redis's command latency sampled alongside by a separate client (a PING every
//! millisecond), as a service sharing the tier would see it.
//!
//! Usage: cache_flush [--port 6390] [--keys 1000000] [--batch 1000]

use std::time::{Duration, Instant};

use marketplace_operator::cache::flush::{self, BATCH};
use marketplace_operator::cache::{Admin, Auth, Route, Timeouts};
use redis::aio::MultiplexedConnection;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(port: u16) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("the benchmark's Redis answers")
}

/// `keys` keys under `cart:` and as many others.
async fn populate(c: &mut MultiplexedConnection, keys: u64) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(c)
        .await
        .expect("flushall");
    let mut i = 0;
    while i < keys {
        let mut p = redis::pipe();
        for n in i..(i + 5_000).min(keys) {
            p.set(format!("cart:{n}"), "v").ignore();
            p.set(format!("orders:{n}"), "v").ignore();
        }
        let _: () = p.query_async(c).await.expect("populate");
        i += 5_000;
    }
}

/// PINGs Redis every millisecond until stopped; answers each round trip in microseconds.
fn probe(
    port: u16,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<u64>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut c = connect(port).await;
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => return samples,
                _ = tick.tick() => {
                    let started = Instant::now();
                    let _: String = redis::cmd("PING").query_async(&mut c).await.expect("ping");
                    samples.push(started.elapsed().as_micros() as u64);
                }
            }
        }
    });
    (stop, task)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn report(
    name: &str,
    elapsed: Duration,
    removed: u64,
    probe: tokio::task::JoinHandle<Vec<u64>>,
) {
    let mut latencies = probe.await.expect("probe");
    latencies.sort_unstable();
    println!(
        "{name:<22} {:>9.2} s  {removed:>9} keys removed  PING p50 {:>7.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} samples)",
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let port = arg("--port", 6390) as u16;
    let keys = arg("--keys", 1_000_000);
    let batch = arg("--batch", BATCH as u64) as usize;
    let mut c = connect(port).await;
    println!(
        "{keys} keys under cart: among {} (redis-server on 127.0.0.1:{port})",
        2 * keys
    );

    populate(&mut c, keys).await;
    let route = Route {
        host: "127.0.0.1".into(),
        port,
        auth: Auth::None,
    };
    let mut admin = Admin::connect(
        &route,
        None,
        Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(60),
        },
    )
    .await
    .expect("admin");
    let (stop, samples) = probe(port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let progress = flush::progress_key("bench", "1");
    let done = flush::flush_prefix(&mut admin, &progress, "cart:", batch, None)
        .await
        .expect("flush");
    let elapsed = started.elapsed();
    let _ = stop.send(());
    report(
        &format!("SCAN {batch} + UNLINK"),
        elapsed,
        done.removed,
        samples,
    )
    .await;
    let left: u64 = redis::cmd("DBSIZE")
        .query_async(&mut c)
        .await
        .expect("dbsize");
    assert_eq!(left, keys + 1, "the others and the progress record remain");

    populate(&mut c, keys).await;
    let (stop, samples) = probe(port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let found: Vec<String> = redis::cmd("KEYS")
        .arg("cart:*")
        .query_async(&mut c)
        .await
        .expect("keys");
    let mut removed = 0u64;
    for chunk in found.chunks(10_000) {
        let n: u64 = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .expect("del");
        removed += n;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    report("KEYS + DEL (naive)", elapsed, removed, samples).await;
}
