//! Load benchmark of the devcluster binary through a real kube client: start-up time, create
//! throughput, list and watch fan-out with N objects, and the server's resident memory.
//!
//! `cargo run --release -p devcluster --example loadtest -- [--objects 10000] [--watchers 10]`
//! (bench/devcluster.sh builds the server in release mode and runs this).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    objects: usize,
    watchers: usize,
    concurrency: usize,
    server: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        objects: 10_000,
        watchers: 10,
        concurrency: 32,
        server: PathBuf::from("target/release/devcluster"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--objects" => args.objects = value.parse().unwrap_or(args.objects),
            "--watchers" => args.watchers = value.parse().unwrap_or(args.watchers),
            "--concurrency" => args.concurrency = value.parse().unwrap_or(args.concurrency),
            "--server" => args.server = PathBuf::from(value),
            other => eprintln!("ignoring unknown flag {other}"),
        }
    }
    args
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("devcluster-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");

    let started = Instant::now();
    let mut server = tokio::process::Command::new(&args.server)
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = server.id().unwrap_or(0);
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next_line().await? {
            Some(line) if line.starts_with("ready ") => break line[6..].to_owned(),
            Some(_) => continue,
            None => return Err("server exited before printing ready".into()),
        }
    };
    let client = Client::try_from(kube::Config::new(url.parse()?))?;
    let _ = client.apiserver_version().await?;
    let first_answer = started.elapsed();
    let rss_empty = rss_mb(pid);

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Watchers start before the creates and must each see every one of them.
    let rv = api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let seen: Arc<Vec<AtomicUsize>> =
        Arc::new((0..args.watchers).map(|_| AtomicUsize::new(0)).collect());
    let mut watch_tasks = Vec::new();
    for i in 0..args.watchers {
        let api = api.clone();
        let seen = seen.clone();
        let rv = rv.clone();
        let total = args.objects;
        watch_tasks.push(tokio::spawn(async move {
            let mut rv = rv;
            while seen[i].load(Ordering::Relaxed) < total {
                let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut stream = stream.boxed();
                while let Ok(Some(ev)) = stream.try_next().await {
                    match ev {
                        WatchEvent::Added(cm) => {
                            rv = cm.metadata.resource_version.unwrap_or(rv);
                            if seen[i].fetch_add(1, Ordering::Relaxed) + 1 >= total {
                                return;
                            }
                        }
                        WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                        WatchEvent::Error(e) => {
                            eprintln!("watcher {i}: {e:?}");
                            return;
                        }
                        _ => {}
                    }
                }
            }
        }));
    }

    let created = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let api = api.clone();
        let next = next.clone();
        let total = args.objects;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), kube::Error>(());
                }
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "devcluster", "shard": (i % 10).to_string()}},
                    "data": {"payload": "x".repeat(256)}
                }))
                .map_err(kube::Error::SerdeError)?;
                api.create(&PostParams::default(), &cm).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let create_secs = created.elapsed().as_secs_f64();

    let watch_started = Instant::now();
    let all_seen = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(watch_tasks),
    )
    .await
    .is_ok();
    let fanout_secs = watch_started.elapsed().as_secs_f64();
    let counts: Vec<usize> = seen.iter().map(|c| c.load(Ordering::Relaxed)).collect();

    let listed = Instant::now();
    let list = api.list(&ListParams::default()).await?;
    let list_ms = listed.elapsed().as_secs_f64() * 1000.0;
    let selected = Instant::now();
    let shard = api.list(&ListParams::default().labels("shard=3")).await?;
    let select_ms = selected.elapsed().as_secs_f64() * 1000.0;
    let paged = Instant::now();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        pages += 1;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let paged_ms = paged.elapsed().as_secs_f64() * 1000.0;
    let rss_full = rss_mb(pid);

    println!(
        "devcluster load test: {} objects (ConfigMaps, 256 B payload), {} watchers, {} concurrent creators",
        args.objects, args.watchers, args.concurrency
    );
    println!(
        "start to first answer     {:>10.1} ms",
        first_answer.as_secs_f64() * 1000.0
    );
    println!(
        "creates                   {:>10.0} /s   ({create_secs:.2} s)",
        args.objects as f64 / create_secs
    );
    println!(
        "watch fan-out complete    {:>10}     (each watcher saw {:?} of {}; done {fanout_secs:.2} s after the last create)",
        all_seen && counts.iter().all(|c| *c == args.objects),
        counts.iter().min(),
        args.objects
    );
    println!(
        "list all                  {:>10.1} ms  ({} items)",
        list_ms,
        list.items.len()
    );
    println!(
        "list by label selector    {:>10.1} ms  ({} items)",
        select_ms,
        shard.items.len()
    );
    println!(
        "paged list (limit 500)    {:>10.1} ms  ({pages} pages)",
        paged_ms
    );
    println!("server RSS empty          {:>10.1} MB", rss_empty);
    println!("server RSS with objects   {:>10.1} MB", rss_full);
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
