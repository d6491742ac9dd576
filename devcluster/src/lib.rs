//! devcluster: an in-process Kubernetes API server over HTTP, faithful enough that the
//! unmodified kube client, kube-runtime and a real `kubectl` work against it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::Error> {
//! let cluster = devcluster::DevCluster::start(devcluster::Config::default()).await?;
//! let client = cluster.client()?;
//! # drop(client);
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod bootstrap;
mod builtin;
mod convert;
mod crd;
mod discovery;
mod error;
mod faults;
mod gc;
mod handlers;
mod managed;
mod openapi;
mod patch;
mod protobuf;
mod resources;
mod reviews;
mod scale;
mod selector;
mod state;
mod store;
mod subresources;
mod table;
mod typed;
mod util;
mod watch;
pub mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use error::{ApiError, Cause, Error, Target};
pub use faults::{FaultConfig, FaultMix, FaultStats};

use crate::resources::Registry;
use crate::state::{Shared, State};
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Written as soon as the server listens, for kubectl.
    pub kubeconfig: Option<PathBuf>,
    /// Store events kept for watches to resume from; older resourceVersions get 410.
    pub watch_history: usize,
    /// Events a slow watcher may fall behind before it is told to relist.
    pub watch_buffer: usize,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Simulated workloads (Deployments, ReplicaSets, StatefulSets, Pods turning Ready).
    /// `None`, the default, serves a bare API server whose objects change only when a client
    /// changes them.
    pub workloads: Option<workloads::WorkloadConfig>,
    /// Fault injection (errors, delays, dropped connections, cut watches) on a share of
    /// the resource requests; `None`, the default, serves every request faithfully.
    pub faults: Option<FaultConfig>,
    /// Authentication and RBAC: requests need a bearer token (the kubeconfig's admin token,
    /// or one TokenRequest issued) and are authorized by the cluster's Roles, ClusterRoles
    /// and bindings. Off by default: every request is allowed.
    pub authz: bool,
    /// Append one JSON line per request here (user, verb, resource, namespace, name, code).
    pub audit: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            watch_history: 10_000,
            watch_buffer: 100_000,
            bookmark_interval: Duration::from_secs(5),
            workloads: None,
            faults: None,
            authz: false,
            audit: None,
        }
    }
}

impl Config {
    /// The default server with simulated workloads whose Pods start in `pod_startup`.
    pub fn with_workloads(pod_startup: Duration) -> Self {
        Config {
            workloads: Some(workloads::WorkloadConfig {
                pod_startup,
                ..workloads::WorkloadConfig::default()
            }),
            ..Config::default()
        }
    }
}

/// A running API server. `shutdown` stops it and waits; dropping it stops it too.
pub struct DevCluster {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The simulated workload controllers; dropping the set stops them.
    workloads: Option<JoinSet<()>>,
}

impl DevCluster {
    pub async fn start(config: Config) -> Result<Self, Error> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr.to_string(),
            source,
        })?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut state = State {
            registry: Registry::default(),
            store: Store::new(config.watch_history, config.watch_buffer),
            pod_births: config
                .workloads
                .as_ref()
                .map(|_| Arc::new(workloads::PodBirths::default())),
            tokens: auth::Tokens::default(),
        };
        let births = state.pod_births.clone();
        seed_namespaces(&mut state);
        bootstrap::seed_cluster(&mut state);
        let injector = config.faults.as_ref().map(faults::Injector::new);
        if let Some(f) = &config.faults {
            tracing::info!(rate = f.rate, seed = f.seed, mix = ?f.mix, "fault injection on");
        }
        let audit = match &config.audit {
            Some(path) => Some(auth::AuditLog::create(path).map_err(|source| Error::Audit {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let access = state::Access {
            authz: config.authz,
            admin_token: format!("devcluster-admin-{}", util::new_uid()),
            audit,
        };
        if config.authz {
            tracing::info!("authentication and RBAC authorization on");
        }
        let shared = Shared::new(
            state,
            config.bookmark_interval,
            rx.clone(),
            injector,
            access,
        );
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        let mut cluster = DevCluster {
            addr,
            url: format!("http://{addr}"),
            shared,
            shutdown: tx,
            task: Some(task),
            workloads: None,
        };
        if let Some(path) = &config.kubeconfig {
            cluster.write_kubeconfig(path)?;
        }
        if let Some(workloads) = config.workloads {
            // Through the HTTP API like any controller, so they see what clients see (bar
            // injected faults, unless `FaultConfig::workloads` asks for them).
            let client = cluster.spared_client()?;
            cluster.workloads = Some(workloads::spawn_with_births(
                client,
                workloads,
                births.unwrap_or_default(),
            ));
        }
        tracing::info!(url = %cluster.url, "devcluster listening");
        Ok(cluster)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, Error> {
        let config = self.kube_config()?;
        kube::Client::try_from(config).map_err(|source| Error::Client { source })
    }

    /// A kube config for this server, for clients that need other settings than
    /// `client()`'s (e.g. `default_retry = false` to see every injected 429).
    pub fn kube_config(&self) -> Result<kube::Config, Error> {
        // kube's rustls needs a process-level provider; a second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let uri: http::Uri = self.url.parse().map_err(|_| Error::Url {
            url: self.url.clone(),
        })?;
        let mut config = kube::Config::new(uri);
        if self.shared.authz {
            config.headers.push(bearer(&self.shared.admin_token)?);
        }
        Ok(config)
    }

    /// A client authenticated as the ServiceAccount `ns`/`name` (which must exist), with a
    /// token as TokenRequest issues it: with `Config::authz`, it may do what the account's
    /// RoleBindings and ClusterRoleBindings allow and gets a real server's 403 otherwise.
    /// E.g. apply `manifests/base/rbac.yaml`, then run the operator with this client.
    pub fn client_as_service_account(&self, ns: &str, name: &str) -> Result<kube::Client, Error> {
        let (token, _) =
            auth::service_account_token(&mut self.shared.lock(), ns, name, vec![], 365 * 24 * 3600)
                .map_err(|source| Error::Token {
                    who: format!("{ns}/{name}"),
                    source: Box::new(source),
                })?;
        self.client_with_token(&token)
    }

    /// A client authenticated as the user `name` in `groups` (and
    /// `system:authenticated`), for RBAC tests with User and Group subjects.
    pub fn client_as_user(&self, name: &str, groups: &[&str]) -> Result<kube::Client, Error> {
        let token = format!("devcluster-user-{}", util::new_uid());
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.shared.lock().tokens.insert(
            token.clone(),
            auth::IssuedToken {
                holder: auth::Holder::User(auth::User::named(name, &groups)),
                audiences: vec![],
                expires: None,
            },
        );
        self.client_with_token(&token)
    }

    fn client_with_token(&self, token: &str) -> Result<kube::Client, Error> {
        let mut config = self.kube_config()?;
        config
            .headers
            .retain(|(h, _)| *h != http::header::AUTHORIZATION);
        config.headers.push(bearer(token)?);
        kube::Client::try_from(config).map_err(|source| Error::Client { source })
    }

    /// The kubeconfig user's bearer token (meaningful with `Config::authz`).
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// A client that fault injection spares: the simulated workloads', and that of a harness
    /// or simulation that observes the cluster without being the thing under test.
    pub fn spared_client(&self) -> Result<kube::Client, Error> {
        let mut config = self.kube_config()?;
        if let Some(f) = &self.shared.faults {
            config.headers.push((
                http::HeaderName::from_static(faults::WORKLOAD_HEADER),
                f.workload_token().clone(),
            ));
        }
        kube::Client::try_from(config).map_err(|source| Error::Client { source })
    }

    /// How many faults were injected since the server started (0 without `Config::faults`).
    pub fn faults_injected(&self) -> u64 {
        self.fault_stats().total()
    }

    /// Injected faults by kind.
    pub fn fault_stats(&self) -> FaultStats {
        self.shared
            .faults
            .as_ref()
            .map(faults::Injector::stats)
            .unwrap_or_default()
    }

    pub fn kubeconfig_yaml(&self) -> String {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "devcluster", "cluster": {"server": self.url}}],
            "users": [{"name": "devcluster", "user": if self.shared.authz {
                json!({"token": self.shared.admin_token})
            } else {
                json!({})
            }}],
            "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": "devcluster", "namespace": "default"}}],
            "current-context": "devcluster",
            "preferences": {},
        });
        // JSON is YAML: kubectl and kube read it as a kubeconfig.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let err = |source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // Write then rename, so a reader polling the file never sees half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.kubeconfig_yaml()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Forget the watch history (as etcd compaction does): watches resuming from an
    /// older resourceVersion get 410 Expired and must relist.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// End every open watch stream, as an API server restart would; clients re-watch
    /// from their last resourceVersion (after `compact`, that gets them a 410).
    pub fn drop_watches(&self) {
        self.shared.watch_reset.send_modify(|n| *n += 1);
    }

    /// Server-side apply (field manager `devcluster`, forced) every object of a
    /// multi-document YAML, in order: CRDs first in the text are served by the time
    /// the objects after them are applied. Returns how many objects were applied.
    pub fn apply_manifests(&self, yaml: &str) -> Result<usize, Error> {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(yaml)
            .map_err(|source| Error::ParseManifests { source })?;
        let mut applied = 0;
        for (index, doc) in docs.into_iter().enumerate().filter(|(_, d)| d.is_object()) {
            let what = format!(
                "{} {}",
                doc.get("kind").and_then(|k| k.as_str()).unwrap_or("?"),
                util::meta_str(&doc, "name").unwrap_or("?")
            );
            let err = |source| Error::ApplyManifest {
                index,
                what: what.clone(),
                source: Box::new(source),
            };
            api::apply_object(&mut self.shared.lock(), doc, "devcluster").map_err(err)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.shared.lock().store.count()
    }

    /// Stop serving and wait until the listener and every connection are closed.
    pub async fn shutdown(mut self) {
        if let Some(mut workloads) = self.workloads.take() {
            workloads.shutdown().await;
        }
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Dropping the handle stops the server too (without waiting), so a test that panics
/// does not leave it serving for the rest of the process.
impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn bearer(token: &str) -> Result<(http::HeaderName, http::HeaderValue), Error> {
    let value =
        http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Token {
            who: "bearer header".into(),
            source: Box::new(ApiError::BadRequest(
                "token is not a valid header value".into(),
            )),
        })?;
    Ok((http::header::AUTHORIZATION, value))
}

/// The namespaces a real cluster starts with (each gets its `default` ServiceAccount and
/// `kube-root-ca.crt` as any new namespace does, in `api::create`).
fn seed_namespaces(state: &mut State) {
    let Some(info) = state.registry.find("", "v1", "namespaces") else {
        return;
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let opts = api::WriteOpts {
            manager: "devcluster".into(),
            ..Default::default()
        };
        if let Err(e) = api::create(state, &info, "v1", "", obj, &opts) {
            tracing::warn!(namespace = ns, error = %e, "could not seed namespace");
        }
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let svc = service_fn(move |req| handlers::handle(shared.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Open connections (watches included) end with the server.
    connections.shutdown().await;
}
