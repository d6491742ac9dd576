//! The typed client for calling a peer service: per-request timeouts, bounded retries with
//! full jitter on idempotent calls only (GET, PUT, DELETE, or any call carrying an
//! `Idempotency-Key`), a circuit breaker that fails fast while the peer is down, and the
//! caller's request id forwarded in `x-request-id`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Problem};
use crate::idempotency::IDEMPOTENCY_KEY;
use crate::middleware::{REQUEST_ID_HEADER, current_request_id, new_request_id};

#[derive(Clone, Copy, Debug)]
pub struct PeerOptions {
    pub connect_timeout: Duration,
    /// Budget for one attempt, connection included.
    pub request_timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit fails calls before letting one trial through.
    pub open_for: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("circuit to {peer} is open after repeated failures")]
    CircuitOpen { peer: String },
    #[error("failed to reach {peer}")]
    Transport {
        peer: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{peer} answered {status}: {}", problem.as_ref().and_then(|p| p.detail.as_deref()).unwrap_or(""))]
    Status {
        peer: String,
        status: StatusCode,
        problem: Option<Box<Problem>>,
    },
    #[error("failed to decode {peer}'s response")]
    Decode {
        peer: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to build a request to {peer}: {detail}")]
    Request { peer: String, detail: String },
}

impl PeerError {
    /// Whether the peer definitely refused the call (a 4xx other than 408/429): the outcome
    /// is known and retrying later will not change it. Anything else may or may not have
    /// taken effect.
    pub fn is_definite(&self) -> bool {
        match self {
            Self::Status {
                status, problem, ..
            } => {
                status.is_client_error()
                    && *status != StatusCode::REQUEST_TIMEOUT
                    && *status != StatusCode::TOO_MANY_REQUESTS
                    && problem
                        .as_ref()
                        .is_none_or(|p| p.kind() != "idempotency-in-progress")
            }
            Self::Request { .. } => true,
            _ => false,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Status { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }
}

impl From<PeerError> for ApiError {
    fn from(err: PeerError) -> Self {
        let peer = match &err {
            PeerError::CircuitOpen { peer }
            | PeerError::Transport { peer, .. }
            | PeerError::Status { peer, .. }
            | PeerError::Decode { peer, .. }
            | PeerError::Request { peer, .. } => peer.clone(),
        };
        ApiError::Upstream {
            peer,
            detail: err.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; a trial that never reports (cancelled) frees the slot after
    /// `open_for`.
    HalfOpen {
        since: Instant,
    },
}

pub struct PeerClient {
    name: String,
    base: String,
    http: reqwest::Client,
    options: PeerOptions,
    breaker: Mutex<Breaker>,
}

impl PeerClient {
    pub fn new(name: &str, base_url: &str, options: PeerOptions) -> Result<Self, PeerError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PeerError::Request {
                peer: name.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            name: name.to_owned(),
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            options,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn circuit(&self) -> CircuitState {
        match *self.breaker.lock().unwrap_or_else(|p| p.into_inner()) {
            Breaker::Closed { .. } => CircuitState::Closed,
            Breaker::Open { until } if Instant::now() < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    fn allow(&self) -> bool {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *b {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } if now >= until => {
                *b = Breaker::HalfOpen { since: now };
                true
            }
            Breaker::Open { .. } => false,
            Breaker::HalfOpen { since } if now >= since + self.options.open_for => {
                *b = Breaker::HalfOpen { since: now };
                true
            }
            Breaker::HalfOpen { .. } => false,
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let next = match (&*b, ok) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false)
                if failures + 1 < self.options.failure_threshold =>
            {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (Breaker::Open { until }, false) => Breaker::Open { until: *until },
            (_, false) => {
                tracing::warn!(peer = %self.name, open_ms = self.options.open_for.as_millis() as u64, "circuit opened");
                Breaker::Open {
                    until: Instant::now() + self.options.open_for,
                }
            }
        };
        *b = next;
    }

    /// Full jitter: a random delay up to the exponential bound, so retrying clients spread
    /// out instead of arriving together.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .options
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.options.max_delay);
        bound.mul_f64(fastrand::f64())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PeerError> {
        self.call::<(), T>(Method::GET, path, None, None).await
    }

    /// A POST; retried only when `idempotency_key` is given (the peer deduplicates it).
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotency_key: Option<&str>,
    ) -> Result<T, PeerError> {
        self.call(Method::POST, path, Some(body), idempotency_key)
            .await
    }

    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<T, PeerError> {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) || idempotency_key.is_some();
        let request_id = current_request_id().unwrap_or_else(new_request_id);
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.allow() {
                return Err(PeerError::CircuitOpen {
                    peer: self.name.clone(),
                });
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(REQUEST_ID_HEADER.as_str(), request_id.as_ref());
            if let Some(key) = idempotency_key {
                req = req.header(IDEMPOTENCY_KEY.as_str(), key);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let (err, retryable) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    self.record(!status.is_server_error());
                    if status.is_success() {
                        return resp.json::<T>().await.map_err(|source| PeerError::Decode {
                            peer: self.name.clone(),
                            source,
                        });
                    }
                    let problem = resp.json::<Problem>().await.ok().map(Box::new);
                    let retryable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                            | StatusCode::TOO_MANY_REQUESTS
                    ) || problem
                        .as_ref()
                        .is_some_and(|p| p.kind() == "idempotency-in-progress");
                    (
                        PeerError::Status {
                            peer: self.name.clone(),
                            status,
                            problem,
                        },
                        idempotent && retryable,
                    )
                }
                Err(source) => {
                    self.record(false);
                    // A refused connection never reached the peer: safe to retry any call.
                    let retryable = source.is_connect() || idempotent;
                    (
                        PeerError::Transport {
                            peer: self.name.clone(),
                            source,
                        },
                        retryable,
                    )
                }
            };
            if !retryable || attempt >= self.options.max_attempts {
                return Err(err);
            }
            let delay = self.backoff(attempt);
            tracing::debug!(peer = %self.name, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}
