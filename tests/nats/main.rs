//! Keyed series on a 3-node NATS JetStream cluster: workers take partitions by lease, a killed
//! worker's partitions move, restarted workers resume from checkpoints, a paused worker stops
//! writing. Every test compares the records in TBPTT_OUT, key by key, with a single-process
//! `learn --key host --sync` run of the same events.

// The helpers shared with the other integration tests (`tests/it`).
#[path = "../it/util.rs"]
mod util;

use crate::util::{free_tcp_port, real_server, tbptt, wait_until, Finished, Input, Proc, TempDir};
use async_nats::jetstream;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Model flags shared by the workers and the reference run (small, so 2 cores keep up).
const MODEL: [&str; 6] = ["--hidden", "8", "-T", "8", "-k", "4"];

struct Node(Option<Child>);

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three nats-server processes on loopback, clustered, with JetStream in temp dirs.
struct Cluster {
    nodes: Vec<Node>,
    ports: Vec<u16>,
    _dir: TempDir,
}

impl Cluster {
    fn start(server: &std::path::Path) -> Cluster {
        let dir = TempDir::new("nats");
        let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let conf = dir.join(&format!("n{i}.conf"));
            let store = dir.join(&format!("n{i}"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: tbptt, listen: 127.0.0.1:{}, routes: [{route_list}] }}\n",
                    ports[i],
                    store.display(),
                    routes[i]
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join(&format!("n{i}.log"))).unwrap();
            let child = Command::new(server)
                .args(["-c", conf.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn nats-server");
            nodes.push(Node(Some(child)));
        }
        let c = Cluster {
            nodes,
            ports,
            _dir: dir,
        };
        // JetStream is ready once a replicated stream can be made (the meta leader's election
        // can take tens of seconds on a loaded 2-core machine).
        rt().block_on(async {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Ok(client) = tbptt::service::scale::connect(&c.url(), Some(1)).await {
                    let js = jetstream::new(client);
                    let made = js
                        .get_or_create_stream(jetstream::stream::Config {
                            name: "READY".into(),
                            subjects: vec!["ready".into()],
                            num_replicas: 3,
                            ..Default::default()
                        })
                        .await;
                    if made.is_ok() {
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    let logs: String = (0..3)
                        .map(|i| {
                            let log = std::fs::read_to_string(c._dir.join(&format!("n{i}.log")))
                                .unwrap_or_default();
                            let tail: Vec<&str> = log.lines().rev().take(15).collect();
                            format!(
                                "n{i}:\n{}\n",
                                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                            )
                        })
                        .collect();
                    panic!("the cluster did not form in 90 s:\n{logs}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        c
    }

    fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The tests here each run a 3-node cluster and 3 workers; two at once on a 2-core machine
/// starve each other's leader elections, so they take turns (a failed test does not block
/// the others: the lock's poison is ignored).
fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `keys` series of `events` each, interleaved, as CSV `time,host,value` (times numeric).
fn events_csv(keys: usize, events: std::ops::Range<usize>) -> String {
    let mut s = String::from("time,host,value\n");
    for t in events {
        for k in 0..keys {
            let v = ((t as f64) * 0.3 + k as f64).sin() * (1.0 + k as f64 % 7.0) + k as f64;
            s.push_str(&format!("{},h{k}.dc-{},{v:.4}\n", 1_700_000_000 + t, k % 3));
        }
    }
    s
}

/// The single-process records of `csv`, as JSON lines grouped by key.
fn reference(dir: &TempDir, csv: &str) -> BTreeMap<String, Vec<String>> {
    let file = dir.join("all.csv");
    std::fs::write(&file, csv).unwrap();
    let mut cmd = tbptt([
        "learn",
        "--key",
        "host",
        "--sync",
        "--output-format",
        "jsonl",
    ]);
    cmd.args(["--epoch-times", "-q"]).args(MODEL).arg(&file);
    let out = crate::util::run(cmd, Input::Null);
    out.assert_code(0);
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.stdout_str().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        by_key.entry(key).or_default().push(line.to_string());
    }
    by_key
}

fn publish(cluster: &Cluster, dir: &TempDir, name: &str, csv: &str, partitions: usize) {
    let file = dir.join(name);
    std::fs::write(&file, csv).unwrap();
    let mut cmd = tbptt(["publish", "--nats", &cluster.url(), "--key", "host"]);
    cmd.args(["--partitions", &partitions.to_string(), "--replicas", "3"])
        .arg(&file);
    crate::util::run(cmd, Input::Null).assert_code(0);
}

fn worker(cluster: &Cluster, id: &str, partitions: usize) -> Proc {
    worker_with(cluster, id, partitions, &[])
}

fn worker_with(cluster: &Cluster, id: &str, partitions: usize, extra: &[&str]) -> Proc {
    let mut cmd = tbptt([
        "--log-level",
        "info",
        "worker",
        "--nats",
        &cluster.url(),
        "--id",
        id,
    ]);
    cmd.args(["--partitions", &partitions.to_string(), "--replicas", "3"])
        .args(["--lease-ttl", "2s", "--state-interval", "500ms"])
        .args(MODEL)
        .args(extra);
    Proc::spawn(cmd, Input::Null)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{body}")) as u64
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &p.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// Messages in TBPTT_OUT now.
fn out_count(cluster: &Cluster) -> u64 {
    stream_info(cluster, "TBPTT_OUT").map_or(0, |i| i.state.messages)
}

/// The stream `name`'s info, if it answers (it exists and has a leader).
fn stream_info(cluster: &Cluster, name: &str) -> Option<jetstream::stream::Info> {
    rt().block_on(async {
        let client = tbptt::service::scale::connect(&cluster.url(), Some(1))
            .await
            .ok()?;
        let js = jetstream::new(client);
        let mut stream = js.get_stream(name).await.ok()?;
        stream.info().await.ok().cloned()
    })
}

/// Every record in TBPTT_OUT, grouped by key (from the subject), in the order of their
/// `index`: after a server failure a key's records may be stored out of order (README,
/// "Scaling out"), never missing or twice, which `settle` and `assert_same` check.
fn outputs(cluster: &Cluster) -> BTreeMap<String, Vec<String>> {
    rt().block_on(async {
        use tokio_stream::StreamExt;
        let client = tbptt::service::scale::connect(&cluster.url(), Some(1))
            .await
            .unwrap();
        let js = jetstream::new(client);
        let mut stream = js.get_stream("TBPTT_OUT").await.unwrap();
        let n = stream.info().await.unwrap().state.messages;
        // Just after a node died the stream may still be electing a leader: retry.
        let mut tries = 0;
        let consumer = loop {
            match stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
                .await
            {
                Ok(c) => break c,
                Err(e) if tries < 10 => {
                    tries += 1;
                    eprintln!("reading the records: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => panic!("cannot read the records: {e}"),
            }
        };
        let mut msgs = consumer.messages().await.unwrap();
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for _ in 0..n {
            let m = msgs.next().await.unwrap().unwrap();
            let token = m.subject.as_str().strip_prefix("tbptt.out.").unwrap();
            let key = tbptt::service::scale::unescape_key(token).unwrap();
            let line = String::from_utf8(m.payload.to_vec()).unwrap();
            by_key
                .entry(key)
                .or_default()
                .push(line.trim_end().to_string());
        }
        for records in by_key.values_mut() {
            let index = |r: &String| {
                serde_json::from_str::<serde_json::Value>(r).unwrap()["index"]
                    .as_u64()
                    .unwrap()
            };
            records.sort_by_key(index);
        }
        by_key
    })
}

/// Waits until TBPTT_OUT holds `n` records and gets no more for a second.
fn settle(cluster: &Cluster, n: u64, timeout: Duration) {
    wait_until("the records to be written", timeout, || {
        out_count(cluster) >= n
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        out_count(cluster),
        n,
        "records beyond the events: duplicates"
    );
}

fn assert_same(got: &BTreeMap<String, Vec<String>>, want: &BTreeMap<String, Vec<String>>) {
    assert_eq!(got.len(), want.len(), "keys");
    for (k, w) in want {
        let g = got.get(k).unwrap_or_else(|| panic!("no records of {k}"));
        assert_eq!(g.len(), w.len(), "records of {k}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(a, b, "record {i} of {k}");
        }
    }
}

fn stop(p: Proc) -> Finished {
    p.sigterm();
    p.finish(Duration::from_secs(30))
}

/// The worker's closing counters (the JSON line it prints at its end).
fn stats(f: &Finished) -> serde_json::Value {
    let line = f
        .stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no counters; stderr:\n{}", f.stderr));
    serde_json::from_str(line).unwrap()
}

/// Lease holders of partitions `0..p`.
fn holders(cluster: &Cluster, p: usize) -> Vec<Option<String>> {
    rt().block_on(async {
        let client = tbptt::service::scale::connect(&cluster.url(), Some(1))
            .await
            .unwrap();
        let js = jetstream::new(client);
        let Ok(kv) = js.get_key_value("tbptt_leases").await else {
            return vec![None; p];
        };
        let mut out = Vec::new();
        for i in 0..p {
            let v = kv.get(format!("p.{i}")).await.ok().flatten();
            out.push(v.map(|b| String::from_utf8_lossy(&b).into_owned()));
        }
        out
    })
}

#[test]
fn a_sigkilled_workers_partitions_move_and_every_record_equals_a_single_process_run() {
    let _one_at_a_time = one_cluster_at_a_time();
    let Some(server) = real_server("nats-server") else {
        return;
    };
    let (keys, events, parts) = (1000, 200, 12);
    let cluster = Cluster::start(&server);
    let dir = TempDir::new("nats-kill");
    let csv = events_csv(keys, 0..events);
    let want = reference(&dir, &csv);
    let ws: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|id| worker(&cluster, id, parts))
        .collect();
    // Partitions spread over the live workers, so each of the three ends up with some.
    wait_until(
        "all partitions owned, by all three workers",
        Duration::from_secs(60),
        || {
            let owners = holders(&cluster, parts);
            owners.iter().all(Option::is_some)
                && ["a", "b", "c"]
                    .iter()
                    .all(|w| owners.iter().any(|o| o.as_deref() == Some(*w)))
        },
    );
    let total = (keys * events) as u64;
    let pub_cluster_url = cluster.url();
    let file = dir.join("in.csv");
    std::fs::write(&file, &csv).unwrap();
    let mut cmd = tbptt(["publish", "--nats", &pub_cluster_url, "--key", "host"]);
    cmd.args(["--partitions", &parts.to_string(), "--replicas", "3"])
        .arg(&file);
    let producer = Proc::spawn(cmd, Input::Null);
    wait_until("a third of the records", Duration::from_secs(240), || {
        out_count(&cluster) >= total / 3
    });
    // The victim is a worker that holds partitions now: leases can move between the check
    // above and this one when a worker misses a renewal on a loaded machine.
    let owners = holders(&cluster, parts);
    let names = ["a", "b", "c"];
    let vi = names
        .iter()
        .position(|w| owners.iter().any(|o| o.as_deref() == Some(*w)))
        .unwrap_or_else(|| panic!("no worker owns a partition to lose: {owners:?}"));
    let gone = names[vi];
    let mut ws = ws;
    let victim = ws.remove(vi);
    let ws = ws.into_iter();
    signal(&victim, "KILL");
    let killed_at = Instant::now();
    producer.finish(Duration::from_secs(300)).assert_code(0);
    settle(&cluster, total, Duration::from_secs(300));
    eprintln!("all records {:?} after the kill", killed_at.elapsed());
    // Leases move asynchronously: one a survivor lost under load is taken again within a
    // few TTLs (2 s each).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let owners = holders(&cluster, parts);
        if owners
            .iter()
            .all(|o| o.as_deref().is_some_and(|o| o != gone))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions are not all held by live workers ({gone} killed): {owners:?}\n\
             survivors:\n{}\n{}",
            ws.as_slice()[0].stderr(),
            ws.as_slice()[1].stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_same(&outputs(&cluster), &want);
    for w in ws {
        let f = stop(w);
        f.assert_code(0);
        let s = stats(&f);
        eprintln!("{s}");
    }
    drop(victim);
}

#[test]
fn restarted_workers_resume_from_their_checkpoints_not_from_zero() {
    let _one_at_a_time = one_cluster_at_a_time();
    let Some(server) = real_server("nats-server") else {
        return;
    };
    let (keys, parts) = (60, 6);
    let cluster = Cluster::start(&server);
    let dir = TempDir::new("nats-restart");
    let first = events_csv(keys, 0..60);
    let second = events_csv(keys, 60..100);
    let want = reference(&dir, &events_csv(keys, 0..100));
    let ws: Vec<Proc> = ["a", "b"]
        .iter()
        .map(|id| worker(&cluster, id, parts))
        .collect();
    publish(&cluster, &dir, "first.csv", &first, parts);
    settle(&cluster, (keys * 60) as u64, Duration::from_secs(60));
    for w in ws {
        stop(w).assert_code(0);
    }
    publish(&cluster, &dir, "second.csv", &second, parts);
    let ports = [free_tcp_port(), free_tcp_port()];
    let ws: Vec<Proc> = ["c", "d"]
        .iter()
        .zip(ports)
        .map(|(id, port)| {
            let metrics = format!("127.0.0.1:{port}");
            worker_with(&cluster, id, parts, &["--metrics", &metrics])
        })
        .collect();
    settle(&cluster, (keys * 100) as u64, Duration::from_secs(60));
    assert_same(&outputs(&cluster), &want);
    // Each worker's /metrics counts what it did; together they own every partition.
    let scrape = |port: u16, name: &str| -> u64 {
        let addr = ([127, 0, 0, 1], port).into();
        let (status, body) = crate::util::http(addr, "GET", "/metrics", "", "");
        assert_eq!(status, 200, "{body}");
        metric(&body, name)
    };
    let scraped = |name: &str| -> u64 { ports.iter().map(|port| scrape(*port, name)).sum() };
    // Partitions may move after all are owned (the first worker up takes them all, or the
    // stopped workers' heartbeats are still live), so wait for the even spread, and for every
    // partition taken to have been restored, before comparing the counters with the totals.
    wait_until(
        "the new workers share the partitions evenly, each restored",
        Duration::from_secs(60),
        || {
            ports
                .iter()
                .all(|port| scrape(*port, "tbptt_worker_partitions") == (parts / 2) as u64)
                && scraped("tbptt_worker_partitions_restored_total")
                    == scraped("tbptt_worker_partitions_taken_total")
        },
    );
    let scraped_events = scraped("tbptt_worker_events_total");
    let scraped_restored = scraped("tbptt_worker_partitions_restored_total");
    let scraped_taken = scraped("tbptt_worker_partitions_taken_total");
    // Stopping one worker hands its partitions to the other, which takes and restores them
    // again before it stops too: every take after the scrape is a restore.
    let (mut applied, mut restored, mut taken) = (0, 0, 0);
    for w in ws {
        let f = stop(w);
        f.assert_code(0);
        let s = stats(&f);
        applied += s["events"].as_u64().unwrap();
        restored += s["restored"].as_u64().unwrap();
        taken += s["taken"].as_u64().unwrap();
    }
    assert_eq!(scraped_events, applied);
    assert_eq!(restored - scraped_restored, taken - scraped_taken);
    assert_eq!(
        applied,
        (keys * 40) as u64,
        "only the new events are applied"
    );
    assert!(
        restored >= parts as u64,
        "every partition restored: {restored}"
    );
}

#[test]
fn a_worker_paused_past_its_lease_stops_writing_for_its_partitions() {
    let _one_at_a_time = one_cluster_at_a_time();
    let Some(server) = real_server("nats-server") else {
        return;
    };
    let (keys, parts) = (40, 4);
    let cluster = Cluster::start(&server);
    let dir = TempDir::new("nats-pause");
    let want = reference(&dir, &events_csv(keys, 0..80));
    let a = worker(&cluster, "a", parts);
    let b = worker(&cluster, "b", parts);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = holders(&cluster, parts);
        if h.iter().flatten().count() == parts
            && h.iter().any(|o| o.as_deref() == Some("a"))
            && h.iter().any(|o| o.as_deref() == Some("b"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases {h:?}; a:\n{}\nb:\n{}",
            a.stderr(),
            b.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    publish(&cluster, &dir, "first.csv", &events_csv(keys, 0..40), parts);
    settle(&cluster, (keys * 40) as u64, Duration::from_secs(60));
    signal(&a, "STOP");
    wait_until("b to own every partition", Duration::from_secs(20), || {
        holders(&cluster, parts)
            .iter()
            .all(|o| o.as_deref() == Some("b"))
    });
    publish(
        &cluster,
        &dir,
        "second.csv",
        &events_csv(keys, 40..80),
        parts,
    );
    settle(&cluster, (keys * 80) as u64, Duration::from_secs(60));
    signal(&a, "CONT");
    wait_until("a to notice", Duration::from_secs(10), || {
        a.stderr().contains("lease lost")
    });
    // Back alive, a may take partitions again, restored from b's checkpoints; but no
    // checkpoint ever goes back to an older sequence (a's state from before the pause).
    std::thread::sleep(Duration::from_secs(3));
    for (p, history) in checkpoint_writers(&cluster, parts).iter().enumerate() {
        assert!(
            history.windows(2).all(|w| w[0].0 <= w[1].0),
            "partition {p}: a checkpoint went back: {history:?}"
        );
        assert!(
            history.iter().any(|(_, w)| w == "b"),
            "partition {p}: {history:?}"
        );
    }
    assert_same(&outputs(&cluster), &want);
    stop(b).assert_code(0);
    stop(a).assert_code(0);
}

/// Each checkpoint pointer of partitions `0..p`: its sequence and writer, oldest first.
fn checkpoint_writers(cluster: &Cluster, p: usize) -> Vec<Vec<(u64, String)>> {
    rt().block_on(async {
        use tokio_stream::StreamExt;
        let client = tbptt::service::scale::connect(&cluster.url(), Some(1))
            .await
            .unwrap();
        let js = jetstream::new(client);
        let kv = js.get_key_value("tbptt_checkpoints").await.unwrap();
        let mut all = Vec::new();
        for i in 0..p {
            let mut h = kv.history(format!("p.{i}")).await.unwrap();
            let mut writers = Vec::new();
            while let Some(Ok(e)) = h.next().await {
                let v = String::from_utf8_lossy(&e.value).into_owned();
                let f: Vec<&str> = v.split(' ').collect();
                writers.push((f[0].parse().unwrap(), f[2].to_string()));
            }
            all.push(writers);
        }
        all
    })
}

#[test]
fn a_killed_nats_node_loses_no_event_and_the_workers_carry_on() {
    let _one_at_a_time = one_cluster_at_a_time();
    let Some(server) = real_server("nats-server") else {
        return;
    };
    let (keys, events, parts) = (60, 200, 6);
    let mut cluster = Cluster::start(&server);
    let dir = TempDir::new("nats-node");
    let want = reference(&dir, &events_csv(keys, 0..events));
    // The first half is in the stream before the node dies, the second is published after:
    // the workers carry on through the failure with events still to come, whatever their speed.
    let half = events / 2;
    publish(
        &cluster,
        &dir,
        "first.csv",
        &events_csv(keys, 0..half),
        parts,
    );
    let ws: Vec<Proc> = ["a", "b"]
        .iter()
        .map(|id| worker(&cluster, id, parts))
        .collect();
    let total = (keys * events) as u64;
    wait_until("a sixth of the records", Duration::from_secs(60), || {
        out_count(&cluster) >= total / 6
    });
    cluster.kill(0);
    let at_kill = out_count(&cluster);
    eprintln!("{at_kill} of {total} records when node 0 died");
    // The streams elect new leaders among the two nodes left; the producer publishes once its
    // stream answers again.
    wait_until(
        "the input stream to answer after the kill",
        Duration::from_secs(60),
        || stream_info(&cluster, "TBPTT_IN").is_some(),
    );
    let second = events_csv(keys, half..events);
    publish(&cluster, &dir, "second.csv", &second, parts);
    settle(&cluster, total, Duration::from_secs(180));
    assert_same(&outputs(&cluster), &want);
    for w in ws {
        stop(w).assert_code(0);
    }
}

/// Figures for the README: `cargo test --test nats bench -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a benchmark: prints events/s, takeover time and checkpoint figures"]
fn bench_events_per_second_takeover_and_checkpoints() {
    let _one_at_a_time = one_cluster_at_a_time();
    let Some(server) = real_server("nats-server") else {
        return;
    };
    let (keys, events, parts) = (200, 100, 12);
    let total = (keys * events) as u64;
    for (n, hidden) in [(1, "16"), (2, "16"), (3, "16"), (1, "64")] {
        let cluster = Cluster::start(&server);
        let dir = TempDir::new("nats-bench");
        let ids = ["a", "b", "c"];
        let ws: Vec<Proc> = ids[..n]
            .iter()
            .map(|id| {
                let mut cmd = tbptt(["worker", "--nats", &cluster.url(), "--id", id]);
                cmd.args(["--partitions", &parts.to_string(), "--replicas", "3"])
                    .args(["--lease-ttl", "2s", "--state-interval", "1s"])
                    .args(["--hidden", hidden, "-T", "16", "-k", "4"]);
                Proc::spawn(cmd, Input::Null)
            })
            .collect();
        // Balanced first: every worker owns its share.
        wait_until("balanced leases", Duration::from_secs(60), || {
            let h = holders(&cluster, parts);
            h.iter().flatten().count() == parts
                && ids[..n]
                    .iter()
                    .all(|id| h.iter().filter(|o| o.as_deref() == Some(*id)).count() == parts / n)
        });
        let t = Instant::now();
        publish(
            &cluster,
            &dir,
            "in.csv",
            &events_csv(keys, 0..events),
            parts,
        );
        let publish_rate = total as f64 / t.elapsed().as_secs_f64();
        while out_count(&cluster) < total {
            assert!(t.elapsed() < Duration::from_secs(300), "records missing");
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = t.elapsed().as_secs_f64();
        let mut line = format!(
            "workers {n} H={hidden}: {:.0} events/s end to end (publish alone {publish_rate:.0}/s)",
            total as f64 / secs
        );
        for w in ws {
            let f = stop(w);
            let Some(l) = f.stderr.lines().rev().find(|l| l.starts_with('{')) else {
                line.push_str("; a worker without counters");
                continue;
            };
            let s: serde_json::Value = serde_json::from_str(l).unwrap();
            line.push_str(&format!(
                "; checkpoint {} B in {:.1} ms",
                s["checkpoint_bytes"],
                s["checkpoint_ms"].as_f64().unwrap_or(0.0)
            ));
        }
        eprintln!("{line}");
    }
    // Takeover: two idle workers, one killed; until its partitions have a new owner.
    let cluster = Cluster::start(&server);
    let a = worker(&cluster, "a", parts);
    let b = worker(&cluster, "b", parts);
    wait_until("both own partitions", Duration::from_secs(30), || {
        let h = holders(&cluster, parts);
        h.iter().flatten().count() == parts && h.iter().any(|o| o.as_deref() == Some("a"))
    });
    signal(&a, "KILL");
    let t = Instant::now();
    wait_until("b to own every partition", Duration::from_secs(30), || {
        holders(&cluster, parts)
            .iter()
            .all(|o| o.as_deref() == Some("b"))
    });
    eprintln!(
        "takeover after SIGKILL (lease TTL 2 s): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    stop(b).assert_code(0);
}
