//! The CacheTier controller on a devcluster, administering a real redis-server of its own
//! (the resolver sends every tier there, as `dev` sends them to the machine's Redis): the
//! children as specified, a password Secret that never changes under the tier, live
//! settings, flushes, modes, deletion, and the wiring into services.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Cluster, NS, Operator, Readings, eventually, text};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use marketplace_crds::v1alpha1::{CacheTier, MarketplaceService};
use marketplace_operator::cache::{Auth, Timeouts};
use marketplace_operator::controllers::cache_tier::CacheSettings;
use redis::AsyncCommands;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "a-password-the-test-brought-1234";

fn settings(server: &RedisServer, auth: Auth) -> CacheSettings {
    CacheSettings {
        stats_every: Duration::from_millis(300),
        timeouts: Timeouts {
            connect: Duration::from_millis(500),
            command: Duration::from_secs(2),
        },
        ..CacheSettings::new(Arc::new(server.resolver(auth)))
    }
}

fn operator(c: &Cluster, server: &RedisServer, auth: Auth) -> Operator {
    Operator::start_with(c, Arc::new(Readings::default()), settings(server, auth))
}

fn tiers(client: &Client) -> Api<CacheTier> {
    Api::namespaced(client.clone(), NS)
}

async fn apply_tier(client: &Client, name: &str, spec: Value) {
    let tier = json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "CacheTier",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    });
    tiers(client)
        .patch(
            name,
            &PatchParams::apply("cache-test").force(),
            &Patch::Apply(&tier),
        )
        .await
        .expect("the API server accepts the CacheTier");
}

/// A Secret made before the tier, as a user brings a password of their own; the test's
/// Redis requires that password.
async fn bring_password(client: &Client, tier: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{tier}-redis-auth")),
            ..Default::default()
        },
        data: Some([("password".to_owned(), ByteString(PASSWORD.into()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the Secret is created");
}

async fn condition(
    client: &Client,
    tier: &str,
    type_: &str,
) -> Result<(String, String, String), String> {
    let t = tiers(client).get(tier).await.map_err(text)?;
    t.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .ok_or_else(|| format!("no {type_} condition yet: {:?}", t.status))
}

async fn until_condition(
    client: &Client,
    tier: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    eventually(
        &format!("{tier} {type_}={status} ({reason})"),
        WAIT,
        || async {
            let (s, r, m) = condition(client, tier, type_).await?;
            if s == status && r == reason {
                Ok(m)
            } else {
                Err(format!("{type_}={s} ({r}: {m})"))
            }
        },
    )
    .await
}

async fn names<K>(client: &Client) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut names: Vec<String> = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app.kubernetes.io/component=cache"))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|o| o.meta().name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn secret_of(client: &Client, tier: &str) -> Secret {
    Api::<Secret>::namespaced(client.clone(), NS)
        .get(&format!("{tier}-redis-auth"))
        .await
        .expect("the password Secret exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_gets_its_children_a_stable_password_and_live_settings() {
    let c = common::start(10.0, None).await;
    let server = RedisServer::start(None).await;
    let mut op = operator(&c, &server, Auth::None);
    apply_tier(
        &c.client,
        "hot",
        json!({"maxMemory": "64mb", "evictionPolicy": "allkeys-lru", "config": {"hz": "15"}}),
    )
    .await;

    until_condition(&c.client, "hot", "Ready", "True", "Available").await;
    assert_eq!(names::<Deployment>(&c.client).await, ["hot-redis"]);
    assert!(names::<StatefulSet>(&c.client).await.is_empty());
    assert_eq!(names::<Service>(&c.client).await, ["hot-redis"]);
    assert_eq!(names::<ConfigMap>(&c.client).await, ["hot-redis-config"]);
    assert_eq!(names::<PodDisruptionBudget>(&c.client).await, ["hot-redis"]);
    let secret = secret_of(&c.client, "hot").await;
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .expect("a password")
        .0
        .clone();
    assert_eq!(password.len(), 32);
    let owner = &secret.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(owner.kind, "CacheTier");

    let tier = tiers(&c.client).get("hot").await.expect("tier");
    let status = tier.status.clone().expect("status");
    assert_eq!(
        status.password_secret_name.as_deref(),
        Some("hot-redis-auth")
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some("hot-redis.default.svc.cluster.local:6379")
    );
    assert!(status.memory_used_bytes.is_some_and(|m| m > 0));
    let yaml = serde_json::to_string(&tier).expect("json");
    assert!(
        !yaml.contains(std::str::from_utf8(&password).expect("utf-8")),
        "the password is in the CacheTier"
    );

    let redis = server.connection().await;
    let get = |name: &'static str| {
        let mut r = redis.clone();
        async move {
            let v: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut r)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(v.get(1).cloned().unwrap_or_default())
        }
    };
    assert_eq!(get("maxmemory").await.as_deref(), Ok("67108864"));
    assert_eq!(get("hz").await.as_deref(), Ok("15"));

    // A live change: Redis takes it at once, the ConfigMap for its next start, and the pod
    // template does not change (no restart).
    let template_before = serde_json::to_value(
        Api::<Deployment>::namespaced(c.client.clone(), NS)
            .get("hot-redis")
            .await
            .expect("deployment")
            .spec
            .template,
    )
    .expect("json");
    apply_tier(
        &c.client,
        "hot",
        json!({"maxMemory": "128mb", "evictionPolicy": "volatile-ttl", "config": {"hz": "15"}}),
    )
    .await;
    eventually("maxmemory 128mb live", WAIT, || async {
        match get("maxmemory").await?.as_str() {
            "134217728" => Ok(()),
            other => Err(format!("maxmemory {other}")),
        }
    })
    .await;
    assert_eq!(get("maxmemory-policy").await.as_deref(), Ok("volatile-ttl"));
    let conf = Api::<ConfigMap>::namespaced(c.client.clone(), NS)
        .get("hot-redis-config")
        .await
        .expect("config");
    assert!(conf.data.expect("data")["redis.conf"].contains("maxmemory 134217728\n"));
    let template_after = serde_json::to_value(
        Api::<Deployment>::namespaced(c.client.clone(), NS)
            .get("hot-redis")
            .await
            .expect("deployment")
            .spec
            .template,
    )
    .expect("json");
    assert_eq!(
        template_before, template_after,
        "a live setting rolled the pods"
    );

    // The operator restarts: the Secret stays as it was.
    op.shutdown().await;
    op = operator(&c, &server, Auth::None);
    apply_tier(
        &c.client,
        "hot",
        json!({"maxMemory": "96mb", "evictionPolicy": "volatile-ttl", "config": {"hz": "15"}}),
    )
    .await;
    eventually("maxmemory 96mb live", WAIT, || async {
        match get("maxmemory").await?.as_str() {
            "100663296" => Ok(()),
            other => Err(format!("maxmemory {other}")),
        }
    })
    .await;
    let after = secret_of(&c.client, "hot").await;
    assert_eq!(after.metadata.uid, secret.metadata.uid);
    assert_eq!(after.data, secret.data);

    // Deletion cascades to every child.
    tiers(&c.client)
        .delete("hot", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the children to go", WAIT, || async {
        let left = [
            names::<Deployment>(&c.client).await,
            names::<Service>(&c.client).await,
            names::<ConfigMap>(&c.client).await,
            names::<PodDisruptionBudget>(&c.client).await,
        ]
        .concat();
        let secret = Api::<Secret>::namespaced(c.client.clone(), NS)
            .get_opt("hot-redis-auth")
            .await
            .map_err(text)?;
        if left.is_empty() && secret.is_none() {
            Ok(())
        } else {
            Err(format!("left: {left:?}, secret {}", secret.is_some()))
        }
    })
    .await;
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_is_administered_with_the_tiers_secret() {
    let c = common::start(10.0, None).await;
    let server = RedisServer::start(Some(PASSWORD)).await;
    bring_password(&c.client, "vault").await;
    let op = operator(&c, &server, Auth::TierPassword);
    apply_tier(&c.client, "vault", json!({"maxMemory": "32mb"})).await;
    until_condition(&c.client, "vault", "Configured", "True", "AppliedLive").await;
    until_condition(&c.client, "vault", "Ready", "True", "Available").await;
    // The Secret brought beforehand is used, not replaced.
    let secret = secret_of(&c.client, "vault").await;
    assert_eq!(
        secret.data.and_then(|d| d.get("password").cloned()),
        Some(ByteString(PASSWORD.into()))
    );
    let mut r = server.connection().await;
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut r)
        .await
        .expect("get");
    assert_eq!(v[1], "33554432");
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_named_and_nothing_is_applied() {
    let c = common::start(10.0, None).await;
    let server = RedisServer::start(None).await;
    let op = operator(&c, &server, Auth::None);

    // Redis refuses a value: the condition names the field, and neither Redis nor the
    // ConfigMap takes any of the change.
    apply_tier(&c.client, "t", json!({"maxMemory": "64mb"})).await;
    until_condition(&c.client, "t", "Configured", "True", "AppliedLive").await;
    apply_tier(
        &c.client,
        "t",
        json!({"maxMemory": "128mb", "config": {"hz": "fast"}}),
    )
    .await;
    let message = until_condition(&c.client, "t", "Configured", "False", "ConfigRejected").await;
    assert!(message.contains("spec.config[hz]"), "{message}");
    let mut r = server.connection().await;
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut r)
        .await
        .expect("get");
    assert_eq!(v[1], "67108864", "part of a refused change reached Redis");
    let conf = Api::<ConfigMap>::namespaced(c.client.clone(), NS)
        .get("t-redis-config")
        .await
        .expect("config");
    let conf = &conf.data.expect("data")["redis.conf"];
    assert!(
        conf.contains("maxmemory 67108864\n") && !conf.contains("hz"),
        "{conf}"
    );

    // A value that could break out of its redis.conf line: refused before anything.
    apply_tier(
        &c.client,
        "u",
        json!({"config": {"timeout": "0\nrename-command CONFIG \"\""}}),
    )
    .await;
    let message = until_condition(&c.client, "u", "Configured", "False", "InvalidSpec").await;
    assert!(message.contains("spec.config[timeout]"), "{message}");
    assert!(
        Api::<ConfigMap>::namespaced(c.client.clone(), NS)
            .get_opt("u-redis-config")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<Secret>::namespaced(c.client.clone(), NS)
            .get_opt("u-redis-auth")
            .await
            .expect("get")
            .is_none()
    );

    // The schema refuses an eviction policy outside the enum, as kubectl shows.
    let bad = json!({
        "apiVersion": "marketplace.dev/v1alpha1", "kind": "CacheTier",
        "metadata": {"name": "v", "namespace": NS},
        "spec": {"evictionPolicy": "keep-everything"},
    });
    let refused = tiers(&c.client)
        .patch("v", &PatchParams::apply("cache-test"), &Patch::Apply(&bad))
        .await
        .expect_err("an unknown eviction policy is refused");
    assert!(text(refused).contains("evictionPolicy"));
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_run_once_per_id_and_are_recorded() {
    let c = common::start(10.0, None).await;
    let server = RedisServer::start(None).await;
    let mut r = server.connection().await;
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.set(format!("orders:catalog:{i}"), i).ignore();
        p.set(format!("orders:carts:{i}"), i).ignore();
    }
    let _: () = p.query_async(&mut r).await.expect("populate");
    let op = operator(&c, &server, Auth::None);
    apply_tier(
        &c.client,
        "t",
        json!({"flushes": [{"id": "catalog-1", "prefix": "orders:catalog:"}]}),
    )
    .await;
    let done = eventually("the flush to be recorded", WAIT, || async {
        let t = tiers(&c.client).get("t").await.map_err(text)?;
        t.status
            .and_then(|s| s.completed_flushes.first().cloned())
            .ok_or_else(|| "no completed flush yet".to_owned())
    })
    .await;
    assert_eq!((done.id.as_str(), done.keys_deleted), ("catalog-1", 3000));
    let left: Vec<String> = r.keys("orders:catalog:*").await.expect("keys");
    assert!(left.is_empty());
    let kept: Vec<String> = r.keys("orders:carts:*").await.expect("keys");
    assert_eq!(kept.len(), 3000);

    // New keys under the prefix, and the same id requested again (beside a new flush): the
    // old id does nothing, the new one runs.
    let _: () = r.set("orders:catalog:new", 1).await.expect("set");
    apply_tier(
        &c.client,
        "t",
        json!({"flushes": [
            {"id": "catalog-1", "prefix": "orders:catalog:"},
            {"id": "carts-1", "prefix": "orders:carts:"},
        ]}),
    )
    .await;
    let all = eventually("the second flush", WAIT, || async {
        let t = tiers(&c.client).get("t").await.map_err(text)?;
        let done = t.status.map(|s| s.completed_flushes).unwrap_or_default();
        if done.len() == 2 {
            Ok(done)
        } else {
            Err(format!("{done:?}"))
        }
    })
    .await;
    assert_eq!(
        all[0].completed_at, done.completed_at,
        "catalog-1 ran again"
    );
    assert_eq!(all[1].keys_deleted, 3000);
    let still: Option<i64> = r.get("orders:catalog:new").await.expect("get");
    assert_eq!(still, Some(1));
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_replica_runs_a_stateful_set_and_switching_back_cleans_up() {
    let c = common::start(10.0, None).await;
    let server = RedisServer::start(None).await;
    let op = operator(&c, &server, Auth::None);
    apply_tier(
        &c.client,
        "rep",
        json!({"mode": "PrimaryReplica", "replicas": 2}),
    )
    .await;
    eventually("a StatefulSet with its Services", WAIT, || async {
        let sets = names::<StatefulSet>(&c.client).await;
        let services = names::<Service>(&c.client).await;
        if sets == ["rep-redis"]
            && services == ["rep-redis", "rep-redis-headless", "rep-redis-read"]
        {
            Ok(())
        } else {
            Err(format!("{sets:?} {services:?}"))
        }
    })
    .await;
    let sts = Api::<StatefulSet>::namespaced(c.client.clone(), NS)
        .get("rep-redis")
        .await
        .expect("sts");
    assert_eq!(sts.spec.replicas, Some(3));
    // One Redis stands in for three pods here, so no replica is ever online: said, not hidden.
    until_condition(
        &c.client,
        "rep",
        "Replicating",
        "False",
        "ReplicasNotOnline",
    )
    .await;

    apply_tier(&c.client, "rep", json!({"mode": "Standalone"})).await;
    eventually("back to a Deployment", WAIT, || async {
        let sets = names::<StatefulSet>(&c.client).await;
        let deployments = names::<Deployment>(&c.client).await;
        let services = names::<Service>(&c.client).await;
        if sets.is_empty() && deployments == ["rep-redis"] && services == ["rep-redis"] {
            Ok(())
        } else {
            Err(format!("{sets:?} {deployments:?} {services:?}"))
        }
    })
    .await;
    let (_, _, _) = condition(&c.client, "rep", "Ready")
        .await
        .expect("ready condition");
    assert!(
        condition(&c.client, "rep", "Replicating").await.is_err(),
        "a standalone tier reports replication"
    );
    op.shutdown().await;
}

async fn msvc(client: &Client, name: &str) -> Result<MarketplaceService, String> {
    common::services(client).get(name).await.map_err(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_wired_to_its_tier_and_cache_ready_follows_it() {
    let c = common::start(10.0, None).await;
    let mut server = RedisServer::start(None).await;
    let op = operator(&c, &server, Auth::None);
    common::apply(
        &c.client,
        &common::service(
            "reviews",
            json!({"domain": "reviews", "image": "r:1", "replicas": 1, "cache": {"name": "hot"}}),
        ),
    )
    .await;
    // No tier yet: the service runs, without the cache, and says why.
    let m = eventually("CacheReady=False TierNotFound", WAIT, || async {
        let m = msvc(&c.client, "reviews").await?;
        if common::has_condition(&m, "CacheReady", "False", Some("TierNotFound"))
            && common::has_condition(&m, "Ready", "True", None)
        {
            Ok(m)
        } else {
            Err(common::conditions_text(&m))
        }
    })
    .await;
    assert!(common::condition(&m, "CacheReady").is_some_and(|c| c.message.contains("\"hot\"")));
    let d = Api::<Deployment>::namespaced(c.client.clone(), NS)
        .get("reviews")
        .await
        .expect("deployment");
    assert_eq!(common::env_of(&d, "REDIS_URL"), None);

    apply_tier(&c.client, "hot", json!({})).await;
    eventually("REDIS_URL and CacheReady=True", WAIT, || async {
        let d = Api::<Deployment>::namespaced(c.client.clone(), NS)
            .get("reviews")
            .await
            .map_err(text)?;
        let m = msvc(&c.client, "reviews").await?;
        let url = common::env_of(&d, "REDIS_URL");
        if url.as_deref() == Some("redis://hot-redis.default.svc.cluster.local:6379")
            && common::env_of(&d, "CACHE_KEY_PREFIX").as_deref() == Some("reviews:")
            && common::has_condition(&m, "CacheReady", "True", Some("TierReady"))
        {
            Ok(())
        } else {
            Err(format!("{url:?}; {}", common::conditions_text(&m)))
        }
    })
    .await;
    let d = Api::<Deployment>::namespaced(c.client.clone(), NS)
        .get("reviews")
        .await
        .expect("deployment");
    let env = d.spec.template.spec.as_ref().expect("pod").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let password = env
        .iter()
        .find(|e| e.name == "REDIS_PASSWORD")
        .expect("REDIS_PASSWORD");
    assert_eq!(password.value, None);
    let by_ref = password
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    assert_eq!(
        (by_ref.name.as_str(), by_ref.key.as_str()),
        ("hot-redis-auth", "password")
    );

    // Redis goes away: the tier says so, the service follows, and keeps running.
    server.kill();
    until_condition(&c.client, "hot", "Ready", "False", "RedisUnreachable").await;
    eventually("CacheReady=False TierNotReady", WAIT, || async {
        let m = msvc(&c.client, "reviews").await?;
        if common::has_condition(&m, "CacheReady", "False", Some("TierNotReady"))
            && common::has_condition(&m, "Ready", "True", None)
        {
            Ok(())
        } else {
            Err(common::conditions_text(&m))
        }
    })
    .await;
    let (_, reason, _) = condition(&c.client, "hot", "Configured")
        .await
        .expect("configured");
    assert_eq!(reason, "PendingRestart");
    op.shutdown().await;
}
