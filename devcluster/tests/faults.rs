//! Fault injection through the unmodified kube client and kube-runtime: faults really
//! happen, each kind reaches a client that does not retry, retrying clients still end up
//! with exactly the objects they meant, no injected error applies a write, a watcher over
//! cut streams misses nothing, and discovery never faults.
//!
//! Tests whose client sends one request at a time are deterministic: the fault sequence
//! depends only on the seed and the order of requests.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use common::*;
use devcluster::{Config, DevCluster, FaultConfig, FaultMix};
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::response::StatusSummary;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde_json::{Value, json};

async fn start_faulty(faults: FaultConfig) -> (DevCluster, Client) {
    start_with(Config {
        bookmark_interval: Duration::from_millis(200),
        faults: Some(faults),
        ..Config::default()
    })
    .await
}

/// A client that surfaces every 429 instead of honouring `Retry-After` itself.
fn plain_client(cluster: &DevCluster) -> Client {
    let mut config = cluster.kube_config().expect("kube config");
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Injected(u16),
    /// A real API answer (not an injected one), e.g. AlreadyExists or NotFound.
    Api(u16),
    /// The connection closed without an answer.
    Transport,
}

fn outcome<T>(r: &kube::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(kube::Error::Api(s)) if s.message.contains("injected fault") => {
            Outcome::Injected(s.code)
        }
        Err(kube::Error::Api(s)) => Outcome::Api(s.code),
        Err(_) => Outcome::Transport,
    }
}

/// Retries `f` until it succeeds; an answer `done` accepts (e.g. AlreadyExists for a
/// create) also ends it.
async fn retry<T, F, Fut>(what: &str, done: impl Fn(&kube::core::Status) -> bool, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    for _ in 0..200 {
        match f().await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if done(&s) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    panic!("{what} never succeeded");
}

fn already_exists(s: &kube::core::Status) -> bool {
    s.reason == "AlreadyExists"
}

fn not_found(s: &kube::core::Status) -> bool {
    s.code == 404
}

async fn ensure_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let api = Api::<Namespace>::all(client.clone());
    let pp = PostParams::default();
    retry("namespace create", already_exists, || api.create(&pp, &ns)).await;
}

/// The test's items (labelled `index`), not the namespace's kube-root-ca.crt.
async fn list_with_retry(api: &Api<ConfigMap>) -> Vec<ConfigMap> {
    for _ in 0..200 {
        if let Ok(list) = api.list(&ListParams::default().labels("index")).await {
            return list.items;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("list never succeeded");
}

async fn get_with_retry(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    for _ in 0..200 {
        if let Ok(o) = api.get(name).await {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("get {name} never succeeded");
}

fn item(i: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": format!("item-{i:03}"), "labels": {"index": i.to_string()}},
        "data": {"index": i.to_string()},
    }))
    .unwrap()
}

#[tokio::test]
async fn retried_creates_make_exactly_one_object_each_despite_faults() {
    let (cluster, client) = start_faulty(FaultConfig::with_rate(0.3).with_seed(11)).await;
    ensure_namespace(&client, "retry").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "retry");
    const N: usize = 60;
    let mut already = 0;
    for i in 0..N {
        let obj = item(i);
        loop {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => break,
                // An earlier attempt was applied but its answer lost.
                Err(kube::Error::Api(s)) if already_exists(&s) => {
                    already += 1;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    let items = list_with_retry(&api).await;
    let names: Vec<String> = items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("item-{i:03}")).collect();
    assert_eq!(names, expected, "exactly one object per name, none missing");
    for (i, o) in items.iter().enumerate() {
        assert_eq!(o.data.as_ref().unwrap()["index"], i.to_string());
    }
    let stats = cluster.fault_stats();
    assert!(cluster.faults_injected() > 0, "{stats:?}");
    // With this seed some creates were applied and their answers lost: the retry then
    // met AlreadyExists, which is the path this test is about.
    assert!(
        stats.lost_responses > 0 && already > 0,
        "{stats:?}, {already}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_client_without_retries_meets_every_kind_of_fault() {
    let (cluster, client) = start_faulty(FaultConfig::with_rate(0.5).with_seed(5)).await;
    let client_plain = plain_client(&cluster);
    ensure_namespace(&client, "plain").await;
    let api: Api<ConfigMap> = Api::namespaced(client_plain.clone(), "plain");

    let mut seen: BTreeMap<(&str, Outcome), usize> = BTreeMap::new();
    let mut statuses: HashMap<u16, kube::core::Status> = HashMap::new();
    let mut note = |op: &'static str, r: Result<(), kube::Error>| {
        let o = outcome(&r);
        if let (Outcome::Injected(code), Err(kube::Error::Api(s))) = (o, r) {
            statuses.entry(code).or_insert(*s);
        }
        *seen.entry((op, o)).or_default() += 1;
    };
    for i in 0..60 {
        let name = format!("c{i}");
        let obj: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}}))
                .unwrap();
        note(
            "create",
            api.create(&PostParams::default(), &obj).await.map(drop),
        );
        note("get", api.get(&name).await.map(drop));
        note("list", api.list(&ListParams::default()).await.map(drop));
        note(
            "patch",
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"b": "2"}})),
            )
            .await
            .map(drop),
        );
        note(
            "delete",
            api.delete(&name, &DeleteParams::default()).await.map(drop),
        );
    }
    // Watch faults are decided when the watch starts; the streams need not be read.
    for _ in 0..30 {
        note(
            "watch",
            api.watch(&WatchParams::default().timeout(1), "0")
                .await
                .map(drop),
        );
    }

    let outcomes: BTreeSet<Outcome> = seen.keys().map(|(_, o)| *o).collect();
    for wanted in [
        Outcome::Injected(500),
        Outcome::Injected(409),
        Outcome::Injected(429),
        Outcome::Transport,
    ] {
        assert!(
            outcomes.contains(&wanted),
            "{wanted:?} never seen: {seen:?}"
        );
    }
    for read in ["get", "list", "watch"] {
        assert!(
            !seen.contains_key(&(read, Outcome::Injected(409))),
            "a read got an injected 409: {seen:?}"
        );
    }
    for (code, reason) in [
        (500, "InternalError"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
    ] {
        let s = &statuses[&code];
        assert_eq!(s.status, Some(StatusSummary::Failure), "{s:?}");
        assert_eq!((s.code, s.reason.as_str()), (code, reason), "{s:?}");
    }
    let stats = cluster.fault_stats();
    for (kind, n) in [
        ("internal errors", stats.internal_errors),
        ("conflicts", stats.conflicts),
        ("429s", stats.too_many_requests),
        ("delays", stats.delays),
        ("drops", stats.drops),
        ("lost responses", stats.lost_responses),
        ("watch cuts", stats.watch_cuts),
    ] {
        assert!(n > 0, "no {kind}: {stats:?}");
    }
    assert_eq!(cluster.faults_injected(), stats.total());
    cluster.shutdown().await;
}

#[tokio::test]
async fn an_injected_429_is_a_status_with_retry_after() {
    let (cluster, client) = start_faulty(FaultConfig::with_rate(0.5).with_seed(2)).await;
    let client = {
        drop(client);
        plain_client(&cluster)
    };
    for _ in 0..200 {
        let req = http::Request::get("/api/v1/namespaces/default/configmaps")
            .body(kube::client::Body::empty())
            .unwrap();
        let Ok(res) = client.send(req).await else {
            continue;
        };
        if res.status() != 429 {
            continue;
        }
        assert_eq!(res.headers()["retry-after"], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["code"], 429);
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("injected fault")
        );
        cluster.shutdown().await;
        return;
    }
    panic!("no 429 in 200 requests");
}

#[tokio::test]
async fn injected_errors_never_apply_a_write() {
    let (cluster, client) = start_faulty(FaultConfig::with_rate(0.5).with_seed(9)).await;
    ensure_namespace(&client, "ledger").await;
    let plain: Api<ConfigMap> = Api::namespaced(plain_client(&cluster), "ledger");
    let obj: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "ledger"}, "data": {}})).unwrap();
    let pp = PostParams::default();
    retry("create", already_exists, || plain.create(&pp, &obj)).await;

    let before = cluster.fault_stats();
    let mut outcomes = vec![];
    for i in 0..100 {
        let r = plain
            .patch(
                "ledger",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {format!("k{i}"): "x"}})),
            )
            .await;
        let o = outcome(&r);
        assert!(
            matches!(o, Outcome::Ok | Outcome::Injected(_) | Outcome::Transport),
            "patch {i}: {r:?}"
        );
        outcomes.push(o);
    }
    let after = cluster.fault_stats();
    let data = get_with_retry(&plain, "ledger")
        .await
        .data
        .unwrap_or_default();
    let (mut lost, mut dropped) = (0, 0);
    for (i, o) in outcomes.iter().enumerate() {
        let applied = data.contains_key(&format!("k{i}"));
        match o {
            Outcome::Ok => assert!(applied, "patch {i} answered OK but is missing"),
            Outcome::Injected(code) => {
                assert!(
                    !applied,
                    "patch {i} answered an injected {code} but was applied"
                )
            }
            _ if applied => lost += 1,
            _ => dropped += 1,
        }
    }
    assert_eq!(lost, after.lost_responses - before.lost_responses);
    assert_eq!(dropped, after.drops - before.drops);
    assert!(lost > 0 && dropped > 0, "{after:?}");
    cluster.shutdown().await;
}

/// A backoff short enough for a test (kube-runtime's default starts at 800 ms and only
/// resets after two error-free minutes).
struct Quick;

impl Iterator for Quick {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(20))
    }
}

impl kube::runtime::utils::Backoff for Quick {
    fn reset(&mut self) {}
}

#[tokio::test]
async fn a_watcher_sees_every_object_despite_cut_streams() {
    // Cuts dominate the watch faults so that several happen while objects change.
    let mix = FaultMix {
        watch_cut: 40,
        ..FaultMix::default()
    };
    let (cluster, client) =
        start_faulty(FaultConfig::with_rate(0.5).with_seed(21).with_mix(mix)).await;
    ensure_namespace(&client, "watched").await;
    let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = watcher(
        watched,
        watcher::Config::default().labels("index").timeout(2),
    )
    .backoff(Quick)
    .reflect(writer)
    .applied_objects();
    let watching = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });

    let api: Api<ConfigMap> = Api::namespaced(plain_client(&cluster), "watched");
    const N: usize = 40;
    let (pp, patch_params, dp) = (
        PostParams::default(),
        PatchParams::default(),
        DeleteParams::default(),
    );
    let update = Patch::Merge(json!({"data": {"v": "2"}}));
    for i in 0..N {
        let obj = item(i);
        retry("create", already_exists, || api.create(&pp, &obj)).await;
    }
    for i in 0..N {
        let name = format!("item-{i:03}");
        retry(
            "patch",
            |_| false,
            || api.patch(&name, &patch_params, &update),
        )
        .await;
    }
    for i in (0..N).step_by(4) {
        let name = format!("item-{i:03}");
        retry("delete", not_found, || api.delete(&name, &dp)).await;
    }
    let expected: BTreeSet<String> = (0..N)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("item-{i:03}"))
        .collect();

    let converged = wait_for(60, || {
        let reader = reader.clone();
        let expected = expected.clone();
        let cuts = cluster.fault_stats().watch_cuts;
        async move {
            let state = reader.state();
            let names: BTreeSet<String> = state
                .iter()
                .map(|o| o.meta().name.clone().unwrap_or_default())
                .collect();
            let updated = state
                .iter()
                .all(|o| o.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("2"));
            names == expected && updated && cuts >= 2
        }
    })
    .await;
    let names: BTreeSet<String> = reader
        .state()
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    assert!(
        converged,
        "watcher state {names:?} vs {expected:?}; {:?}",
        cluster.fault_stats()
    );
    watching.abort();
    cluster.shutdown().await;
}

#[tokio::test]
async fn discovery_and_openapi_never_fault() {
    let (cluster, _) = start_faulty(FaultConfig::with_rate(1.0).with_seed(3)).await;
    let client = plain_client(&cluster);
    let paths = [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps",
        "/apis/apps/v1",
        "/version",
        "/openapi/v3",
        "/openapi/v3/api/v1",
        "/openapi/v3/apis/apps/v1",
    ];
    for _ in 0..20 {
        for path in paths {
            let req = http::Request::get(path)
                .body(kube::client::Body::empty())
                .unwrap();
            let res = client.send(req).await.expect("discovery answers");
            assert_eq!(res.status(), 200, "{path}");
        }
    }
    let discovery = kube::Discovery::new(client.clone()).run().await;
    assert!(discovery.is_ok(), "{:?}", discovery.err());
    assert!(client.apiserver_version().await.is_ok());
    assert_eq!(cluster.faults_injected(), 0);

    // The rate really is 1: every resource request faults (a delay being a fault too).
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for _ in 0..10 {
        let _ = api.list(&ListParams::default()).await;
    }
    assert_eq!(cluster.faults_injected(), 10);
    cluster.shutdown().await;
}

#[tokio::test]
async fn without_fault_config_nothing_is_injected() {
    let (cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(plain_client(&cluster), "default");
    drop(client);
    for i in 0..50 {
        api.create(&PostParams::default(), &item(i))
            .await
            .expect("create");
        api.list(&ListParams::default()).await.expect("list");
    }
    assert_eq!(cluster.faults_injected(), 0);
    assert_eq!(cluster.fault_stats(), Default::default());
    cluster.shutdown().await;
}
