//! The operator's Redis administration (operator/src/cache) against real redis-servers: live
//! configuration, `INFO`, passwords, and prefix flushes that remove exactly their keys, once,
//! even when interrupted.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use marketplace_operator::cache::flush::{self, BATCH, progress_key};
use marketplace_operator::cache::{Admin, Auth, CacheError, Resolve, Route, Timeouts};
use redis::AsyncCommands;

async fn admin(
    server: &RedisServer,
    auth: Auth,
    tier_password: Option<&str>,
) -> Result<Admin, CacheError> {
    let route: Route = server
        .resolver(auth)
        .resolve(&marketplace_operator::cache::Address {
            host: "tier-redis.ns.svc.cluster.local".into(),
            port: 6379,
        });
    Admin::connect(&route, tier_password, Timeouts::default()).await
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn config_set_round_trips_and_a_refused_value_changes_nothing() {
    let server = RedisServer::start(None).await;
    let mut a = admin(&server, Auth::None, None).await.expect("connects");
    a.config_set(&settings(&[
        ("maxmemory", "268435456"),
        ("maxmemory-policy", "allkeys-lfu"),
        ("hz", "20"),
    ]))
    .await
    .expect("Redis takes valid settings");
    assert_eq!(
        a.config_get("maxmemory").await.expect("get").as_deref(),
        Some("268435456")
    );
    assert_eq!(
        a.config_get("maxmemory-policy")
            .await
            .expect("get")
            .as_deref(),
        Some("allkeys-lfu")
    );
    assert_eq!(
        a.config_get("hz").await.expect("get").as_deref(),
        Some("20")
    );

    // A good value beside a bad one: all or nothing, and the error names the bad one.
    let refused = a
        .config_set(&settings(&[
            ("maxmemory", "536870912"),
            ("maxmemory-policy", "keep-everything"),
        ]))
        .await;
    match refused {
        Err(CacheError::Refused { setting, message }) => {
            assert_eq!(setting, "maxmemory-policy", "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        a.config_get("maxmemory").await.expect("get").as_deref(),
        Some("268435456"),
        "the good half of a refused CONFIG SET was applied"
    );
}

#[tokio::test]
async fn a_password_protected_redis_takes_the_tier_password_and_refuses_others() {
    let server = RedisServer::start(Some("s3cret-tier-password")).await;
    let mut a = admin(&server, Auth::TierPassword, Some("s3cret-tier-password"))
        .await
        .expect("the tier's password opens it");
    a.config_set(&settings(&[("maxmemory", "1048576")]))
        .await
        .expect("set");
    assert_eq!(
        a.config_get("maxmemory").await.expect("get").as_deref(),
        Some("1048576")
    );

    let wrong = admin(&server, Auth::TierPassword, Some("guess")).await;
    let Err(e) = wrong else {
        panic!("a wrong password was accepted")
    };
    assert!(
        !e.to_string().contains("guess"),
        "the password leaked into an error: {e}"
    );
    // Without the password Redis may accept the connection, but no command.
    match admin(&server, Auth::None, None).await {
        Err(_) => {}
        Ok(mut a) => assert!(
            a.info().await.is_err(),
            "INFO without the password succeeded"
        ),
    }
}

#[tokio::test]
async fn info_reports_no_ratio_before_lookups_then_hits_over_lookups() {
    let server = RedisServer::start(None).await;
    let mut a = admin(&server, Auth::None, None).await.expect("connects");
    let fresh = a.info().await.expect("INFO");
    assert_eq!(
        (fresh.keyspace_hits, fresh.keyspace_misses),
        (Some(0), Some(0))
    );
    assert_eq!(fresh.hit_ratio(), None);
    assert!(fresh.used_memory.is_some_and(|m| m > 0));
    assert_eq!(fresh.role.as_deref(), Some("master"));

    let mut c = server.connection().await;
    let _: Option<String> = c.get("k").await.expect("miss");
    let _: () = c.set("k", "v").await.expect("set");
    for _ in 0..3 {
        let _: Option<String> = c.get("k").await.expect("hit");
    }
    let info = a.info().await.expect("INFO");
    assert_eq!(info.hit_ratio(), Some(0.75));
    assert!(info.connected_clients.is_some_and(|n| n >= 2));
}

/// 50,000 keys under `cart:` and 50,000 others, among them keys that merely look alike.
async fn populate(server: &RedisServer) -> u64 {
    let mut c = server.connection().await;
    for chunk in 0..100 {
        let mut p = redis::pipe();
        for i in 0..500 {
            let n = chunk * 500 + i;
            p.set(format!("cart:{n}"), n).ignore();
            let other = match n % 4 {
                0 => format!("cart{n}"),
                1 => format!("xcart:{n}"),
                2 => format!("Cart:{n}"),
                _ => format!("orders:{n}"),
            };
            p.set(other, n).ignore();
        }
        let _: () = p.query_async(&mut c).await.expect("populate");
    }
    50_000
}

async fn count(server: &RedisServer, pattern: &str) -> u64 {
    let mut c = server.connection().await;
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .expect("scan");
        n += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_flush_removes_exactly_its_keys_once() {
    let server = RedisServer::start(None).await;
    let under = populate(&server).await;
    let mut a = admin(&server, Auth::None, None).await.expect("connects");
    let progress = progress_key("uid-1", "first");
    let done = flush::flush_prefix(&mut a, &progress, "cart:", BATCH, None)
        .await
        .expect("flush");
    assert!(done.done);
    assert_eq!(done.removed, under);
    assert_eq!(count(&server, "cart:*").await, 0);
    assert_eq!(
        count(&server, "*").await,
        50_000 + 1,
        "the others, and the progress record"
    );

    // The same id again removes nothing more, even with new keys under the prefix: it ran.
    let mut c = server.connection().await;
    let _: () = c.set("cart:new", 1).await.expect("set");
    let again = flush::flush_prefix(&mut a, &progress, "cart:", BATCH, None)
        .await
        .expect("repeat");
    assert_eq!(again, done);
    assert_eq!(count(&server, "cart:*").await, 1);
    flush::forget(&mut a, &progress).await.expect("forget");
    assert_eq!(count(&server, "marketplace-operator:*").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_stopped_halfway_resumes_and_counts_each_key_once() {
    let server = RedisServer::start(None).await;
    let under = populate(&server).await;
    let progress = progress_key("uid-2", "interrupted");

    // Stopped by its budget: a few SCAN steps, then a new connection (a restarted operator)
    // takes over.
    let mut first = admin(&server, Auth::None, None).await.expect("connects");
    let partial = flush::flush_prefix(&mut first, &progress, "cart:", BATCH, Some(10))
        .await
        .expect("partial flush");
    assert!(!partial.done);
    assert!(
        partial.removed > 0 && partial.removed < under,
        "{partial:?}"
    );
    assert_eq!(count(&server, "cart:*").await, under - partial.removed);
    drop(first);

    // Stopped as a crash stops it: the task is aborted wherever it is.
    let mut second = admin(&server, Auth::None, None).await.expect("connects");
    let key = progress.clone();
    let task =
        tokio::spawn(
            async move { flush::flush_prefix(&mut second, &key, "cart:", 100, None).await },
        );
    tokio::time::sleep(Duration::from_millis(30)).await;
    task.abort();
    let _ = task.await;

    let mut third = admin(&server, Auth::None, None).await.expect("connects");
    let finished = flush::flush_prefix(&mut third, &progress, "cart:", BATCH, None)
        .await
        .expect("resumed flush");
    assert!(finished.done);
    assert_eq!(finished.removed, under, "every key counted exactly once");
    assert_eq!(count(&server, "cart:*").await, 0);
    assert_eq!(count(&server, "*").await, 50_000 + 1);
}

#[tokio::test]
async fn an_unreachable_redis_is_told_apart_from_a_refusal() {
    let mut server = RedisServer::start(None).await;
    let port = server.port;
    server.kill();
    let route = Route {
        host: "127.0.0.1".into(),
        port,
        auth: Auth::None,
    };
    let timeouts = Timeouts {
        connect: Duration::from_millis(500),
        command: Duration::from_millis(500),
    };
    let Err(e) = Admin::connect(&route, None, timeouts).await else {
        panic!("connected to a stopped Redis");
    };
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&port.to_string()));
}
