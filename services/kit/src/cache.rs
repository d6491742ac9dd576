//! Redis cache-aside. A read tries Redis, and on a miss loads from Postgres once per key at
//! a time (single-flight: a stampede on a hot key costs one query, not one per request),
//! then stores the value with a TTL. Redis being slow or down never fails a request: every
//! command has a timeout, and after a failure the cache is bypassed for a short while so
//! requests do not each pay the timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::metrics::{CacheLabels, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to set up the Redis client for {url}")]
    Client {
        url: String,
        #[source]
        source: redis::RedisError,
    },
}

type Loaded = Result<Option<Bytes>, ApiError>;

/// Tunables; the defaults suit Redis on the same network.
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    pub ttl: Duration,
    /// Budget for one Redis command; past it the request goes to Postgres.
    pub op_timeout: Duration,
    /// How long Redis is skipped after a failed command.
    pub backoff: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            op_timeout: Duration::from_millis(100),
            backoff: Duration::from_secs(1),
        }
    }
}

struct Redis {
    conn: ConnectionManager,
    /// Milliseconds since `epoch` until which Redis is bypassed.
    down_until: AtomicU64,
    epoch: Instant,
}

pub struct Cache {
    redis: Option<Redis>,
    prefix: String,
    options: CacheOptions,
    metrics: Arc<Metrics>,
    flights: Mutex<HashMap<String, Arc<OnceCell<Loaded>>>>,
}

impl Cache {
    /// A cache on Redis at `url`. Connects lazily: a Redis that is down at start-up is
    /// bypassed until it comes up.
    pub fn new(
        url: &str,
        prefix: &str,
        options: CacheOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(|source| CacheError::Client {
            url: crate::config::redact(url),
            source,
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.op_timeout * 2))
            .set_response_timeout(Some(options.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|source| {
            CacheError::Client {
                url: crate::config::redact(url),
                source,
            }
        })?;
        Ok(Self {
            redis: Some(Redis {
                conn,
                down_until: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
            prefix: prefix.to_owned(),
            options,
            metrics,
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// No Redis: every read is a (single-flight) load.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            redis: None,
            prefix: String::new(),
            options: CacheOptions::default(),
            metrics,
            flights: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// The connection, unless Redis is disabled or in its back-off after a failure.
    fn usable(&self) -> Option<(&Redis, ConnectionManager)> {
        let redis = self.redis.as_ref()?;
        let now = redis.epoch.elapsed().as_millis() as u64;
        (now >= redis.down_until.load(Ordering::Relaxed)).then(|| (redis, redis.conn.clone()))
    }

    fn mark_down(&self, redis: &Redis, what: &str, err: &dyn std::fmt::Display) {
        let until = redis.epoch.elapsed() + self.options.backoff;
        let previous = redis
            .down_until
            .swap(until.as_millis() as u64, Ordering::Relaxed);
        // One line per outage, not one per request.
        if previous <= redis.epoch.elapsed().as_millis() as u64 {
            tracing::warn!(%err, op = what, backoff_ms = self.options.backoff.as_millis() as u64, "redis unavailable; bypassing the cache");
        }
    }

    async fn get_raw(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let (redis, mut conn) = self.usable()?;
        match tokio::time::timeout(self.options.op_timeout, conn.get::<_, Option<Vec<u8>>>(key))
            .await
        {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.mark_down(redis, "get", &e);
                None
            }
            Err(e) => {
                self.mark_down(redis, "get", &e);
                None
            }
        }
    }

    async fn set_raw(&self, key: &str, value: &[u8]) {
        let Some((redis, mut conn)) = self.usable() else {
            return;
        };
        let ttl = self.options.ttl.as_secs().max(1);
        match tokio::time::timeout(
            self.options.op_timeout,
            conn.set_ex::<_, _, ()>(key, value, ttl),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.mark_down(redis, "set", &e),
            Err(e) => self.mark_down(redis, "set", &e),
        }
    }

    /// Drops `key` after a write. If Redis is unreachable the entry lives until its TTL:
    /// the TTL is what bounds staleness across an outage.
    pub async fn invalidate(&self, key: &str) {
        let full = format!("{}{key}", self.prefix);
        let Some((redis, mut conn)) = self.usable() else {
            return;
        };
        match tokio::time::timeout(self.options.op_timeout, conn.del::<_, ()>(&full)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.mark_down(redis, "del", &e),
            Err(e) => self.mark_down(redis, "del", &e),
        }
    }

    /// Cache-aside read of `key`: Redis, else `load` (single-flight per key), storing what
    /// it finds. `Ok(None)` (not found) is not cached.
    pub async fn get_or_load<T, F, Fut>(&self, key: &str, load: F) -> Result<Option<T>, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, ApiError>>,
    {
        let full = format!("{}{key}", self.prefix);
        match self.get_json(&full, load).await? {
            None => Ok(None),
            Some(json) => serde_json::from_slice(&json.0)
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("failed to decode {full}: {e}"))),
        }
    }

    /// As [`Cache::get_or_load`], but hands back the JSON document itself: a hit is sent
    /// as stored, without decoding and encoding it again (the read path's main CPU cost
    /// after the network). Keys should carry the shape's version, since entries of an
    /// older shape are not decoded on the way out.
    pub async fn get_or_load_json<T, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> Result<Option<JsonBytes>, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, ApiError>>,
    {
        let full = format!("{}{key}", self.prefix);
        self.get_json(&full, load).await
    }

    async fn get_json<T, F, Fut>(&self, full: &str, load: F) -> Result<Option<JsonBytes>, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, ApiError>>,
    {
        match self.get_raw(full).await {
            Some(Some(bytes)) => {
                self.count("hit");
                return Ok(Some(JsonBytes(Bytes::from(bytes))));
            }
            Some(None) => self.count("miss"),
            None => self.count("bypass"),
        }

        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(full.to_owned()).or_default().clone()
        };
        let led = AtomicBool::new(false);
        let led_ref = &led;
        let loaded = cell
            .get_or_init(move || async move {
                led_ref.store(true, Ordering::Relaxed);
                // A flight that finished between our miss and now has filled Redis: look
                // again before going to the database.
                if let Some(Some(bytes)) = self.get_raw(full).await {
                    return Ok(Some(Bytes::from(bytes)));
                }
                self.metrics.cache_loads.inc();
                let value = load().await?;
                let Some(value) = value else {
                    return Ok(None);
                };
                let bytes =
                    Bytes::from(serde_json::to_vec(&value).map_err(|e| {
                        ApiError::Internal(format!("failed to encode {full}: {e}"))
                    })?);
                self.set_raw(full, &bytes).await;
                Ok(Some(bytes))
            })
            .await
            .clone();
        if !led.load(Ordering::Relaxed) {
            self.count("coalesced");
        }
        {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights.get(full).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                flights.remove(full);
            }
        }
        Ok(loaded?.map(JsonBytes))
    }
}

/// A JSON document as bytes, answered with `Content-Type: application/json`.
#[derive(Clone, Debug)]
pub struct JsonBytes(pub Bytes);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}
