//! Shared helpers for the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// Path of a file under tests/golden.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// All golden files whose name starts with `prefix`.
pub fn golden_files(prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden(""))
        .expect("tests/golden exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect();
    v.sort();
    v
}

pub fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read fixture");
    serde_json::from_str(&text).expect("parse fixture")
}

/// Flattens a JSON number, list of numbers, or list of lists (row-major) into f64s.
pub fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => vec![n.as_f64().expect("number")],
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        other => panic!("not numeric: {other}"),
    }
}

/// Largest |a - b| over the largest |b| (1 when b is all zero): a relative error per tensor.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    if scale < 1e-12 {
        diff
    } else {
        diff / scale
    }
}

// ---- helpers for running the `tbptt` binary (tests/it/cli.rs)

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a test waits for the binary to do something.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a bundled file under data/.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// A `tbptt` command (the binary cargo built for this test run).
pub fn tbptt<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tbptt"));
    cmd.args(args);
    cmd
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tbptt-it-{name}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a child's stdin gets.
pub enum Input {
    /// /dev/null.
    Null,
    /// These bytes, written from a thread (ripgrep's `pipe`), then stdin is closed.
    Bytes(Vec<u8>),
    /// A pipe the test writes itself: [`Proc::take_stdin`].
    Piped,
}

/// A finished child: its exit status and everything it wrote.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn stdout_str(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Panics (showing stderr) unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status {:?}, stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// A running child whose stdout and stderr are collected by threads; killed on drop.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

fn collect<R: Read + Send + 'static>(mut r: R, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .expect("output lock")
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Proc {
    /// Spawns `cmd` with piped stdout and stderr, both collected.
    pub fn spawn(mut cmd: Command, input: Input) -> Proc {
        cmd.stdin(match input {
            Input::Null => Stdio::null(),
            Input::Bytes(_) | Input::Piped => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        Self::spawn_with(cmd, input, true)
    }

    /// Spawns `cmd` as configured; stdout is collected only when `collect_stdout`.
    pub fn spawn_with(mut cmd: Command, input: Input, collect_stdout: bool) -> Proc {
        let mut child = cmd.spawn().expect("spawn tbptt");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        if collect_stdout {
            if let Some(out) = child.stdout.take() {
                threads.push(collect(out, Arc::clone(&stdout)));
            }
        }
        if let Some(err) = child.stderr.take() {
            threads.push(collect(err, Arc::clone(&stderr)));
        }
        let mut stdin = child.stdin.take();
        if let Input::Bytes(bytes) = input {
            let mut pipe = stdin.take().expect("piped stdin");
            // The child may stop reading early (e.g. --strict): ignore a broken pipe.
            threads.push(std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            }));
        }
        Proc {
            child,
            stdin,
            stdout,
            stderr,
            threads,
        }
    }

    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("Input::Piped")
    }

    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout not collected")
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to stdout so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().expect("output lock").clone()
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("output lock")).into_owned()
    }

    /// Whether the child has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Sends SIGTERM (with kill(1): the crate has no libc dependency).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the exit, at most `timeout`; kills the child and panics after that.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "tbptt did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end with `stdin` piped in; bounded by [`TIMEOUT`].
pub fn run(cmd: Command, stdin: Input) -> Finished {
    Proc::spawn(cmd, stdin).finish(TIMEOUT)
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Number of complete lines (ending in '\n') in `bytes`.
pub fn complete_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// Number of complete lines in a file (0 when it does not exist yet).
pub fn file_lines(path: &std::path::Path) -> usize {
    std::fs::read(path).map_or(0, |b| complete_lines(&b))
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    s.local_addr().expect("local addr").port()
}

/// Connects to `addr`, retrying until the child listens; panics after `timeout` or if the
/// child exits first.
pub fn connect_tcp(
    addr: std::net::SocketAddr,
    child: &mut Proc,
    timeout: Duration,
) -> std::net::TcpStream {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            return s;
        }
        assert!(
            !child.exited(),
            "tbptt exited before listening; stderr:\n{}",
            child.stderr()
        );
        assert!(Instant::now() < deadline, "tbptt never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A JSON file written by `--summary`.
pub fn summary(path: &std::path::Path) -> Value {
    load(path)
}

/// The path of a real server or agent a test runs (collectd, prometheus, influxd, nats-server),
/// found on `PATH` or in the distribution's `sbin` folders.
///
/// Returns `None` after printing why the test skips, so a developer without the program can
/// still run the suite. With `TBPTT_REQUIRE_SERVERS` set (as `.ci/run` sets it after
/// installing the servers), a missing program fails the test instead: a skip there would hide a
/// test that never ran.
pub fn real_server(program: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("TBPTT_REQUIRE_SERVERS").is_some() {
            panic!("{program} is required (TBPTT_REQUIRE_SERVERS is set) but was not found");
        }
        eprintln!("skipped: {program} not found (install it from the distribution's packages)");
    }
    found
}

/// One HTTP/1.1 request over a fresh connection: `(status, body)`.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
