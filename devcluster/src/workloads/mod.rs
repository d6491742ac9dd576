//! Simulated workloads, kwok-style: the controllers a real cluster runs in
//! kube-controller-manager and the kubelet, reduced to what moves `status` the way a real
//! cluster does. Deployments get ReplicaSets (rolling updates included), ReplicaSets and
//! StatefulSets get Pods, and Pods turn Ready one start-up delay after they appear.
//!
//! They talk to the API server through an ordinary `kube::Client`, as the real ones do, so
//! they exercise the same watch, patch and status paths as any operator under test.

mod deployment;
mod kubelet;
mod replicaset;
mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::task::JoinSet;

/// How simulated workloads behave.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Simulated time from a Pod's creation until it reports Ready.
    pub pod_startup: Duration,
    /// How much faster than real time simulated time runs (1.0 = real time). Tests use a high
    /// value so a 30 s start-up takes milliseconds.
    pub speed: f64,
    /// The node every Pod is "scheduled" to.
    pub node_name: String,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            pod_startup: Duration::from_secs(2),
            speed: 1.0,
            node_name: "devcluster-node".to_owned(),
        }
    }
}

impl WorkloadConfig {
    /// The real time a simulated duration takes.
    pub(crate) fn real(&self, simulated: Duration) -> Duration {
        if self.speed.is_finite() && self.speed > 0.0 {
            simulated.div_f64(self.speed)
        } else {
            simulated
        }
    }
}

/// Why a workload reconcile failed; every variant is transient (the API server was busy or an
/// object changed under us) and is retried.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("failed to {action} {kind} {name}")]
    Api {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) fn api_error(
    action: &'static str,
    kind: &'static str,
    name: impl Into<String>,
) -> impl FnOnce(kube::Error) -> WorkloadError {
    let name = name.into();
    move |source| WorkloadError::Api {
        action,
        kind,
        name,
        source,
    }
}

pub(crate) struct Ctx {
    pub client: Client,
    pub config: WorkloadConfig,
    pub kubelet: kubelet::KubeletState,
}

/// When the API server created each Pod. A kubelet that counts the start-up from the moment
/// it noticed a Pod adds its watch latency to every start-up; under a compressed clock (a
/// `speed` of 200 turns 50 ms into 10 simulated seconds) that would be a different model
/// from the one `simulate` runs. An in-process cluster can tell the kubelet the truth.
#[derive(Debug, Default)]
pub struct PodBirths {
    at: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl PodBirths {
    pub(crate) fn born(&self, uid: &str) {
        let mut map = self.at.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(uid.to_owned(), std::time::Instant::now());
    }

    /// When the Pod was created, forgetting it (the kubelet asks once per Pod).
    pub(crate) fn take(&self, uid: &str) -> Option<std::time::Instant> {
        let mut map = self.at.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid)
    }
}

/// Runs the workload controllers until the returned set is dropped or aborted. Pods start
/// up from when this kubelet first sees them.
pub fn spawn(client: Client, config: WorkloadConfig) -> JoinSet<()> {
    spawn_with_births(client, config, Arc::new(PodBirths::default()))
}

/// As `spawn`, with Pods starting up from their creation in the API server.
pub(crate) fn spawn_with_births(
    client: Client,
    config: WorkloadConfig,
    births: Arc<PodBirths>,
) -> JoinSet<()> {
    let ctx = Arc::new(Ctx {
        client,
        config,
        kubelet: kubelet::KubeletState::new(births),
    });
    let mut set = JoinSet::new();
    set.spawn(deployment::run(ctx.clone()));
    set.spawn(replicaset::run(ctx.clone()));
    set.spawn(statefulset::run(ctx.clone()));
    set.spawn(kubelet::run(ctx));
    set
}

/// Retry soon: conflicts and races resolve on the next look.
fn error_policy<K>(_obj: Arc<K>, error: &WorkloadError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(%error, "workload reconcile failed; retrying");
    Action::requeue(Duration::from_millis(200))
}

/// Drains a controller stream, logging outcomes at debug level.
async fn drain<S, T, E>(stream: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    stream
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "workload controller event");
            }
        })
        .await;
}

fn watcher_config() -> watcher::Config {
    watcher::Config::default()
}

/// Whether `child` names `owner` as its controller.
pub(crate) fn controlled_by<P: Resource, C: Resource>(child: &C, owner: &P) -> bool {
    let Some(uid) = owner.meta().uid.as_deref() else {
        return false;
    };
    child
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// A stable short hash of a pod template, as the Deployment controller's pod-template-hash.
pub(crate) fn template_hash(template: &impl serde::Serialize) -> String {
    // FNV-1a: stable across processes and Rust versions, unlike std's DefaultHasher.
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // The alphabet Kubernetes uses for names derived from hashes: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut n = h;
    for _ in 0..10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize] as char);
        n /= ALPHABET.len() as u32;
        if n == 0 {
            break;
        }
    }
    out
}

pub(crate) fn owner_ref<K: Resource<DynamicType = ()>>(
    owner: &K,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let mut r = owner.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// Whether the API server answered with this HTTP status (404 on a delete race, 409 on a
/// create race: both mean someone else already did it).
pub(crate) fn has_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
