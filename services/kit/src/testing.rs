//! Test support (feature `testing`): each test gets its own database on the machine's
//! PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`), so tests
//! run in parallel; services run in-process on an ephemeral port, over real HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use utoipa_axum::router::OpenApiRouter;

use crate::{Config, Health, Kit, Metrics, app, serve_on};

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A URL nothing listens on: Redis or a peer that is down.
pub async fn closed_port_url(scheme: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("{scheme}://127.0.0.1:{port}")
}

/// An HTTP client (the process's crypto provider installed first, as reqwest needs).
pub fn http() -> reqwest::Client {
    crate::install_crypto_provider();
    reqwest::Client::new()
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let stem = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{stem}/{db}?{q}"),
        None => format!("{stem}/{db}"),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);
const PREFIX: &str = "svc_test_";

/// Creates an empty database for one test and returns its URL. Databases that earlier runs
/// left behind (over an hour old, by the timestamp in their name) are dropped on the way.
pub async fn fresh_database() -> String {
    crate::install_crypto_provider();
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connect to {admin}: {e} (is PostgreSQL running?)"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'svc\\_test\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in stale {
        let ts = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if ts.is_some_and(|t| t + 3600 < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
    let name = format!(
        "{PREFIX}{now}_{}_{}_{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    with_database(&admin, &name)
}

/// A service configuration for tests: `redis` None runs without a cache.
pub fn config(
    service: &str,
    database_url: &str,
    redis: Option<&str>,
    peers: &[(&str, &str)],
) -> Config {
    let mut env: Vec<(String, String)> = vec![("DATABASE_URL".into(), database_url.into())];
    if let Some(r) = redis {
        env.push(("REDIS_URL".into(), r.into()));
        // Keys of parallel tests must not meet in the shared Redis.
        env.push((
            "CACHE_KEY_PREFIX".into(),
            format!("test:{}:{service}:", fastrand::u64(..)),
        ));
    }
    let names: Vec<String> = peers.iter().map(|(d, _)| (*d).to_owned()).collect();
    for (domain, url) in peers {
        env.push((format!("{}_URL", domain.to_uppercase()), (*url).to_owned()));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Config::from_lookup(service, &names, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .expect("test config")
}

/// A migrated kit on `config`.
pub async fn kit(config: Config, migrator: &'static sqlx::migrate::Migrator) -> Kit {
    let kit = Kit::new(config, std::sync::Arc::new(Metrics::new())).expect("kit");
    kit.migrate(migrator).await.expect("migrations");
    kit
}

/// A service served in-process on 127.0.0.1 over real HTTP.
pub struct TestServer {
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(title: &str, kits: &[&Kit], routes: OpenApiRouter) -> Self {
        let limit = kits
            .first()
            .map_or(64 * 1024, |k| k.config.body_limit_bytes);
        let metrics = kits
            .first()
            .map_or_else(Default::default, |k| k.metrics.clone());
        let health = Health::new(kits);
        let router = app(title, routes, health.clone(), metrics, limit);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(
            listener,
            router,
            health,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        Self {
            url,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful shutdown: waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_shutdown(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A TCP proxy in front of a real server; `cut` closes it and every open connection, as if
/// the server behind it had stopped.
pub struct CutProxy {
    pub port: u16,
    task: JoinHandle<()>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl CutProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let upstream = upstream.to_owned();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tracked = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(handle);
            }
        });
        Self { port, task, conns }
    }

    pub fn cut(&self) {
        self.task.abort();
        for c in self.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
