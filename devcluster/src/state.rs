//! The shared server state: registry + store behind one mutex. Every request takes the
//! lock once, does its whole read-modify-write synchronously, and releases it before
//! any I/O, so a write is atomic and a watch subscription never misses an event.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::resources::Registry;
use crate::store::Store;

#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    pub store: Store,
    /// When each Pod was created, for the simulated kubelet (with workloads only).
    pub pod_births: Option<Arc<crate::workloads::PodBirths>>,
}

#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    pub bookmark_interval: Duration,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Bumped to end every open watch (as an API server restart does); clients resume.
    pub watch_reset: tokio::sync::watch::Sender<u64>,
    pub openapi: Mutex<crate::openapi::Cache>,
    /// `None` serves every request faithfully.
    pub faults: Option<crate::faults::Injector>,
}

impl Shared {
    pub fn new(
        state: State,
        bookmark_interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
        faults: Option<crate::faults::Injector>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(state),
            bookmark_interval,
            shutdown,
            watch_reset: tokio::sync::watch::Sender::new(0),
            openapi: Mutex::new(crate::openapi::Cache::default()),
            faults,
        })
    }

    /// The state lock. A panic while holding it must not take the whole server down
    /// with poison errors: the store is only mutated through complete `put`/`remove`
    /// calls, so the data is consistent even then.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
