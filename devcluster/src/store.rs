//! The object store: JSON objects by (group/resource, namespace, name), one global
//! resourceVersion counter (as etcd's revision), and a bounded event history that
//! watches resume from. It is plain data behind the server's mutex: no I/O, no await.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::resources::GroupResource;
use crate::util::meta_mut;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct StoreEvent {
    pub rv: u64,
    pub type_: EventType,
    pub gr: GroupResource,
    pub namespace: String,
    pub object: Arc<Value>,
    /// The object before a modification: a watch with a selector turns "stopped
    /// matching" into DELETED and "started matching" into ADDED, as upstream.
    pub prev: Option<Arc<Value>>,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: HashMap<GroupResource, Objects>,
    history: VecDeque<Arc<StoreEvent>>,
    history_limit: usize,
    /// Events at or below this revision are gone from history: watching from an
    /// older revision gets 410 Expired.
    compacted: u64,
    tx: broadcast::Sender<Arc<StoreEvent>>,
    /// owner uid -> dependents, so garbage collection does not scan the store.
    owners: HashMap<String, BTreeSet<ObjectKey>>,
}

/// (resource, namespace, name) of a stored object.
pub type ObjectKey = (GroupResource, String, String);

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

/// The requested revision is older than the history holds.
#[derive(Debug)]
pub struct Expired {
    pub oldest: u64,
}

impl Store {
    pub fn new(history_limit: usize, broadcast_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(broadcast_capacity.max(16));
        Store {
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 1,
            tx,
            owners: HashMap::new(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource in key order, optionally in one namespace, starting after `after`.
    pub fn list<'a>(
        &'a self,
        gr: &GroupResource,
        ns: Option<&'a str>,
        after: Option<(String, String)>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let lower = match (&after, ns) {
            (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
            (None, Some(ns)) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, None) => std::ops::Bound::Unbounded,
        };
        self.objects
            .get(gr)
            .into_iter()
            .flat_map(move |m| m.range((lower.clone(), std::ops::Bound::Unbounded)))
            .take_while(move |((n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    pub fn count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Store a created or updated object under a fresh resourceVersion, and record the event.
    pub fn put(&mut self, gr: &GroupResource, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        let m = meta_mut(&mut obj);
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        let ns = m
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let obj = Arc::new(obj);
        let key: ObjectKey = (gr.clone(), ns.clone(), name.clone());
        let prev = self
            .objects
            .entry(gr.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        if let Some(p) = &prev {
            self.unindex(p, &key);
        }
        for uid in owner_uids(&obj) {
            self.owners
                .entry(uid.to_string())
                .or_default()
                .insert(key.clone());
        }
        let type_ = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(StoreEvent {
            rv,
            type_,
            gr: gr.clone(),
            namespace: ns,
            object: obj.clone(),
            prev,
        });
        obj
    }

    /// Remove an object; the DELETED event carries a new resourceVersion, as upstream.
    pub fn remove(&mut self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        let removed = self
            .objects
            .get_mut(gr)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.unindex(&removed, &(gr.clone(), ns.to_string(), name.to_string()));
        self.rv += 1;
        let rv = self.rv;
        let mut last = (*removed).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let last = Arc::new(last);
        self.record(StoreEvent {
            rv,
            type_: EventType::Deleted,
            gr: gr.clone(),
            namespace: ns.to_string(),
            object: last.clone(),
            prev: Some(removed),
        });
        Some(last)
    }

    fn unindex(&mut self, obj: &Value, key: &ObjectKey) {
        for uid in owner_uids(obj) {
            if let Some(set) = self.owners.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.owners.remove(uid);
                }
            }
        }
    }

    /// Objects whose ownerReferences name `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<ObjectKey> {
        self.owners
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&mut self, event: StoreEvent) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is normal (nobody watching).
        let _ = self.tx.send(event);
    }

    /// Events after `rv` for a resource, or Expired when history no longer reaches back.
    pub fn events_since(
        &self,
        gr: &GroupResource,
        rv: u64,
    ) -> Result<Vec<Arc<StoreEvent>>, Expired> {
        if rv < self.compacted {
            return Err(Expired {
                oldest: self.compacted,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.rv > rv && e.gr == *gr)
            .cloned()
            .collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.tx.subscribe()
    }

    /// Forget all history, as etcd compaction does: watches from older revisions get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }
}
