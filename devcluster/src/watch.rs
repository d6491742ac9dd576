//! `?watch=true`: one JSON event per line, flushed per event. A resourceVersion older
//! than the history is answered inside the stream (HTTP 200, then an ERROR event with
//! a 410 Expired Status), because that is what makes kube-runtime's watcher relist;
//! an HTTP 410 would make it retry the same watch forever.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::api::versioned;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Body, Req};
use crate::resources::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::Shared;
use crate::store::{EventType, StoreEvent};
use crate::table;

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event a watcher with this filter sees: objects entering the selection are
    /// ADDED, leaving it DELETED, as upstream.
    fn transform<'a>(&self, ev: &'a StoreEvent) -> Option<(&'static str, &'a Value)> {
        if self.ns.as_deref().is_some_and(|ns| ns != ev.namespace) {
            return None;
        }
        let now = self.matches(&ev.object);
        match ev.type_ {
            EventType::Added => now.then_some(("ADDED", &*ev.object)),
            EventType::Deleted => ev
                .prev
                .as_ref()
                .is_some_and(|p| self.matches(p))
                .then_some(("DELETED", &*ev.object)),
            EventType::Modified => match (ev.prev.as_ref().is_some_and(|p| self.matches(p)), now) {
                (true, true) => Some(("MODIFIED", &*ev.object)),
                (false, true) => Some(("ADDED", &*ev.object)),
                (true, false) => Some(("DELETED", &*ev.object)),
                (false, false) => None,
            },
        }
    }
}

struct Encoder {
    info: Arc<ResourceInfo>,
    version: String,
    table: bool,
    metadata_only: bool,
    include_object: Option<String>,
}

impl Encoder {
    fn line(&self, type_: &str, obj: &Value) -> Bytes {
        let object = if self.table {
            table::object_table(
                &self.info,
                &self.version,
                obj,
                self.include_object.as_deref(),
            )
        } else if self.metadata_only {
            table::partial(obj)
        } else {
            versioned(&self.info, &self.version, obj)
        };
        let mut out = serde_json::to_vec(&json!({"type": type_})).unwrap_or_default();
        out.pop(); // the closing brace: the object follows, its leading keys first
        out.extend_from_slice(b",\"object\":");
        crate::util::write_ordered(&mut out, &object);
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(&self.version), "metadata": metadata});
        let mut out =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn expired_line(message: String) -> Bytes {
    let status = ApiError::Expired(message).to_status();
    let mut out =
        serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

pub fn serve(
    shared: Arc<Shared>,
    info: Arc<ResourceInfo>,
    version: &str,
    ns: Option<&str>,
    r: &Req,
) -> ApiResult<Response<Body>> {
    let q = |k: &str| r.query.get(k).map(String::as_str).filter(|s| !s.is_empty());
    let filter = Filter {
        ns: ns.map(String::from),
        labels: q("labelSelector")
            .map(LabelSelector::parse)
            .transpose()?
            .unwrap_or_default(),
        fields: q("fieldSelector")
            .map(FieldSelector::parse)
            .transpose()?
            .unwrap_or_default(),
    };
    let bookmarks = matches!(q("allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = matches!(q("sendInitialEvents"), Some("true" | "1"));
    let timeout = q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let enc = Encoder {
        info: info.clone(),
        version: version.to_string(),
        table: r.wants_table(),
        metadata_only: r.wants_metadata(),
        include_object: q("includeObject").map(String::from),
    };
    let requested: Option<u64> = match q("resourceVersion") {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };

    // Subscribe and read the starting state under one lock: nothing falls in between.
    let gr = info.group_resource();
    let mut initial: Vec<Bytes> = vec![];
    let mut expired = None;
    let (mut rx, start_rv) = {
        let st = shared.lock();
        let rx = st.store.subscribe();
        let current = st.store.current_rv();
        match requested {
            Some(rv) if !send_initial => match st.store.events_since(&gr, rv) {
                Ok(events) => {
                    for ev in &events {
                        if let Some((t, o)) = filter.transform(ev) {
                            initial.push(enc.line(t, o));
                        }
                    }
                }
                Err(e) => {
                    expired = Some(format!("too old resource version: {rv} ({})", e.oldest));
                }
            },
            _ => {
                for o in st
                    .store
                    .list(&gr, filter.ns.as_deref(), None)
                    .filter(|o| filter.matches(o))
                {
                    initial.push(enc.line("ADDED", o));
                }
            }
        }
        (rx, current)
    };
    if send_initial && bookmarks {
        initial.push(enc.bookmark(start_rv, true));
    }

    let mut shutdown = shared.shutdown.clone();
    let mut reset = shared.watch_reset.subscribe();
    let interval = shared.bookmark_interval;
    let cut = r.cut;
    let stream = async_stream::stream! {
        if let Some(msg) = expired {
            yield expired_line(msg);
            return;
        }
        for line in initial {
            yield line;
        }
        let mut last_rv = start_rv;
        let now = tokio::time::Instant::now();
        // An injected cut ends the stream as a timeout would: cleanly, so the client
        // re-watches from the last resourceVersion it saw.
        let deadline = [timeout, cut.map(|c| c.after)]
            .into_iter()
            .flatten()
            .min()
            .map(|t| now + t);
        let mut events_left = cut.map(|c| c.events);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if ev.gr != gr {
                            continue;
                        }
                        if let Some((t, o)) = filter.transform(&ev) {
                            yield enc.line(t, o);
                            if let Some(left) = events_left.as_mut() {
                                *left = left.saturating_sub(1);
                                if *left == 0 {
                                    tracing::debug!(resource = %gr.resource, "injected fault: watch cut after its events");
                                    break;
                                }
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        // This watcher fell behind the fan-out buffer: make it relist
                        // rather than silently lose events.
                        yield expired_line(format!("watch fell behind by {n} events; relist"));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = ticker.tick(), if bookmarks => {
                    yield enc.bookmark(last_rv, false);
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending::<()>().await,
                    }
                } => break,
                _ = shutdown.changed() => break,
                _ = reset.changed() => break,
            }
        }
    };
    let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync();
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}
