//! The monitoring daemon's outputs against the real parts: a Prometheus server scraping
//! `/metrics`, an InfluxDB server receiving the forecasts, a Graphite listener that drops the
//! connection, and `promtool` checking the alert rules.

use crate::util::http;
use crate::util::{
    free_tcp_port, real_server, summary, tbptt, wait_until, Input, Proc, TempDir, TIMEOUT,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process, killed on every exit path of the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    fn spawn(cmd: &mut Command, log: &std::path::Path) -> Server {
        let out = std::fs::File::create(log).expect("server log");
        let err = out.try_clone().expect("server log");
        Server(
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawn server"),
        )
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The address tbptt announced after `marker` on stderr.
fn announced(p: &Proc, marker: &str) -> SocketAddr {
    wait_until(marker, TIMEOUT, || p.stderr().contains(marker));
    let err = p.stderr();
    let at = err.find(marker).unwrap() + marker.len();
    err[at..]
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// JSON lines of keyed sine waves, one a second from a fixed epoch; `keys` are canonical keys.
fn keyed_events(keys: &[&str], n: usize, t0: u64) -> String {
    let mut text = String::new();
    for t in 0..n {
        for (i, k) in keys.iter().enumerate() {
            let v = ((t as f64) * 0.2 + i as f64).sin() * 10.0 + 50.0;
            let key = serde_json::to_string(k).unwrap();
            text.push_str(&format!(
                "{{\"time\":{},\"key\":{key},\"value\":{v}}}\n",
                t0 + t as u64
            ));
        }
    }
    text
}

const SMALL: [&str; 6] = ["--hidden", "8", "-T", "8", "-k", "4"];

#[test]
fn prometheus_scrapes_the_series_tbptt_knows_with_their_labels() {
    let Some(prometheus) = real_server("prometheus") else {
        return;
    };
    let dir = TempDir::new("prometheus");
    let mut cmd = tbptt([
        "learn",
        "--listen",
        "tcp://127.0.0.1:0",
        "--format",
        "jsonl",
        "--key",
        "key",
        "--time",
        "time",
        "--metrics",
        "127.0.0.1:0",
        "-o",
        "none",
        "-q",
    ]);
    cmd.args(SMALL);
    let p = Proc::spawn(cmd, Input::Null);
    let input = announced(&p, "listening on tcp://");
    let metrics = announced(&p, "metrics on http://");
    assert_eq!(http(metrics, "GET", "/healthz", "", "").0, 200);
    let keys = [
        r#"cpu_usage{dc="eu west",host="a"}"#,
        r#"cpu_usage{dc="eu west",host="b"}"#,
        r#"mem{host="a",series="x"}"#,
        "collectd.a.load",
    ];
    let mut conn = TcpStream::connect(input).unwrap();
    conn.write_all(keyed_events(&keys, 200, 1_700_000_000).as_bytes())
        .unwrap();
    drop(conn);
    wait_until("tbptt to hold the series", TIMEOUT, || {
        let (code, body) = http(metrics, "GET", "/metrics", "", "");
        code == 200 && body.contains("tbptt_events_total 800\n")
    });
    assert_eq!(http(metrics, "GET", "/ready", "", "").0, 200);
    let (_, om) = http(
        metrics,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0\r\n",
        "",
    );
    assert!(om.ends_with("# EOF\n"), "{om}");

    let port = free_tcp_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: tbptt\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let _server = Server::spawn(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &dir.join("prometheus.log"),
    );
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = format!("/api/v1/query?query={}", enc("tbptt_anomaly_score"));
    let mut result = Value::Null;
    wait_until(
        "Prometheus to scrape tbptt",
        Duration::from_secs(40),
        || {
            let (code, body) = http(api, "GET", &query, "", "");
            if code != 200 {
                return false;
            }
            result = serde_json::from_str(&body).unwrap_or(Value::Null);
            result["data"]["result"]
                .as_array()
                .is_some_and(|r| r.len() == keys.len())
        },
    );
    let mut got: Vec<String> = result["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = s["metric"].as_object().unwrap();
            assert_eq!(m["job"], "tbptt");
            assert_eq!(m["__name__"], "tbptt_anomaly_score");
            let score: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            assert!((0.0..=1.0).contains(&score), "{s}");
            let mut labels: Vec<String> = m
                .iter()
                .filter(|(k, _)| !["job", "instance", "__name__"].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            labels.sort();
            labels.join(",")
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "dc=eu west,host=a,series=cpu_usage",
            "dc=eu west,host=b,series=cpu_usage",
            "exported_series=x,host=a,series=mem",
            "series=collectd.a.load",
        ]
    );
    // The engine's counters came along.
    let query = format!("/api/v1/query?query={}", enc("tbptt_series"));
    let (_, body) = http(api, "GET", &query, "", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "4", "{v}");
}

/// A temporary InfluxDB 1.x server on free ports.
fn influxd(dir: &TempDir) -> Option<(Server, SocketAddr)> {
    let influxd = real_server("influxd")?;
    let (rpc, port) = (free_tcp_port(), free_tcp_port());
    let d = dir.path().display();
    let config = dir.join("influxdb.conf");
    std::fs::write(
        &config,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n"
        ),
    )
    .unwrap();
    let server = Server::spawn(
        Command::new(influxd).arg("-config").arg(&config),
        &dir.join("influxd.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("influxd to answer /ping", TIMEOUT, || {
        http(addr, "GET", "/ping", "", "").0 == 204
    });
    Some((server, addr))
}

fn influx_query(addr: SocketAddr, q: &str) -> Value {
    let (code, body) = http(
        addr,
        "GET",
        &format!("/query?db=tbptt&q={}", enc(q)),
        "",
        "",
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn influxdb_receives_each_series_forecasts() {
    let dir = TempDir::new("influx");
    let Some((_server, addr)) = influxd(&dir) else {
        return;
    };
    let (code, body) = http(
        addr,
        "POST",
        &format!("/query?q={}", enc("CREATE DATABASE tbptt")),
        "",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let input = dir.join("in.jsonl");
    let keys = [r#"cpu{host="a b"}"#, r#"cpu{host="c,d"}"#];
    std::fs::write(&input, keyed_events(&keys, 300, 1_700_000_000)).unwrap();
    let out = dir.join("out.csv");
    let mut cmd = tbptt([
        "replay", "--format", "jsonl", "--key", "key", "--time", "time",
    ]);
    cmd.arg(&input)
        .args(SMALL)
        .args(["-o", &format!("influx+http://{addr}/write?db=tbptt"), "-o"])
        .arg(&out)
        .arg("--summary")
        .arg(dir.join("s.json"));
    let done = Proc::spawn(cmd, Input::Null).finish(TIMEOUT);
    done.assert_code(0);
    let s = summary(&dir.join("s.json"));
    let o = &s["outputs"][0];
    assert_eq!(o["written"], 600, "{s}");
    assert_eq!(o["dropped"], 0);
    let v = influx_query(addr, "SELECT count(forecast) FROM cpu GROUP BY host");
    let series = v["results"][0]["series"].as_array().expect("series");
    let mut counts: Vec<(String, u64)> = series
        .iter()
        .map(|s| {
            (
                s["tags"]["host"].as_str().unwrap().to_string(),
                s["values"][0][1].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [("a b".to_string(), 300), ("c,d".to_string(), 300)]);
    // The forecast stored for an event is the one in its record.
    let records = std::fs::read_to_string(&out).unwrap();
    let last = records
        .lines()
        .rfind(|l| l.contains("c,d"))
        .expect("a record of c,d");
    // The forecast column comes before the two onset columns (empty here: no episode).
    let forecast: f64 = last.rsplit(',').nth(2).unwrap().parse().unwrap();
    let v = influx_query(
        addr,
        "SELECT forecast, score, anomaly FROM cpu WHERE host = 'c,d' ORDER BY time DESC LIMIT 1",
    );
    let row = &v["results"][0]["series"][0]["values"][0];
    assert_eq!(row[0], "2023-11-14T22:18:19Z", "{v}");
    assert_eq!(row[1].as_f64().unwrap(), forecast);
    assert!(row[3].is_boolean());
}

/// Reads Graphite lines from `conn` until `want` returns true for what was read, or the peer
/// closes.
fn read_graphite(
    conn: TcpStream,
    lines: &mut Vec<(String, f64, u64)>,
    want: impl Fn(&[(String, f64, u64)]) -> bool,
) {
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    while !want(lines) {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let mut f = line.split_whitespace();
        let (Some(path), Some(v), Some(t), None) = (f.next(), f.next(), f.next(), f.next()) else {
            panic!("not a Graphite line: {line:?}");
        };
        lines.push((path.to_string(), v.parse().unwrap(), t.parse().unwrap()));
    }
}

#[test]
fn graphite_output_reconnects_after_the_listener_drops() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = TempDir::new("graphite");
    let mut cmd = tbptt([
        "learn", "--sync", "--key", "host", "--time", "t", "-q", "-o",
    ]);
    cmd.arg(format!("graphite://{addr}"))
        .args(SMALL)
        .arg("--summary")
        .arg(dir.join("s.json"));
    let mut p = Proc::spawn(cmd, Input::Piped);
    let mut stdin = p.take_stdin();
    let t0 = 1_700_000_000u64;
    let event = |t: u64| format!("{},web{{x}}.1,{}\n", t0 + t, (t as f64 * 0.3).sin());
    let mut text = String::from("t,host,v\n");
    for t in 0..50 {
        text.push_str(&event(t));
    }
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The first connection: every figure of the first 50 events (49 residuals).
    let (conn, _) = listener.accept().unwrap();
    let mut first = Vec::new();
    read_graphite(conn.try_clone().unwrap(), &mut first, |l| {
        l.len() >= 50 * 4 - 1
    });
    assert_eq!(first.len(), 199);
    let path = "web_x_.1.tbptt";
    for figure in ["forecast", "residual", "score", "anomaly"] {
        let n = first
            .iter()
            .filter(|(p, _, _)| *p == format!("{path}.{figure}"))
            .count();
        assert_eq!(
            n,
            if figure == "residual" { 49 } else { 50 },
            "{figure}: {first:?}"
        );
    }
    assert!(first.iter().all(|(_, _, t)| (t0..t0 + 50).contains(t)));
    // The listener drops the connection and goes away; it comes back on the same port.
    drop(conn);
    drop(listener);
    std::thread::sleep(Duration::from_millis(300));
    let mut text = String::new();
    for t in 50..100 {
        text.push_str(&event(t));
    }
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(addr).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut second = Vec::new();
    read_graphite(conn, &mut second, |l| {
        l.iter()
            .filter(|(p, _, _)| p.ends_with(".forecast"))
            .count()
            >= 50
    });
    let times: std::collections::BTreeSet<u64> = second
        .iter()
        .filter(|(p, _, _)| p.ends_with(".forecast"))
        .map(|(_, _, t)| *t)
        .collect();
    assert_eq!(times, (t0 + 50..t0 + 100).collect(), "{second:?}");
    drop(stdin);
    let done = p.finish(TIMEOUT);
    done.assert_code(0);
    let s = summary(&dir.join("s.json"));
    let o = &s["outputs"][0];
    assert_eq!(o["target"], format!("graphite://{addr}"));
    assert!(o["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(o["dropped"], 0, "{s}");
    assert_eq!(o["written"], 399, "{s}");
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_tests() {
    let Some(promtool) = real_server("promtool") else {
        return;
    };
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(docs.join("alerts.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(docs.join("alerts_test.yml"))
        .current_dir(&docs)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn unknown_output_schemes_and_bad_metrics_addresses_are_refused_by_name() {
    let input = crate::util::data("airline_passengers.csv");
    let done = crate::util::run(
        {
            let mut c = tbptt(["replay", "-q", "-o", "kafka://127.0.0.1:9092"]);
            c.arg(&input);
            c
        },
        Input::Null,
    );
    done.assert_code(2);
    assert!(
        done.stderr.contains("unknown scheme kafka://"),
        "{}",
        done.stderr
    );
    let done = crate::util::run(
        {
            let mut c = tbptt(["replay", "-q", "-o", "none", "--metrics", "not an address"]);
            c.arg(&input);
            c
        },
        Input::Null,
    );
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("--metrics: expected PORT or HOST:PORT"),
        "{}",
        done.stderr
    );
    let done = crate::util::run(
        {
            let mut c = tbptt(["replay", "-q", "-o", "influx+https://h:8086/write?db=x"]);
            c.arg(&input);
            c
        },
        Input::Null,
    );
    done.assert_code(2);
    assert!(
        done.stderr.contains("only http:// is supported"),
        "{}",
        done.stderr
    );
}
