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
    /// Bearer tokens issued by TokenRequest (and to test clients).
    pub tokens: crate::auth::Tokens,
}

/// Who may do what, and what is written down about it.
#[derive(Debug, Default)]
pub struct Access {
    pub authz: bool,
    pub admin_token: String,
    pub audit: Option<crate::auth::AuditLog>,
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
    /// Authentication and RBAC enforced (`Config::authz`).
    pub authz: bool,
    /// The kubeconfig user's bearer token: `system:masters`.
    pub admin_token: String,
    /// One JSON line per request (`Config::audit`).
    pub audit: Option<crate::auth::AuditLog>,
}

impl Shared {
    pub fn new(
        state: State,
        bookmark_interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
        faults: Option<crate::faults::Injector>,
        access: Access,
    ) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(state),
            bookmark_interval,
            shutdown,
            watch_reset: tokio::sync::watch::Sender::new(0),
            openapi: Mutex::new(crate::openapi::Cache::default()),
            faults,
            authz: access.authz,
            admin_token: access.admin_token,
            audit: access.audit,
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
