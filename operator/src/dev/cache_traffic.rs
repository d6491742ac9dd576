//! The sample services' cache reads in `dev`: cache-aside GETs (and a SET with a TTL on each
//! miss) against the Redis standing in for their tier, at a rate that follows each service's
//! load. The tier's hit ratio, memory and ops/s in the live table are then Redis's own
//! figures, not made up.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Sample, ServiceLoad, SimulatedMetrics};
use crate::cache::Local;

/// Cache reads per simulated request: the demo replays thousands of requests per simulated
/// second at 200×, far more than a local Redis should take from a demo.
const READS_PER_REQUEST: f64 = 0.005;
/// Distinct keys per service; reads favour low ids (a few items are hot, most are cold).
const KEYS: f64 = 2_000.0;
/// How long a cached entry lives, so the demo leaves nothing behind for long.
const TTL_SECONDS: u64 = 300;
const TICK: Duration = Duration::from_millis(100);

/// The traffic, running until dropped.
pub struct Traffic {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Starts the traffic of every sample service that uses a cache. Without a Redis to talk
/// to, the demo goes on without it and says so.
pub async fn start(
    redis: &Local,
    metrics: Arc<SimulatedMetrics>,
    loads: &[ServiceLoad],
    samples: &[Sample],
) -> Traffic {
    let users: Vec<(ServiceLoad, String)> = loads
        .iter()
        .filter_map(|l| {
            let sample = samples
                .iter()
                .find(|s| s.name == l.name && s.namespace == l.namespace)?;
            Some((
                l.clone(),
                format!("{}dev:item:", sample.cache_prefix.clone()?),
            ))
        })
        .collect();
    if users.is_empty() {
        return Traffic { task: None };
    }
    let connection = match connect(redis).await {
        Ok(c) => c,
        Err(e) => {
            crate::say!(
                "no Redis at {}:{} ({e}): the cache tier is shown unreachable, and the demo goes on without cache traffic",
                redis.host,
                redis.port
            );
            return Traffic { task: None };
        }
    };
    Traffic {
        task: Some(tokio::spawn(run(connection, metrics, users))),
    }
}

async fn connect(redis: &Local) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{}:{}", redis.host, redis.port))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn run(
    mut connection: MultiplexedConnection,
    metrics: Arc<SimulatedMetrics>,
    users: Vec<(ServiceLoad, String)>,
) {
    let mut last = metrics.trace_time();
    // Fractions of a read carry over between ticks, so low loads still read now and then.
    let mut owed = vec![0.0f64; users.len()];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = metrics.trace_time();
        let elapsed = (now - last).max(0.0);
        last = now;
        let mut reads = Vec::new();
        for ((load, prefix), owed) in users.iter().zip(owed.iter_mut()) {
            *owed += load.at(now) * elapsed * READS_PER_REQUEST;
            let n = owed.floor().min(500.0);
            *owed -= n;
            for _ in 0..n as usize {
                seed = next(seed);
                let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
                reads.push(format!("{prefix}{}", (KEYS * u * u * u) as u64));
            }
        }
        if reads.is_empty() {
            continue;
        }
        let mut get = redis::pipe();
        for key in &reads {
            get.get(key);
        }
        let Ok(values): Result<Vec<Option<String>>, _> = get.query_async(&mut connection).await
        else {
            continue;
        };
        let mut fill = redis::pipe();
        for (key, _) in reads.iter().zip(&values).filter(|(_, v)| v.is_none()) {
            fill.set_ex(key, "cached", TTL_SECONDS).ignore();
        }
        let _: Result<(), _> = fill.query_async(&mut connection).await;
    }
}

/// splitmix64: a cheap, well-spread sequence; the demo needs no better.
fn next(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
