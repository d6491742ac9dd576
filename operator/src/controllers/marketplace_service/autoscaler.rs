//! The autoscaler: one task per MarketplaceService with a `scaling` block. It wakes every
//! `pollIntervalSeconds` on the context's clock, reads the metrics, asks its
//! `scaling::Engine`, and applies the Deployment's `spec.replicas` under its own field
//! manager. The engine's state lives in the task, so windows and seasonality survive spec
//! edits (`Engine::update_policy`). The reconcile starts, updates and stops the tasks.
//!
//! The task writes the decision fields of the status (desiredReplicas, mode, keyMetric,
//! currentMetrics, recentDecisions, lastScaleTime) with its own field manager; the
//! conditions stay the reconcile's, which reads the task's `Snapshot` and is triggered when
//! a condition's input flips.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use marketplace_crds::v1alpha1::{
    MAX_RECENT_DECISIONS, MarketplaceService, MetricSpec, MetricStatus, MetricType,
    ScalingDecisionRecord,
};
use serde_json::json;
use tokio::sync::watch;

use super::validate::Scaling;
use crate::controllers::clock::time_at;
use crate::controllers::{AUTOSCALER_MANAGER, Context, error_chain};
use crate::metrics::ServiceRef;
use crate::scaling::{Decision, Engine, Limit, MetricReading, Mode, Observation};

/// What the reconcile last saw of the service's Deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `spec.replicas`; `None` until the Deployment exists.
    pub replicas: Option<u32>,
    pub ready: u32,
}

/// The latest tick, as the reconcile needs it for the conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Ticks run so far.
    pub ticks: u64,
    pub last: Option<Decision>,
    /// Why metrics were missing on the last tick, if any were.
    pub metrics_error: Option<String>,
    /// Whether at least one metric was read on the last tick.
    pub any_metric: bool,
}

impl Snapshot {
    /// The inputs of the conditions: when this changes, the reconcile must run.
    fn condition_key(&self) -> (bool, bool, bool, Option<Limit>) {
        (
            self.ticks > 0,
            self.metrics_error.is_some(),
            self.any_metric,
            self.last.and_then(|d| d.explanation.limit.map(|(l, _)| l)),
        )
    }
}

struct Handle {
    uid: String,
    spec: watch::Sender<Arc<Scaling>>,
    observed: watch::Sender<Observed>,
    snapshot: Arc<Mutex<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running autoscaler tasks, by namespace/name.
#[derive(Default)]
pub struct Autoscalers {
    tasks: Mutex<HashMap<(String, String), Handle>>,
}

/// The controller's view of MarketplaceServices.
pub type Services = Store<DeserializeGuard<MarketplaceService>>;

/// How a task reaches the reconcile: a request to reconcile its object again.
pub type Trigger =
    futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<MarketplaceService>>>;

impl Autoscalers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Handle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the task of a service, or hands a running one its new policy and the latest
    /// Deployment state. A task of an older object of the same name is replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn ensure(
        self: &Arc<Self>,
        ctx: &Arc<Context>,
        trigger: &Trigger,
        services: &Services,
        namespace: &str,
        name: &str,
        uid: &str,
        scaling: &Scaling,
        observed: Observed,
        history: &[ScalingDecisionRecord],
    ) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut tasks = self.lock();
        if let Some(h) = tasks.get(&key)
            && h.uid == uid
            && !h.task.is_finished()
        {
            h.spec.send_if_modified(|s| {
                if **s == *scaling {
                    false
                } else {
                    *s = Arc::new(scaling.clone());
                    true
                }
            });
            h.observed.send_if_modified(|o| {
                let changed = *o != observed;
                *o = observed;
                changed
            });
            return;
        }
        let (spec_tx, spec_rx) = watch::channel(Arc::new(scaling.clone()));
        let (observed_tx, observed_rx) = watch::channel(observed);
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let task = Task {
            ctx: ctx.clone(),
            trigger: trigger.clone(),
            services: services.clone(),
            registry: Arc::downgrade(self),
            uid: uid.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: spec_rx,
            observed: observed_rx,
            snapshot: snapshot.clone(),
            decisions: history.iter().take(MAX_RECENT_DECISIONS).cloned().collect(),
        };
        ctx.telemetry.autoscaler_started();
        let telemetry = ctx.telemetry.clone();
        let join = tokio::spawn(async move {
            task.run().await;
            telemetry.autoscaler_stopped();
        });
        tasks.insert(
            key,
            Handle {
                uid: uid.to_owned(),
                spec: spec_tx,
                observed: observed_tx,
                snapshot,
                task: join,
            },
        );
    }

    /// Stops the task of a service; whether one was running.
    pub fn stop(&self, namespace: &str, name: &str) -> bool {
        let removed = self.lock().remove(&(namespace.to_owned(), name.to_owned()));
        if removed.is_some() {
            tracing::info!(namespace, name, "autoscaler stopped");
        }
        removed.is_some()
    }

    /// Stops every task whose service is not in `alive` (namespace, name, uid).
    pub fn retain(&self, alive: impl Fn(&str, &str, &str) -> bool) {
        self.lock().retain(|(ns, name), h| alive(ns, name, &h.uid));
    }

    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<Snapshot> {
        let tasks = self.lock();
        let h = tasks.get(&(namespace.to_owned(), name.to_owned()))?;
        let s = h.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        Some(s.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Task {
    ctx: Arc<Context>,
    trigger: Trigger,
    services: Services,
    registry: Weak<Autoscalers>,
    uid: String,
    namespace: String,
    name: String,
    spec: watch::Receiver<Arc<Scaling>>,
    observed: watch::Receiver<Observed>,
    snapshot: Arc<Mutex<Snapshot>>,
    decisions: VecDeque<ScalingDecisionRecord>,
}

/// What the last status write said, so an unchanged tick writes nothing.
#[derive(PartialEq)]
struct Written {
    desired: u32,
    mode: Mode,
    key_metric: Option<String>,
    decisions: usize,
}

impl Task {
    async fn run(mut self) {
        self.run_ticks().await;
        // Leave the registry unless a newer task of the same name took the slot.
        if let Some(registry) = self.registry.upgrade() {
            let key = (self.namespace.clone(), self.name.clone());
            let mut tasks = registry.lock();
            if tasks.get(&key).is_some_and(|h| h.uid == self.uid) {
                tasks.remove(&key);
            }
        }
    }

    /// Whether the service this task scales is still there (the same object, not a new
    /// one of the same name).
    fn alive(&self) -> bool {
        let key = ObjectRef::new(&self.name).within(&self.namespace);
        self.services.get(&key).is_some_and(|o| {
            o.0.as_ref().ok().and_then(|m| m.metadata.uid.as_deref()) == Some(self.uid.as_str())
        })
    }

    async fn run_ticks(&mut self) {
        let mut scaling = self.spec.borrow_and_update().clone();
        let mut engine = match Engine::new(scaling.policy.clone()) {
            Ok(e) => e,
            Err(error) => {
                // validate() resolved this policy already; a failure here is a bug, reported
                // rather than panicked on.
                tracing::error!(namespace = %self.namespace, name = %self.name, %error, "autoscaler cannot start");
                return;
            }
        };
        tracing::info!(namespace = %self.namespace, name = %self.name, "autoscaler started");
        let clock = self.ctx.clock;
        Box::pin(self.backfill(&mut engine, &scaling.metrics)).await;
        // Replicas the task applied and the Deployment has not shown yet.
        let mut pending: Option<u32> = None;
        let mut written: Option<Written> = None;
        // Every service ticks on the same grid (multiples of its poll interval), so one
        // batched metrics query per tick serves them all.
        let first_poll = engine.policy().poll_interval.max(1.0);
        let mut next = (clock.now() / first_poll).ceil() * first_poll;
        loop {
            clock.sleep_until(next).await;
            if !self.alive() {
                tracing::info!(namespace = %self.namespace, name = %self.name, "service deleted; autoscaler stops");
                return;
            }
            if self.spec.has_changed().unwrap_or(false) {
                scaling = self.spec.borrow_and_update().clone();
                if let Err(error) = engine.update_policy(scaling.policy.clone()) {
                    tracing::error!(namespace = %self.namespace, name = %self.name, %error, "policy update refused; keeping the previous one");
                }
            }
            let poll = engine.policy().poll_interval;
            next += poll;
            let observed = *self.observed.borrow();
            let Some(spec_replicas) = observed.replicas else {
                continue;
            };
            if pending == Some(spec_replicas) {
                pending = None;
            }
            let current = pending.unwrap_or(spec_replicas);
            let read_at = Instant::now();
            let results = self
                .ctx
                .metrics
                .read_all(
                    ServiceRef {
                        namespace: &self.namespace,
                        name: &self.name,
                        ready_replicas: observed.ready,
                    },
                    &scaling.metrics,
                )
                .await;
            let readings: Vec<MetricReading> = results.iter().map(|(r, _)| *r).collect();
            let errors: Vec<String> = results
                .iter()
                .filter_map(|(_, e)| e.as_ref())
                .map(|e| {
                    self.ctx.telemetry.metric_failure(e.reason());
                    error_chain(e)
                })
                .collect();
            let now = clock.now();
            let decision = engine.decide(&Observation {
                now,
                current_replicas: current,
                ready_replicas: observed.ready,
                metrics: &readings,
                pods: &[],
            });
            self.ctx.telemetry.decision(mode_name(decision.mode));
            if decision.desired != current {
                // The permit is taken before the request is built: a task waiting for one
                // holds a few bytes, not a request in flight. (A closed semaphore would mean
                // the context is gone; write anyway rather than stall.)
                let permit = self.ctx.autoscaler_writes.acquire().await.ok();
                let applied = Box::pin(self.apply_replicas(decision.desired)).await;
                drop(permit);
                match applied {
                    Ok(()) => {
                        pending = Some(decision.desired);
                        self.ctx
                            .telemetry
                            .scale_latency(read_at.elapsed().as_secs_f64());
                        Box::pin(self.record(now, current, &decision)).await;
                    }
                    Err(e) if is_not_found(&e) => {
                        // The Deployment is gone: the service was deleted (the reconcile will
                        // recreate it otherwise). Stop unless the object still exists.
                        if !self.alive() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(namespace = %self.namespace, name = %self.name, %error, "failed to apply replicas; retrying next tick");
                    }
                }
            }
            let snapshot = Snapshot {
                ticks: self.lock_snapshot().ticks + 1,
                last: Some(decision),
                metrics_error: (!errors.is_empty()).then(|| errors.join("; ")),
                any_metric: readings.iter().any(|r| r.value.is_some()),
            };
            let (flipped, metrics_news) = {
                let mut s = self.lock_snapshot();
                let flipped = s.condition_key() != snapshot.condition_key();
                let news = match (&s.metrics_error, &snapshot.metrics_error) {
                    (None, Some(e)) => Some((EventType::Warning, "MetricsUnavailable", e.clone())),
                    (Some(_), None) if s.ticks > 0 => Some((
                        EventType::Normal,
                        "MetricsAvailable",
                        "every metric is read again".to_owned(),
                    )),
                    _ => None,
                };
                *s = snapshot;
                (flipped, news)
            };
            if let Some((type_, reason, note)) = metrics_news {
                Box::pin(self.publish(type_, reason, "ReadMetrics", note)).await;
            }
            if flipped {
                let _ = self
                    .trigger
                    .unbounded_send(ObjectRef::new(&self.name).within(&self.namespace));
            }
            let key_metric = key_metric(&scaling.metrics, &readings, &decision);
            let now_written = Written {
                desired: decision.desired,
                mode: decision.mode,
                key_metric: key_metric.clone(),
                decisions: self.decisions.len(),
            };
            if written.as_ref() != Some(&now_written) {
                // Boxed, as the other API calls: a task's future is as large as the largest
                // thing it awaits, and 10,000 sleeping tasks would each carry that size.
                let permit = self.ctx.autoscaler_writes.acquire().await.ok();
                let wrote =
                    Box::pin(self.write_status(&scaling.metrics, &readings, &decision, key_metric))
                        .await;
                drop(permit);
                match wrote {
                    Ok(()) => written = Some(now_written),
                    Err(e) if is_not_found(&e) => {
                        if !self.alive() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(namespace = %self.namespace, name = %self.name, %error, "failed to write the autoscaler status; retrying next tick");
                    }
                }
            }
            if next < clock.now() - poll {
                // A stalled task (a slow API server) skips the ticks it missed.
                next = (clock.now() / poll).ceil() * poll;
            }
        }
    }

    /// A restarted operator must not forget the season: the predictor is given the demand
    /// the metric source recorded over the seasons it keeps.
    async fn backfill(&self, engine: &mut Engine, metrics: &[MetricSpec]) {
        let Some(p) = engine.policy().predictive.clone() else {
            return;
        };
        let longest = p.seasons.iter().copied().fold(0.0, f64::max);
        let end = self.ctx.clock.now();
        let start = end - longest * f64::from(p.seasons_kept);
        let ready = self.observed.borrow().ready;
        let service = ServiceRef {
            namespace: &self.namespace,
            name: &self.name,
            ready_replicas: ready,
        };
        match self
            .ctx
            .metrics
            .demand_history(service, metrics, start, end, p.slot)
            .await
        {
            Ok(samples) => {
                let kept = engine.backfill(&samples);
                if kept > 0 {
                    tracing::info!(namespace = %self.namespace, name = %self.name, samples = kept, "seasonality backfilled from metric history");
                }
            }
            Err(error) => {
                tracing::warn!(namespace = %self.namespace, name = %self.name, error = %error_chain(&error), "could not backfill seasonality; the forecast starts from scratch");
            }
        }
    }

    fn lock_snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn apply_replicas(&self, replicas: u32) -> Result<(), kube::Error> {
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name},
            "spec": {"replicas": replicas},
        });
        api.patch(
            &self.name,
            &PatchParams::apply(AUTOSCALER_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map(|_| ())
    }

    /// Keeps the decision in status (newest first, bounded) and tells the user by an Event.
    async fn record(&mut self, now: f64, from: u32, decision: &Decision) {
        let note = truncate(decision.reason(), 1000);
        self.decisions.push_front(ScalingDecisionRecord {
            time: time_at(now),
            from_replicas: i32::try_from(from).unwrap_or(i32::MAX),
            to_replicas: i32::try_from(decision.desired).unwrap_or(i32::MAX),
            mode: decision.mode.to_string(),
            reason: note.clone(),
        });
        self.decisions.truncate(MAX_RECENT_DECISIONS);
        let reason = if decision.desired > from {
            "ScaledUp"
        } else {
            "ScaledDown"
        };
        self.publish(EventType::Normal, reason, "Scale", note).await;
    }

    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("marketplace.dev/v1alpha1".to_owned()),
            kind: Some("MarketplaceService".to_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        };
        if let Err(error) = self.ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(%error, reason, "failed to publish an Event");
        }
    }

    async fn write_status(
        &self,
        metrics: &[MetricSpec],
        readings: &[MetricReading],
        decision: &Decision,
        key_metric: Option<String>,
    ) -> Result<(), kube::Error> {
        let current_metrics: Vec<MetricStatus> = metrics
            .iter()
            .zip(readings)
            .map(|(m, r)| MetricStatus {
                type_: m.type_,
                current: r.value.map(|v| (v * 1000.0).round() / 1000.0),
                target: m.target,
            })
            .collect();
        let mut status = json!({
            "desiredReplicas": decision.desired,
            "mode": decision.mode.to_string(),
            "currentMetrics": current_metrics,
            "recentDecisions": self.decisions,
        });
        if let Some(k) = key_metric {
            status["keyMetric"] = json!(k);
        }
        if let Some(last) = self.decisions.front() {
            status["lastScaleTime"] = json!(last.time);
        }
        let api: Api<MarketplaceService> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({
            "apiVersion": "marketplace.dev/v1alpha1",
            "kind": "MarketplaceService",
            "status": status,
        });
        api.patch_status(
            &self.name,
            &PatchParams::apply(AUTOSCALER_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map(|_| ())
    }
}

/// Removes the decision fields the autoscaler wrote, once a service has no scaling block: an
/// empty apply under its field manager drops every field it owned.
pub async fn clear_status(ctx: &Context, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<MarketplaceService> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "MarketplaceService",
        "status": {},
    });
    api.patch_status(
        name,
        &PatchParams::apply(AUTOSCALER_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map(|_| ())
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Stable => "Stable",
        Mode::ScaleUp => "ScaleUp",
        Mode::ScaleDown => "ScaleDown",
        Mode::Burst => "Burst",
        Mode::Scheduled => "Scheduled",
        Mode::Predictive => "Predictive",
        Mode::Fallback => "Fallback",
        Mode::Limited => "Limited",
    }
}

fn unit(t: MetricType) -> &'static str {
    match t {
        MetricType::RequestsPerSecond => " rps",
        MetricType::InFlight => " in flight",
        MetricType::LatencyP99 => " ms",
        MetricType::Cpu => "%",
        MetricType::Custom => "",
    }
}

/// `current/target unit` of the metric that set the decision (the first metric when none
/// did), for `kubectl get`'s Metric column.
fn key_metric(metrics: &[MetricSpec], readings: &[MetricReading], d: &Decision) -> Option<String> {
    let index = d
        .explanation
        .metric
        .and_then(|used| {
            metrics.iter().position(|m| {
                (m.target - used.target).abs() < 1e-12 && kind_matches(m.type_, used.kind)
            })
        })
        .unwrap_or(0);
    let m = metrics.get(index)?;
    let value = readings.get(index).and_then(|r| r.value);
    Some(match value {
        Some(v) => format!("{}/{}{}", short(v), short(m.target), unit(m.type_)),
        None => format!("<missing>/{}{}", short(m.target), unit(m.type_)),
    })
}

fn kind_matches(t: MetricType, k: crate::scaling::MetricKind) -> bool {
    use crate::scaling::MetricKind as K;
    matches!(
        (t, k),
        (MetricType::RequestsPerSecond, K::RequestsPerSecond)
            | (MetricType::InFlight, K::InFlight)
            | (MetricType::LatencyP99, K::LatencyP99)
            | (MetricType::Cpu, K::Cpu)
            | (MetricType::Custom, K::Custom)
    )
}

/// A number as a person reads it in a table: three significant figures at most.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_the_metric_column_are_short() {
        assert_eq!(short(1234.5), "1234");
        assert_eq!(short(45.67), "45.7");
        assert_eq!(short(0.5), "0.50");
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let s = truncate("é".repeat(600), 1000);
        assert!(s.len() <= 1003);
        assert!(s.ends_with('…'));
    }
}
