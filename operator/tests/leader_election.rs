//! Leader election through the real binary: two `marketplace-operator run` processes against
//! one API server (a devcluster served by this test process), distinct identities, a 3 s
//! Lease. Exactly one leads and reconciles; killing it hands the work to the other within the
//! lease duration; SIGTERM makes the leader exit 0 and release the Lease on its way out.
//!
//! Every wait is bounded; the operator processes are killed when a test ends, pass or fail.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};
use marketplace_crds::v1alpha1::MarketplaceService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEASE_NAME: &str = "marketplace-operator";
const LEASE_NAMESPACE: &str = "default";
const LEASE_SECONDS: u64 = 3;
/// How long a process may take to start, connect and win an uncontended Lease.
const STARTUP: Duration = Duration::from_secs(30);
/// Lease duration plus a margin: the longest a standby may take to lead after the leader dies.
const TAKEOVER: Duration = Duration::from_secs(10);

/// A `marketplace-operator run` process, killed (SIGKILL) and reaped when dropped.
struct Operator {
    identity: &'static str,
    metrics_addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Operator {
    fn start(dir: &Path, kubeconfig: &Path, identity: &'static str) -> Operator {
        let metrics_addr = free_addr();
        let log = dir.join(format!("operator-{identity}.log"));
        let stderr = std::fs::File::create(&log).expect("create the operator's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_marketplace-operator"))
            .args(["run", "--identity", identity])
            .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--prometheus-url", "http://127.0.0.1:1"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube_lease_manager=debug")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("PROMETHEUS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start marketplace-operator run");
        Operator {
            identity,
            metrics_addr,
            log,
            child,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the operator's metrics server: (status code, body).
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_addr, path).await
    }

    /// Polls until the process exits, for at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the operator process") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the operator binds it right after).
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// A minimal HTTP/1.1 GET: no client library needed for a status line and a body.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The API server and the two operators of one test.
struct Setup {
    dir: PathBuf,
    client: Client,
    operators: Vec<Operator>,
    // Last, so the operators are killed before the API server stops.
    _cluster: devcluster::DevCluster,
}

impl Setup {
    async fn start(name: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("mkt-leader-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        let cluster = devcluster::DevCluster::start(devcluster::Config {
            kubeconfig: Some(kubeconfig.clone()),
            ..devcluster::Config::default()
        })
        .await
        .expect("start the devcluster");
        let crds = marketplace_operator::crd::all_crds_yaml().expect("CRD YAML");
        cluster.apply_manifests(&crds).expect("apply the CRDs");
        let client = cluster.client().expect("client");
        let operators = vec![
            Operator::start(&dir, &kubeconfig, "a"),
            Operator::start(&dir, &kubeconfig, "b"),
        ];
        Setup {
            dir,
            client,
            operators,
            _cluster: cluster,
        }
    }

    /// Both operators' logs, for a failure message.
    fn logs(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("----- operator {} -----\n{}", o.identity, o.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn operator(&self, identity: &str) -> &Operator {
        self.operators
            .iter()
            .find(|o| o.identity == identity)
            .expect("an operator of that identity")
    }

    fn operator_mut(&mut self, identity: &str) -> &mut Operator {
        self.operators
            .iter_mut()
            .find(|o| o.identity == identity)
            .expect("an operator of that identity")
    }

    /// The Lease's holder now (`None` while it does not exist or nobody holds it).
    async fn holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        leases
            .get_opt(LEASE_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    }

    /// The field managers that applied the Lease (server-side apply).
    async fn lease_appliers(&self) -> Vec<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let lease = leases.get(LEASE_NAME).await.expect("read the Lease");
        lease
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.operation.as_deref() == Some("Apply"))
            .filter_map(|m| m.manager)
            .collect()
    }

    /// Waits until the Lease is held by one of the operators; its identity.
    async fn wait_for_leader(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(h) = self.holder().await {
                assert!(
                    self.operators.iter().any(|o| o.identity == h),
                    "the Lease is held by {h:?}, which is neither operator"
                );
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "no operator held the Lease within {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `identity` holds the Lease; how long that took.
    async fn wait_for_holder(&self, identity: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.holder().await.as_deref() == Some(identity) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{identity} did not hold the Lease within {limit:?} (holder: {:?})\n{}",
                self.holder().await,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_service(&self, name: &str, replicas: i32) {
        let api: Api<MarketplaceService> = Api::namespaced(self.client.clone(), "default");
        let msvc: MarketplaceService = serde_json::from_value(serde_json::json!({
            "apiVersion": "marketplace.dev/v1alpha1",
            "kind": "MarketplaceService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"domain": name, "image": format!("registry.example/{name}:1"), "replicas": replicas},
        }))
        .expect("a MarketplaceService");
        api.create(&PostParams::default(), &msvc)
            .await
            .expect("create the MarketplaceService");
    }

    /// Waits until the Deployment of service `name` exists with `replicas`; how long that took.
    async fn wait_for_deployment(&self, name: &str, replicas: i32, limit: Duration) -> Duration {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), "default");
        let started = Instant::now();
        loop {
            let found = api.get_opt(name).await.ok().flatten();
            if found
                .as_ref()
                .and_then(|d| d.spec.replicas)
                .is_some_and(|r| r == replicas)
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "no Deployment {name} with {replicas} replicas within {limit:?} (found: {:?})\n{}",
                found.map(|d| d.spec.replicas),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // The operators die first (their own Drop); the logs stay only while debugging.
        self.operators.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn other(identity: &str) -> &'static str {
    if identity == "a" { "b" } else { "a" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_reconciles_and_a_standby_takes_over_when_it_is_killed() {
    let mut setup = Setup::start("kill").await;
    let leader = setup.wait_for_leader(STARTUP).await;
    let standby = other(&leader);

    // The leader reconciles; the standby does not (its metrics have no reconcile series).
    setup.create_service("first", 2).await;
    setup.wait_for_deployment("first", 2, STARTUP).await;
    let (code, body) = setup
        .operator(&leader)
        .get("/healthz")
        .await
        .expect("the leader answers /healthz");
    assert_eq!(code, 200, "/healthz: {body}");
    let (code, metrics) = setup
        .operator(&leader)
        .get("/metrics")
        .await
        .expect("the leader answers /metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("marketplace_operator_reconciles_total"),
        "the leader's /metrics has no reconcile count:\n{metrics}"
    );
    let (code, standby_metrics) = setup
        .operator(standby)
        .get("/metrics")
        .await
        .expect("the standby answers /metrics");
    assert_eq!(code, 200);
    assert!(
        !standby_metrics.contains("marketplace_operator_reconciles_total"),
        "the standby reconciled while {leader} held the Lease:\n{standby_metrics}"
    );
    let (code, _) = setup
        .operator(standby)
        .get("/healthz")
        .await
        .expect("the standby answers /healthz");
    assert_eq!(code, 200, "a standby is healthy too");
    let led: Vec<&str> = setup
        .operators
        .iter()
        .filter(|o| o.logs().contains("leading: starting the controllers"))
        .map(|o| o.identity)
        .collect();
    assert_eq!(led, [leader.as_str()], "{}", setup.logs());
    // Mutual exclusion rests on server-side apply conflicts: a replica may take an orphaned
    // Lease only under a field manager of its own, or two simultaneous takers both succeed.
    let appliers = setup.lease_appliers().await;
    assert_eq!(
        appliers,
        [format!("marketplace-operator-leader-election-{leader}")],
        "the Lease must be applied under the holder's own field manager"
    );
    // One holder, and it stays put across renewals (lease 3 s, renewed 1 s before expiry).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            setup.holder().await.as_deref(),
            Some(leader.as_str()),
            "the Lease changed hands while its holder was alive\n{}",
            setup.logs()
        );
    }

    // SIGKILL: no release, so the standby takes over once the Lease expires.
    let killed = Instant::now();
    setup
        .operator_mut(&leader)
        .child
        .kill()
        .expect("kill the leader");
    setup.create_service("second", 3).await;
    let took_lease = setup.wait_for_holder(standby, TAKEOVER).await;
    let remaining = TAKEOVER.saturating_sub(killed.elapsed());
    setup.wait_for_deployment("second", 3, remaining).await;
    let reconciled = killed.elapsed();
    assert!(
        reconciled <= TAKEOVER,
        "the new leader reconciled {reconciled:?} after the kill"
    );
    let (code, metrics) = setup
        .operator(standby)
        .get("/metrics")
        .await
        .expect("the new leader answers /metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("marketplace_operator_reconciles_total"));
    eprintln!(
        "leader {leader} killed; {standby} held the Lease after {took_lease:?} and reconciled \
         a new service after {reconciled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_the_leader_exit_zero_and_release_the_lease() {
    let mut setup = Setup::start("term").await;
    let leader = setup.wait_for_leader(STARTUP).await;
    let standby = other(&leader);
    setup.create_service("first", 1).await;
    setup.wait_for_deployment("first", 1, STARTUP).await;

    let pid = setup.operator(&leader).child.id().to_string();
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill -TERM");
    assert!(kill.success(), "kill -TERM {pid} failed");
    let status = setup
        .operator_mut(&leader)
        .wait_exit(Duration::from_secs(15))
        .await;
    let exited = sent.elapsed();
    let Some(status) = status else {
        panic!(
            "the leader did not exit within 15 s of SIGTERM\n{}",
            setup.logs()
        );
    };
    assert!(
        status.success(),
        "the leader exited with {status} on SIGTERM\n{}",
        setup.logs()
    );
    // Released on the way out: the Lease no longer names the old leader, though its term
    // (renewed at most 2 s ago, 3 s long) has not run out.
    let holder = setup.holder().await;
    assert_ne!(
        holder.as_deref(),
        Some(leader.as_str()),
        "the Lease still names {leader} after it exited ({exited:?} after SIGTERM)\n{}",
        setup.logs()
    );
    // The standby notices by its own schedule (it sleeps until the released term's end), so
    // it leads within one lease duration, not after an expiry plus the forced release.
    let took_lease = setup
        .wait_for_holder(standby, Duration::from_secs(LEASE_SECONDS + 3))
        .await;
    setup.create_service("second", 2).await;
    setup.wait_for_deployment("second", 2, TAKEOVER).await;
    eprintln!(
        "leader {leader} exited 0 {exited:?} after SIGTERM; {standby} held the Lease {took_lease:?} later"
    );
}
