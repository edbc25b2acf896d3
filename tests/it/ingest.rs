//! The monitoring protocols in: Graphite and InfluxDB line protocol on the socket listeners
//! and stdin, the HTTP listener (InfluxDB `/write`, `/api/v2/write`, Prometheus remote write,
//! `/ping`), and the real agents: collectd and Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::util::{run, summary, tbptt, wait_until, Input, Proc, TempDir, TIMEOUT};
use tbptt::io::format::remote_write::{self, Label, Sample, TimeSeries, WriteRequest, STALE_NAN};
use tbptt::io::labels;

const MODEL: [&str; 6] = ["--hidden", "4", "-T", "8", "-k", "8"];

/// Starts `tbptt learn --listen URL` writing JSON-lines records to `out`; returns it with the
/// address it announced.
fn listen(url: &str, dir: &TempDir, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "--listen",
        url,
        "--output-format",
        "jsonl",
    ]);
    cmd.args(MODEL)
        .arg("-o")
        .arg(dir.join("out.jsonl"))
        .arg("--summary")
        .arg(dir.join("s.json"))
        .args(extra);
    let p = Proc::spawn(cmd, Input::Null);
    let scheme = url.split("://").next().unwrap_or("tcp");
    let marker = format!("listening on {scheme}://");
    wait_until("the announced address", TIMEOUT, || {
        p.stderr().contains(&marker)
    });
    let err = p.stderr();
    let at = err.find(&marker).expect("announced") + marker.len();
    let addr = err[at..]
        .split_whitespace()
        .next()
        .expect("an address")
        .parse()
        .expect("IP:PORT");
    (p, addr)
}

/// Ends the run with SIGTERM; its stderr and summary.
fn finish(p: Proc, dir: &TempDir) -> (String, serde_json::Value) {
    p.sigterm();
    let done = p.finish(TIMEOUT);
    done.assert_code(0);
    (done.stderr, summary(&dir.join("s.json")))
}

/// The records written so far: (key, time, first forecast).
fn records(dir: &TempDir) -> Vec<(String, Option<f64>)> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
            (
                v["key"].as_str().expect("a key").to_string(),
                v["time"].as_f64(),
            )
        })
        .collect()
}

fn keys(dir: &TempDir) -> BTreeSet<String> {
    records(dir).into_iter().map(|r| r.0).collect()
}

/// One HTTP/1.1 request on a fresh connection; the status and body of the answer.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// [`http`], `None` when there is no answer.
fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // A refused body may be cut off by the server's answer.
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        },
    ))
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(tail.get(..n)?);
        rest = tail.get(n..)?.strip_prefix("\r\n")?;
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn key(name: &str, pairs: &mut [(&str, &str)]) -> String {
    let mut k = String::new();
    labels::canonical(name, pairs, &mut k);
    k
}

#[test]
fn graphite_over_tcp_gives_one_series_per_path() {
    let dir = TempDir::new("graphite-tcp");
    let (p, addr) = listen("tcp://127.0.0.1:0", &dir, &["--format", "graphite"]);
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut text = String::new();
    for t in 0..20 {
        text.push_str(&format!(
            "servers.a.cpu {} {}\n",
            10 + t % 3,
            1_700_000_000 + 10 * t
        ));
        text.push_str(&format!("servers.b.cpu\t{}.5\n", 50 + t % 5));
    }
    text.push_str("servers.c.cpu twelve 1700000000\n");
    conn.write_all(text.as_bytes()).unwrap();
    drop(conn);
    wait_until("40 records", TIMEOUT, || records(&dir).len() == 40);
    let (stderr, s) = finish(p, &dir);
    let recs = records(&dir);
    assert_eq!(
        keys(&dir),
        BTreeSet::from(["servers.a.cpu".into(), "servers.b.cpu".into()])
    );
    assert_eq!(recs[0], ("servers.a.cpu".into(), Some(1_700_000_000.0)));
    assert_eq!(recs[1], ("servers.b.cpu".into(), None));
    assert_eq!(s["series"]["series"], 2);
    assert_eq!(s["rejected"], 1);
    assert_eq!(s["rejected_by_reason"]["not_a_number"], 1, "{s}");
    assert!(
        stderr.contains("line 41: column `servers.c.cpu`: not a number: `twelve`"),
        "{stderr}"
    );
}

#[test]
fn influx_on_stdin_and_over_udp_with_precision_skipped_fields_and_escapes() {
    let input = "\
# a comment
weather,location=us\\ midwest,station=a temperature=82,humidity=71i,note=\"too \\\"warm\\\"\" 1465839830
weather,station=a,location=us\\ midwest temperature=83,humidity=70i,raining=f 1465839840
weather,location=us\\,east temperature=60u 1465839850
broken line
";
    let dir = TempDir::new("influx-stdin");
    let mut cmd = tbptt([
        "replay",
        "-",
        "--format",
        "influx",
        "--influx-precision",
        "s",
        "--output-format",
        "jsonl",
    ]);
    cmd.args(MODEL)
        .arg("-o")
        .arg(dir.join("out.jsonl"))
        .arg("--summary")
        .arg(dir.join("s.json"));
    let done = run(cmd, Input::Bytes(input.as_bytes().to_vec()));
    done.assert_code(0);
    let recs = records(&dir);
    let t = key(
        "weather_temperature",
        &mut [("location", "us midwest"), ("station", "a")],
    );
    let h = key(
        "weather_humidity",
        &mut [("location", "us midwest"), ("station", "a")],
    );
    let e = key("weather_temperature", &mut [("location", "us,east")]);
    assert_eq!(
        recs,
        [
            (t.clone(), Some(1_465_839_830.0)),
            (h.clone(), Some(1_465_839_830.0)),
            (t, Some(1_465_839_840.0)),
            (h, Some(1_465_839_840.0)),
            (e, Some(1_465_839_850.0)),
        ]
    );
    let s = summary(&dir.join("s.json"));
    assert_eq!(s["rejected"], 1);
    assert_eq!(s["rejected_by_reason"]["malformed"], 1, "{s}");
    assert!(
        done.stderr.contains("rejected input    1 (malformed 1)"),
        "{}",
        done.stderr
    );
    assert_eq!(s["skipped_values"]["fields"], 2);
    assert_eq!(s["series"]["series"], 3);
    assert!(
        done.stderr.contains("line 5: malformed record"),
        "{}",
        done.stderr
    );

    // The same lines in datagrams, several lines to one.
    let dir = TempDir::new("influx-udp");
    let (p, addr) = listen(
        "udp://127.0.0.1:0",
        &dir,
        &["--format", "influx", "--influx-precision", "s"],
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(input.as_bytes(), addr).unwrap();
    wait_until("5 records", TIMEOUT, || records(&dir).len() == 5);
    let (_, s) = finish(p, &dir);
    assert_eq!(records(&dir), recs);
    assert_eq!(
        (
            s["rejected"].as_u64(),
            s["skipped_values"]["fields"].as_u64()
        ),
        (Some(1), Some(2))
    );
}

#[test]
fn keyed_formats_refuse_column_flags() {
    let done = run(
        tbptt(["replay", "-", "--format", "graphite", "--key", "host"]),
        Input::Null,
    );
    done.assert_code(2);
    assert!(
        done.stderr.contains("graphite input names its own series"),
        "{}",
        done.stderr
    );
}

#[test]
fn http_influx_writes_v1_v2_gzip_precision_ping_and_refusals() {
    let dir = TempDir::new("http-influx");
    let (p, addr) = listen("http://127.0.0.1:0", &dir, &["--max-body", "4096"]);
    let (status, _) = http(addr, "GET", "/ping", &[], b"");
    assert_eq!(status, 204);
    let (status, _) = http(addr, "HEAD", "/ping", &[], b"");
    assert_eq!(status, 204);
    // v1 with seconds, v2 with milliseconds, gzip as Telegraf sends it.
    let (status, body) = http(
        addr,
        "POST",
        "/write?db=telegraf&precision=s",
        &[],
        b"cpu,host=a usage_idle=98.5,usage_user=1.5 1700000000\n",
    );
    assert_eq!((status, body.as_str()), (204, ""));
    let zipped =
        gzip(b"cpu,host=a usage_idle=97.5 1700000010000\ncpu,host=b usage_idle=50 1700000010000\n");
    let (status, _) = http(
        addr,
        "POST",
        "/api/v2/write?bucket=b&org=o&precision=ms",
        &[("Content-Encoding", "gzip")],
        &zipped,
    );
    assert_eq!(status, 204);
    // Default precision: nanoseconds.
    let (status, _) = http(
        addr,
        "POST",
        "/write",
        &[],
        b"cpu,host=b usage_idle=51 1700000020000000000",
    );
    assert_eq!(status, 204);
    // A partial write: the good line is taken, the answer names the bad one.
    let (status, body) = http(
        addr,
        "POST",
        "/write?precision=s",
        &[],
        b"cpu,host=a usage_idle=96 1700000030\ncpu,host=a usage_idle=\n",
    );
    assert_eq!(status, 400);
    assert!(body.contains("partial write: 1 of 3 lines rejected; first: line 2: malformed record: missing field value at byte 22"), "{body}");
    // Refusals.
    let big = vec![b'x'; 5000];
    let (status, body) = http(addr, "POST", "/write", &[], &big);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("exceeds the limit of 4096 bytes"), "{body}");
    let bomb = gzip(&vec![b'#'; 100_000]);
    let (status, body) = http(
        addr,
        "POST",
        "/write",
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(status, 413, "{body}");
    let (status, body) = http(
        addr,
        "POST",
        "/write",
        &[("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(status, 400);
    assert!(body.contains("not valid gzip"), "{body}");
    let (status, _) = http(addr, "POST", "/write", &[("Content-Encoding", "br")], b"x");
    assert_eq!(status, 415);
    let (status, body) = http(addr, "POST", "/write?precision=d", &[], b"m v=1");
    assert_eq!(status, 400);
    assert!(body.contains("unknown timestamp precision `d`"), "{body}");
    assert_eq!(http(addr, "POST", "/nowhere", &[], b"").0, 404);
    assert_eq!(http(addr, "GET", "/write", &[], b"").0, 405);
    wait_until("6 records", TIMEOUT, || records(&dir).len() == 6);
    let (_, s) = finish(p, &dir);
    let recs = records(&dir);
    let idle_a = key("cpu_usage_idle", &mut [("host", "a")]);
    let idle_b = key("cpu_usage_idle", &mut [("host", "b")]);
    let user_a = key("cpu_usage_user", &mut [("host", "a")]);
    assert_eq!(
        recs,
        [
            (idle_a.clone(), Some(1_700_000_000.0)),
            (user_a, Some(1_700_000_000.0)),
            (idle_a.clone(), Some(1_700_000_010.0)),
            (idle_b.clone(), Some(1_700_000_010.0)),
            (idle_b, Some(1_700_000_020.0)),
            (idle_a, Some(1_700_000_030.0)),
        ]
    );
    assert_eq!(s["series"]["series"], 3);
    assert_eq!(s["rejected"], 1);
}

#[test]
fn http_remote_write_several_samples_out_of_order_and_stale_markers() {
    let dir = TempDir::new("http-remote");
    let (p, addr) = listen("http://127.0.0.1:0", &dir, &[]);
    let series = |labels: &[(&str, &str)], samples: &[(f64, i64)]| TimeSeries {
        labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
    };
    let request = WriteRequest {
        timeseries: vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", "a:9090"),
                ],
                &[(1.0, 1_000), (2.0, 2_000), (1.5, 1_500), (3.0, 3_000)],
            ),
            series(
                &[("__name__", "up"), ("job", "api")],
                &[(1.0, 1_000), (f64::from_bits(STALE_NAN), 2_000)],
            ),
            series(&[("job", "nameless")], &[(1.0, 1_000)]),
        ],
    };
    let headers = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/write",
        &headers,
        &remote_write::encode(&request),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "1 series rejected; first: series 3: malformed record: no __name__ label"
    );
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/write",
        &headers,
        b"\xff\xff\xff\xff\xff\xff\xff",
    );
    assert_eq!(status, 400);
    assert!(body.contains("not snappy-compressed"), "{body}");
    wait_until("4 records", TIMEOUT, || records(&dir).len() == 4);
    let (_, s) = finish(p, &dir);
    let total = key(
        "http_requests_total",
        &mut [("instance", "a:9090"), ("job", "api")],
    );
    assert_eq!(
        records(&dir),
        [
            (total.clone(), Some(1.0)),
            (total.clone(), Some(2.0)),
            (total, Some(3.0)),
            (key("up", &mut [("job", "api")]), Some(1.0)),
        ]
    );
    assert_eq!(s["skipped_values"]["stale_markers"], 1);
    assert_eq!(s["skipped_values"]["out_of_order"], 1);
    assert_eq!(s["rejected"], 1);
}

#[test]
fn http_connections_obey_the_idle_timeout_and_the_per_address_limit() {
    let dir = TempDir::new("http-limits");
    let (p, addr) = listen(
        "http://127.0.0.1:0",
        &dir,
        &["--idle-timeout", "0.3", "--max-connections-per-peer", "2"],
    );
    // A connection that sends half a request and then nothing is closed.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    // Two active connections from one address take its slots; a third is refused.
    let mut a = std::net::TcpStream::connect(addr).unwrap();
    let mut b = std::net::TcpStream::connect(addr).unwrap();
    a.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    b.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    drop((a, b));
    let (_, s) = finish(p, &dir);
    assert!(s["timed_out_connections"].as_u64() >= Some(1), "{s}");
    assert!(s["refused_connections"].as_u64() >= Some(1), "{s}");
}

// ---- real agents

/// A child process killed (and waited for) on every exit path.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts collectd in the foreground with `plugins` (its write plugin's config included).
fn collectd(program: &std::path::Path, dir: &TempDir, write: &str) -> Guard {
    let conf = format!(
        "Interval 1\n\
         BaseDir \"{base}\"\n\
         PIDFile \"{base}/collectd.pid\"\n\
         PluginDir \"/usr/lib/collectd\"\n\
         TypesDB \"/usr/share/collectd/types.db\"\n\
         Hostname \"tbptt-test\"\n\
         FQDNLookup false\n\
         LoadPlugin cpu\nLoadPlugin load\nLoadPlugin memory\n\
         {write}\n",
        base = dir.path().display()
    );
    std::fs::write(dir.join("collectd.conf"), conf).unwrap();
    let log = std::fs::File::create(dir.join("collectd.log")).unwrap();
    let child = std::process::Command::new(program)
        .args(["-f", "-C"])
        .arg(dir.join("collectd.conf"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start collectd");
    Guard(child)
}

/// The Graphite paths collectd wrote to a plain listener, one per line.
fn capture_tcp(
    listener: std::net::TcpListener,
) -> std::sync::Arc<std::sync::Mutex<BTreeSet<String>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let into = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let into = std::sync::Arc::clone(&into);
            std::thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(conn)) {
                    let Ok(line) = line else { return };
                    if let Some(path) = line.split_whitespace().next() {
                        into.lock().unwrap().insert(path.to_string());
                    }
                }
            });
        }
    });
    seen
}

#[test]
fn collectd_write_graphite_feeds_one_series_per_metric() {
    let Some(program) = crate::util::real_server("collectd") else {
        return;
    };
    let dir = TempDir::new("collectd-graphite");
    let (p, addr) = listen("tcp://127.0.0.1:0", &dir, &["--format", "graphite"]);
    // A second node to a plain listener records what collectd sends, to compare.
    let mirror = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mirror_port = mirror.local_addr().unwrap().port();
    let sent = capture_tcp(mirror);
    let node = |name: &str, port: u16| {
        format!(
            "  <Node \"{name}\">\n    Host \"127.0.0.1\"\n    Port \"{port}\"\n    Protocol \"tcp\"\n    Prefix \"collectd.\"\n  </Node>\n"
        )
    };
    let write = format!(
        "LoadPlugin write_graphite\n<Plugin write_graphite>\n{}{}</Plugin>",
        node("tbptt", addr.port()),
        node("mirror", mirror_port)
    );
    let started = Instant::now();
    let agent = collectd(&program, &dir, &write);
    // cpu, load and memory each report (cpu from its second interval on).
    let complete = |k: &BTreeSet<String>| {
        ["cpu", "load.load.shortterm", "memory.memory-used"]
            .iter()
            .all(|m| k.iter().any(|key| key.contains(m)))
    };
    wait_until(
        "every plugin's metrics in tbptt's records",
        Duration::from_secs(30),
        || complete(&keys(&dir)),
    );
    let sent_now = sent.lock().unwrap().clone();
    wait_until(
        "tbptt's records to hold every path sent",
        Duration::from_secs(10),
        || keys(&dir).is_superset(&sent_now),
    );
    drop(agent);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let got = keys(&dir);
    let sent = sent.lock().unwrap().clone();
    eprintln!(
        "collectd write_graphite: {} paths sent, {} series in tbptt's records after {:.1} s",
        sent.len(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(got, sent, "tbptt's keys against collectd's paths");
    let (_, s) = finish(p, &dir);
    assert_eq!(s["series"]["series"].as_u64(), Some(got.len() as u64));
    assert_eq!(s["rejected"], 0);
    assert!(got.len() >= 10, "{got:?}");
    assert!(
        got.iter().all(|k| k.starts_with("collectd.tbptt-test.")),
        "{got:?}"
    );
}

#[test]
fn collectd_write_influxdb_udp_feeds_one_series_per_field_and_tag_set() {
    let Some(program) = crate::util::real_server("collectd") else {
        return;
    };
    let dir = TempDir::new("collectd-influx");
    let (p, addr) = listen(
        "udp://127.0.0.1:0",
        &dir,
        &["--format", "influx", "--influx-precision", "ms"],
    );
    let write = format!(
        "LoadPlugin write_influxdb_udp\n<Plugin write_influxdb_udp>\n  Server \"127.0.0.1\" \"{}\"\n  StoreRates true\n</Plugin>",
        addr.port()
    );
    let agent = collectd(&program, &dir, &write);
    let shortterm = key(
        "load_shortterm",
        &mut [("host", "tbptt-test"), ("type", "load")],
    );
    let used = key(
        "memory",
        &mut [
            ("host", "tbptt-test"),
            ("type", "memory"),
            ("type_instance", "used"),
        ],
    );
    wait_until("load and memory series", Duration::from_secs(30), || {
        let k = keys(&dir);
        k.contains(&shortterm) && k.contains(&used) && k.iter().any(|k| k.starts_with("cpu{"))
    });
    drop(agent);
    let (_, s) = finish(p, &dir);
    let recs = records(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Millisecond timestamps read as such: within a minute of now.
    assert!(
        recs.iter()
            .all(|r| r.1.is_some_and(|t| (t - now).abs() < 60.0)),
        "{:?}",
        &recs[..3]
    );
    let got: BTreeSet<String> = recs.iter().map(|r| r.0.clone()).collect();
    for k in &got {
        let (name, pairs) = labels::parse(k).expect("a canonical key");
        assert!(
            [
                "cpu",
                "load_shortterm",
                "load_midterm",
                "load_longterm",
                "memory"
            ]
            .contains(&name),
            "{k}"
        );
        assert!(
            pairs.iter().any(|(l, v)| l == "host" && v == "tbptt-test"),
            "{k}"
        );
    }
    assert_eq!(s["series"]["series"].as_u64(), Some(got.len() as u64));
    assert_eq!(s["rejected"], 0);
    eprintln!(
        "collectd write_influxdb_udp: {} series from {} records",
        got.len(),
        recs.len()
    );
}

#[test]
fn prometheus_remote_write_creates_one_series_per_prometheus_series() {
    let Some(program) = crate::util::real_server("prometheus") else {
        return;
    };
    let dir = TempDir::new("prometheus-rw");
    let (p, addr) = listen("http://127.0.0.1:0", &dir, &["--max-series", "100000"]);
    let port = crate::util::free_tcp_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: http://{addr}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let started = Instant::now();
    let server = Guard(
        std::process::Command::new(program)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    // Prometheus' series of its self-scrape, as its HTTP API lists them, as canonical keys.
    let series_of_prometheus = || -> Option<BTreeSet<String>> {
        let path = "/api/v1/series?match[]=%7Bjob%3D%22prometheus%22%7D";
        let (status, body) = try_http(api, "GET", path, &[], b"")?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeSet::new();
        for s in v["data"].as_array()? {
            let map: BTreeMap<String, String> = serde_json::from_value(s.clone()).ok()?;
            let name = map.get("__name__")?.clone();
            let mut pairs: Vec<(&str, &str)> = map
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.insert(key(&name, &mut pairs));
        }
        Some(out)
    };
    wait_until("Prometheus' first scrape", Duration::from_secs(30), || {
        series_of_prometheus().is_some_and(|s| s.len() > 100)
    });
    // What Prometheus holds now must reach tbptt: one series for each, except those whose
    // samples are all NaN (summaries with no observations yet), which are no values to
    // tbptt. The instant query gives each series' latest value.
    let with_values = || -> Option<BTreeSet<String>> {
        let path = "/api/v1/query?query=%7Bjob%3D%22prometheus%22%7D";
        let (status, body) = try_http(api, "GET", path, &[], b"")?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeSet::new();
        for r in v["data"]["result"].as_array()? {
            if r["value"][1].as_str()?.eq_ignore_ascii_case("nan") {
                continue;
            }
            let map: BTreeMap<String, String> = serde_json::from_value(r["metric"].clone()).ok()?;
            let name = map.get("__name__")?.clone();
            let mut pairs: Vec<(&str, &str)> = map
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.insert(key(&name, &mut pairs));
        }
        Some(out)
    };
    let snapshot = with_values().expect("the query API answers");
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let held = keys(&dir);
        if held.is_superset(&snapshot) {
            break;
        }
        let missing: Vec<&String> = snapshot.difference(&held).take(5).collect();
        assert!(
            Instant::now() < deadline,
            "tbptt holds {} series of Prometheus' {}; missing, e.g.: {missing:?}",
            held.intersection(&snapshot).count(),
            snapshot.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And tbptt holds nothing Prometheus does not: remote write sends what is already stored.
    let got = keys(&dir);
    let all = series_of_prometheus().expect("the series API answers");
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let (_, s) = finish(p, &dir);
    eprintln!(
        "prometheus remote_write: {} series reported by Prometheus, {} held by tbptt, after {:.1} s",
        all.len(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
    let extra: Vec<&String> = got.difference(&all).collect();
    assert!(
        extra.is_empty(),
        "keys Prometheus does not report: {extra:?}"
    );
    assert!(got.len() > 100, "{}", got.len());
    let held = keys(&dir);
    assert_eq!(s["series"]["series"].as_u64(), Some(held.len() as u64));
    assert_eq!(s["rejected"], 0, "{s}");
}
