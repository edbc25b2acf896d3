//! Input sources over real loopback sockets, files and temp-dir Unix sockets.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tbptt::event::Event;
use tbptt::io::format::{encode_event, DecoderConfig, Format, ParseError, Position, Selector};
use tbptt::io::shutdown::{self, Shutdown, ShutdownTrigger};
use tbptt::io::source::{
    self, Backoff, ListenAddr, SourceConfig, SourceError, SourceHandle, SourceItem, SourceKind,
    SourceSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// Longest wait for any one step.
const STEP: Duration = Duration::from_secs(10);

fn csv(header: Option<bool>) -> DecoderConfig {
    DecoderConfig {
        header,
        ..DecoderConfig::default()
    }
}

fn config(spec: SourceSpec, decoder: DecoderConfig) -> SourceConfig {
    SourceConfig {
        spec,
        decoder,
        ..SourceConfig::default()
    }
}

fn start(config: SourceConfig) -> (Receiver<SourceItem>, SourceHandle, ShutdownTrigger) {
    let (trigger, shutdown) = shutdown::channel();
    let (rx, handle) = source::spawn(config, shutdown).unwrap();
    (rx, handle, trigger)
}

fn tcp_any() -> SourceSpec {
    SourceSpec::Listen(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))))
}

fn tcp_addr(handle: &SourceHandle) -> SocketAddr {
    match handle.local_addr() {
        Some(ListenAddr::Tcp(a)) => *a,
        other => panic!("not a tcp listener: {other:?}"),
    }
}

async fn next(rx: &mut Receiver<SourceItem>) -> SourceItem {
    timeout(STEP, rx.recv())
        .await
        .expect("timed out waiting for an item")
        .expect("channel closed early")
}

/// Everything up to the channel's end.
async fn drain(rx: &mut Receiver<SourceItem>) -> Vec<SourceItem> {
    let mut items = Vec::new();
    while let Some(item) = timeout(STEP, rx.recv())
        .await
        .expect("timed out waiting for the channel to close")
    {
        items.push(item);
    }
    items
}

/// Items until `n` events have arrived.
async fn until_events(rx: &mut Receiver<SourceItem>, n: usize) -> Vec<SourceItem> {
    let mut items = Vec::new();
    let mut events = 0;
    while events < n {
        let item = next(rx).await;
        events += usize::from(matches!(item, SourceItem::Event(_)));
        items.push(item);
    }
    items
}

fn values(items: &[SourceItem]) -> Vec<Vec<f64>> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Event(r) => Some(r.event.values.clone()),
            _ => None,
        })
        .collect()
}

fn line(pos: Position) -> u64 {
    pos.line().expect("a line position")
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tbptt-src-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn file_with_header_rejects_a_bad_line_and_goes_on() {
    let dir = TempDir::new("file");
    let path = dir.path("data.csv");
    std::fs::write(
        &path,
        "time,cpu,mem\n1,0.5,2\n2,0.7,oops\n3,0.9,4\n\n4,1.1,5",
    )
    .unwrap();
    let mut decoder = csv(None);
    decoder.columns.time = Some(Selector::Name("time".into()));
    let (mut rx, handle, _trigger) = start(config(path.as_path().into(), decoder));
    let items = drain(&mut rx).await;
    handle.join().await.unwrap();

    assert_eq!(values(&items), [[0.5, 2.0], [0.9, 4.0], [1.1, 5.0]]);
    let events: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Event(r) => Some((r.event.time, line(r.origin.position))),
            _ => None,
        })
        .collect();
    assert_eq!(events, [(Some(1.0), 2), (Some(3.0), 4), (Some(4.0), 6)]);
    let rejected: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Rejected { origin, error } => Some((origin.clone(), error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    let (origin, error) = &rejected[0];
    assert_eq!(origin.position, Position::Line(3));
    assert_eq!(origin.kind, SourceKind::File);
    assert_eq!(&*origin.name, format!("file {}", path.display()));
    assert_eq!(error.position(), Some(Position::Line(3)));
    assert!(matches!(error, ParseError::NotANumber { .. }), "{error}");
    // In order: the rejection sits between the events of lines 2 and 4.
    assert!(matches!(items[1], SourceItem::Rejected { .. }));
}

#[tokio::test]
async fn file_errors_name_the_path() {
    let dir = TempDir::new("missing");
    let path = dir.path("nope.csv");
    let (_t, shutdown) = shutdown::channel();
    let err = source::spawn(config(path.as_path().into(), csv(None)), shutdown).unwrap_err();
    assert!(matches!(err, SourceError::Open { .. }));
    assert!(err.to_string().contains("nope.csv"), "{err}");
}

#[tokio::test]
async fn over_long_line_is_rejected_with_its_line_number() {
    let dir = TempDir::new("long");
    let path = dir.path("long.csv");
    let long = "9".repeat(500);
    std::fs::write(&path, format!("1,2\n{long},1\n3,4\n")).unwrap();
    let mut decoder = csv(Some(false));
    decoder.max_line_len = 16;
    let mut cfg = config(path.as_path().into(), decoder);
    cfg.read_buffer = 7; // the long line arrives over many reads
    let (mut rx, handle, _t) = start(cfg);
    let items = drain(&mut rx).await;
    handle.join().await.unwrap();
    assert_eq!(values(&items), [[1.0, 2.0], [3.0, 4.0]]);
    match &items[1] {
        SourceItem::Rejected { origin, error } => {
            assert_eq!(origin.position, Position::Line(2));
            assert_eq!(
                *error,
                ParseError::TooLong {
                    pos: Position::Line(2),
                    limit: 16
                }
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(items[2].origin().position, Position::Line(3));
}

#[tokio::test]
async fn reader_source_reads_a_cursor() {
    let (_t, shutdown) = shutdown::channel();
    let cfg = SourceConfig {
        decoder: DecoderConfig {
            format: Format::JsonLines,
            ..DecoderConfig::default()
        },
        ..SourceConfig::default()
    };
    let input = Cursor::new(b"[1, 2]\n{\"a\": 1}\n[3, 4]\n".to_vec());
    let (mut rx, handle) = source::spawn_reader(input, "replay", &cfg, shutdown).unwrap();
    let items = drain(&mut rx).await;
    handle.join().await.unwrap();
    assert_eq!(values(&items), [[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(items[1].origin().position, Position::Line(2));
    assert_eq!(&*items[0].origin().name, "replay");
}

#[tokio::test]
async fn fatal_parse_error_ends_a_file_source() {
    let dir = TempDir::new("fatal");
    let path = dir.path("cols.csv");
    std::fs::write(&path, "a,b\n1,2\n3,4\n").unwrap();
    let mut decoder = csv(Some(true));
    decoder.columns.inputs = vec![Selector::Name("zzz".into())];
    let (mut rx, handle, _t) = start(config(path.as_path().into(), decoder));
    let items = drain(&mut rx).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        matches!(&items[0], SourceItem::Rejected { error, .. } if error.is_fatal()),
        "{items:?}"
    );
    let err = handle.join().await.unwrap_err();
    assert!(matches!(err, SourceError::Parse { .. }), "{err}");
}

#[tokio::test]
async fn tcp_clients_are_separate_streams() {
    let (mut rx, handle, trigger) = start(config(tcp_any(), csv(None)));
    let addr = tcp_addr(&handle);
    let mut a = TcpStream::connect(addr).await.unwrap();
    let SourceItem::Connected(origin_a) = next(&mut rx).await else {
        panic!("expected Connected")
    };
    let mut b = TcpStream::connect(addr).await.unwrap();
    let SourceItem::Connected(origin_b) = next(&mut rx).await else {
        panic!("expected Connected")
    };
    assert_ne!(origin_a.peer, origin_b.peer);
    assert_ne!(origin_a.name, origin_b.name);
    assert_eq!(origin_a.kind, SourceKind::Tcp);
    assert!(origin_a.name.starts_with("tcp 127.0.0.1:"));

    // Each client has its own header and its own line numbers.
    a.write_all(b"x,y\n").await.unwrap();
    b.write_all(b"p,q,r\n").await.unwrap();
    for i in 0..3 {
        a.write_all(format!("{i},1\n").as_bytes()).await.unwrap();
        b.write_all(format!("{i},2,2\n").as_bytes()).await.unwrap();
    }
    // A leaves in the middle of a line; the partial line is still decoded.
    a.write_all(b"9,").await.unwrap();
    a.write_all(b"1").await.unwrap();
    drop(a);
    let mut seen = Vec::new();
    loop {
        let item = next(&mut rx).await;
        let done = matches!(&item, SourceItem::Disconnected { origin, .. } if origin.peer == origin_a.peer);
        seen.push(item);
        if done {
            break;
        }
    }
    // B still works after A is gone.
    b.write_all(b"7,2,2\n").await.unwrap();
    seen.extend(until_events(&mut rx, 8 - values(&seen).len()).await);

    let mut per_peer = std::collections::HashMap::<u64, Vec<(u64, Vec<f64>)>>::new();
    for item in &seen {
        match item {
            SourceItem::Event(r) => per_peer
                .entry(r.origin.peer)
                .or_default()
                .push((line(r.origin.position), r.event.values.clone())),
            SourceItem::Rejected { error, .. } => panic!("unexpected rejection: {error}"),
            _ => {}
        }
    }
    let a_events = &per_peer[&origin_a.peer];
    let b_events = &per_peer[&origin_b.peer];
    assert_eq!(
        *a_events,
        [
            (2, vec![0.0, 1.0]),
            (3, vec![1.0, 1.0]),
            (4, vec![2.0, 1.0]),
            (5, vec![9.0, 1.0])
        ]
    );
    assert_eq!(b_events.len(), 4);
    assert_eq!(b_events[3], (5, vec![7.0, 2.0, 2.0]));
    match seen.last() {
        Some(SourceItem::Event(r)) => assert_eq!(r.origin.peer, origin_b.peer),
        other => panic!("{other:?}"),
    }
    let disconnected_a = seen.iter().find_map(|i| match i {
        SourceItem::Disconnected { origin, reason } => Some((origin.clone(), reason.clone())),
        _ => None,
    });
    let (origin, reason) = disconnected_a.unwrap();
    assert_eq!(
        (origin.peer, origin.position, reason),
        (origin_a.peer, Position::Line(5), None)
    );
    assert_eq!(handle.stats().connections(), 2);
    assert_eq!(handle.stats().active_connections(), 1);
    assert_eq!(handle.stats().events(), 8);

    trigger.trigger();
    let rest = drain(&mut rx).await;
    assert!(
        matches!(&rest[..], [SourceItem::Disconnected { origin, reason: Some(r) }] if origin.peer == origin_b.peer && r == "shutdown"),
        "{rest:?}"
    );
    handle.join().await.unwrap();
}

#[tokio::test]
async fn tcp_connection_limit_closes_extra_clients() {
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.max_connections = 1;
    cfg.evict_idle = Duration::from_secs(3600);
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(matches!(next(&mut rx).await, SourceItem::Connected(_)));
    let mut second = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0_u8; 8];
    let n = timeout(STEP, second.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the extra client is closed");
    assert_eq!(handle.stats().refused_connections(), 1);
    first.write_all(b"1,2\n").await.unwrap();
    assert_eq!(values(&until_events(&mut rx, 1).await), [[1.0, 2.0]]);
}

#[tokio::test]
async fn msgpack_frames_split_at_awkward_offsets() {
    let decoder = DecoderConfig {
        format: Format::MsgPack,
        ..DecoderConfig::default()
    };
    let (mut rx, handle, _t) = start(config(tcp_any(), decoder));
    let sent: Vec<Event> = (0..20)
        .map(|i| Event {
            time: Some(1_700_000_000.0 + f64::from(i)),
            key: format!("host-{}", i % 3),
            values: vec![f64::from(i) * 0.25, -1.5e-7, 1e300],
            // Every record has the shape of the first: time, key, 3 values, 1 target.
            targets: vec![f64::from(i) - 0.5],
        })
        .collect();
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for e in &sent {
        offsets.push(bytes.len() as u64);
        encode_event(e, &mut bytes);
    }
    // A truncated frame at the end: reported when the client leaves.
    let truncated_at = bytes.len() as u64;
    let mut extra = Vec::new();
    encode_event(&sent[0], &mut extra);
    bytes.extend_from_slice(&extra[..extra.len() / 2]);

    let mut client = TcpStream::connect(tcp_addr(&handle)).await.unwrap();
    client.set_nodelay(true).unwrap();
    let mut rest = &bytes[..];
    for size in [1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31]
        .into_iter()
        .cycle()
    {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        client.write_all(chunk).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
        rest = tail;
    }
    drop(client);

    let mut got = Vec::new();
    let mut rejected = Vec::new();
    loop {
        match next(&mut rx).await {
            SourceItem::Event(r) => got.push((r.origin.position, r.event)),
            SourceItem::Rejected { origin, error } => rejected.push((origin.position, error)),
            SourceItem::Disconnected { .. } => break,
            SourceItem::Connected(o) => assert_eq!(o.position, Position::Offset(0)),
        }
    }
    let (positions, events): (Vec<_>, Vec<_>) = got.into_iter().unzip();
    assert_eq!(events, sent);
    assert_eq!(
        positions,
        offsets
            .iter()
            .map(|&o| Position::Offset(o))
            .collect::<Vec<_>>()
    );
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, Position::Offset(truncated_at));
    assert!(matches!(rejected[0].1, ParseError::Malformed { .. }));
}

#[tokio::test]
async fn backpressure_delivers_everything_in_order() {
    const N: usize = 10_000;
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.channel_capacity = 4;
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let producer = tokio::spawn(async move {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut text = String::new();
        for i in 0..N {
            text.push_str(&format!("{i},{}\n", i % 7));
        }
        client.write_all(text.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(N);
    let mut disconnected = false;
    while !disconnected {
        match next(&mut rx).await {
            SourceItem::Event(r) => {
                got.push(r.event.values[0]);
                if got.len() % 1000 == 0 {
                    // A slow consumer: the reader must wait, not drop.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            SourceItem::Disconnected { reason, .. } => {
                assert_eq!(reason, None);
                disconnected = true;
            }
            SourceItem::Connected(_) => {}
            SourceItem::Rejected { error, .. } => panic!("{error}"),
        }
    }
    timeout(STEP, producer).await.unwrap().unwrap();
    assert_eq!(got.len(), N);
    assert!(got.iter().enumerate().all(|(i, &v)| v == i as f64));
    assert_eq!(handle.stats().events(), N as u64);
}

#[tokio::test]
async fn udp_datagrams_become_events() {
    let spec = SourceSpec::Listen(ListenAddr::Udp(SocketAddr::from(([127, 0, 0, 1], 0))));
    let (mut rx, handle, trigger) = start(config(spec, csv(Some(false))));
    let Some(ListenAddr::Udp(addr)) = handle.local_addr().cloned() else {
        panic!("not udp")
    };
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sender.send_to(b"1,2", addr).await.unwrap();
    sender.send_to(b"3,4\n5,6\n", addr).await.unwrap();
    sender.send_to(b"7,x\n", addr).await.unwrap();
    sender.send_to(b"8,9\r\n", addr).await.unwrap();
    let items = until_events(&mut rx, 4).await;
    assert_eq!(
        values(&items),
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [8.0, 9.0]]
    );
    let offsets: Vec<_> = items.iter().map(|i| i.origin().position).collect();
    assert_eq!(
        offsets,
        [0, 3, 7, 11, 15].map(Position::Offset),
        "byte offsets over all datagrams"
    );
    match &items[3] {
        SourceItem::Rejected { origin, error } => {
            assert_eq!(origin.kind, SourceKind::Udp);
            assert_eq!(
                &*origin.name,
                format!("udp {}", sender.local_addr().unwrap())
            );
            assert!(matches!(error, ParseError::NotANumber { .. }), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(handle.stats().rejected(), 1);
    trigger.trigger();
    assert!(drain(&mut rx).await.is_empty());
    handle.join().await.unwrap();
}

#[tokio::test]
async fn udp_drops_and_counts_when_the_channel_is_full() {
    let spec = SourceSpec::Listen(ListenAddr::Udp(SocketAddr::from(([127, 0, 0, 1], 0))));
    let mut cfg = config(spec, csv(Some(false)));
    cfg.channel_capacity = 2;
    let (mut rx, handle, _t) = start(cfg);
    let Some(ListenAddr::Udp(addr)) = handle.local_addr().cloned() else {
        panic!("not udp")
    };
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..10 {
        sender
            .send_to(format!("{i},0").as_bytes(), addr)
            .await
            .unwrap();
    }
    // Without a consumer, all but two datagrams are dropped.
    timeout(STEP, async {
        while handle.stats().events() + handle.stats().dropped_datagrams() < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(handle.stats().events(), 2);
    assert_eq!(handle.stats().dropped_datagrams(), 8);
    assert_eq!(
        values(&until_events(&mut rx, 2).await),
        [[0.0, 0.0], [1.0, 0.0]]
    );
}

#[tokio::test]
async fn unix_socket_events_then_file_removed_at_shutdown() {
    let dir = TempDir::new("unix");
    let path = dir.path("in.sock");
    // A stale socket from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let spec = SourceSpec::Listen(ListenAddr::Unix(path.clone()));
    let jsonl = DecoderConfig {
        format: Format::JsonLines,
        ..DecoderConfig::default()
    };
    let (mut rx, handle, trigger) = start(config(spec, jsonl));
    assert_eq!(handle.local_addr(), Some(&ListenAddr::Unix(path.clone())));

    let mut client = UnixStream::connect(&path).await.unwrap();
    client
        .write_all(b"{\"a\": 1, \"b\": 2}\n{\"a\": 3, \"b\": 4}\n")
        .await
        .unwrap();
    let items = until_events(&mut rx, 2).await;
    assert!(matches!(&items[0], SourceItem::Connected(o) if o.kind == SourceKind::Unix));
    assert_eq!(values(&items), [[1.0, 2.0], [3.0, 4.0]]);

    trigger.trigger();
    drain(&mut rx).await;
    assert!(!path.exists(), "socket file removed");
    handle.join().await.unwrap();
}

#[tokio::test]
async fn unix_listener_leaves_regular_files_alone() {
    let dir = TempDir::new("unixfile");
    let path = dir.path("data.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let (_t, shutdown) = shutdown::channel();
    let spec = SourceSpec::Listen(ListenAddr::Unix(path.clone()));
    let err = source::spawn(config(spec, csv(None)), shutdown).unwrap_err();
    assert!(matches!(err, SourceError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

/// Serves `rounds` connections, sending `lines` on each and then closing it.
async fn serve_rounds(listener: TcpListener, rounds: Vec<&'static str>) {
    for text in rounds {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(text.as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
        // Wait for the client to see the end and close its side.
        let mut buf = [0_u8; 16];
        let _ = socket.read(&mut buf).await;
    }
}

#[tokio::test]
async fn connect_reconnects_after_a_drop() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let server = tokio::spawn(serve_rounds(
        server,
        vec!["1,1\n2,1\n3,1\n", "4,2\n5,2\n6,2\n"],
    ));
    let mut cfg = config(SourceSpec::Connect(addr.to_string()), csv(Some(false)));
    cfg.reconnect = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_attempts: None,
    };
    let (mut rx, handle, trigger) = start(cfg);
    let items = until_events(&mut rx, 6).await;
    assert_eq!(
        values(&items),
        (1..=6)
            .map(|i| vec![f64::from(i), f64::from((i + 2) / 3)])
            .collect::<Vec<_>>()
    );
    let lifecycle: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Connected(o) => Some(format!("+{}", o.peer)),
            SourceItem::Disconnected { origin, .. } => Some(format!("-{}", origin.peer)),
            _ => None,
        })
        .collect();
    assert_eq!(lifecycle, ["+1", "-1", "+2"]);
    assert_eq!(items[0].origin().kind, SourceKind::Connect);
    assert_eq!(&*items[0].origin().name, format!("tcp {addr}"));
    // Line numbers restart with each connection.
    assert_eq!(items.last().unwrap().origin().position, Position::Line(3));
    timeout(STEP, server).await.unwrap().unwrap();
    trigger.trigger();
    drain(&mut rx).await;
    handle.join().await.unwrap();
}

#[tokio::test]
async fn connect_gives_up_after_max_attempts() {
    // A port with nobody listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(SourceSpec::Connect(addr.to_string()), csv(None));
    cfg.reconnect = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
        max_attempts: Some(3),
    };
    let (mut rx, handle, _t) = start(cfg);
    assert!(drain(&mut rx).await.is_empty());
    match handle.join().await {
        Err(SourceError::GaveUp { attempts: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Waits for the channel to close after shutdown, promptly.
async fn closes_promptly(mut rx: Receiver<SourceItem>, trigger: ShutdownTrigger) {
    trigger.trigger();
    timeout(Duration::from_secs(2), async {
        while rx.recv().await.is_some() {}
    })
    .await
    .expect("channel closes within 2 s of shutdown");
}

#[tokio::test]
async fn shutdown_closes_listener_channels_promptly() {
    // TCP with a connected, idle client.
    let (mut rx, handle, trigger) = start(config(tcp_any(), csv(None)));
    let _client = TcpStream::connect(tcp_addr(&handle)).await.unwrap();
    assert!(matches!(next(&mut rx).await, SourceItem::Connected(_)));
    closes_promptly(rx, trigger).await;
    handle.join().await.unwrap();

    // TCP with a client blocked on a full channel.
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.channel_capacity = 1;
    let (rx, handle, trigger) = start(cfg);
    let mut client = TcpStream::connect(tcp_addr(&handle)).await.unwrap();
    client.write_all(b"1\n2\n3\n4\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    closes_promptly(rx, trigger).await;
    handle.join().await.unwrap();

    // UDP and a connect source waiting to retry.
    let spec = SourceSpec::Listen(ListenAddr::Udp(SocketAddr::from(([127, 0, 0, 1], 0))));
    let (rx, handle, trigger) = start(config(spec, csv(None)));
    closes_promptly(rx, trigger).await;
    handle.join().await.unwrap();
    let mut cfg = config(SourceSpec::Connect("127.0.0.1:1".into()), csv(None));
    cfg.reconnect.initial = Duration::from_secs(60);
    cfg.reconnect.max = Duration::from_secs(60);
    let (rx, handle, trigger) = start(cfg);
    tokio::time::sleep(Duration::from_millis(20)).await;
    closes_promptly(rx, trigger).await;
    handle.join().await.unwrap();
}

#[tokio::test]
async fn bind_errors_come_from_spawn() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = SourceSpec::Listen(ListenAddr::Tcp(taken.local_addr().unwrap()));
    let (_t, shutdown): (ShutdownTrigger, Shutdown) = shutdown::channel();
    let err = source::spawn(config(spec, csv(None)), shutdown).unwrap_err();
    assert!(matches!(err, SourceError::Bind { .. }), "{err}");
    assert!(
        err.to_string().starts_with("cannot bind tcp://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn paths_in_specs() {
    let spec: SourceSpec = "unix://relative/x.sock".parse().unwrap();
    assert_eq!(
        spec,
        SourceSpec::Listen(ListenAddr::Unix(Path::new("relative/x.sock").into()))
    );
}

/// Set in the child process of [`stdin_source_reads_to_the_end`].
const STDIN_CHILD: &str = "TBPTT_SOURCES_STDIN_CHILD";

/// Runs in a child process whose stdin the parent test feeds: starts a stdin source and
/// prints what arrives. Does nothing in a normal test run.
#[test]
fn stdin_child() {
    if std::env::var_os(STDIN_CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut cfg = config(SourceSpec::Stdin, csv(None));
        cfg.read_buffer = 5;
        let (mut rx, handle, _t) = start(cfg);
        for item in drain(&mut rx).await {
            match item {
                SourceItem::Event(r) => {
                    println!("@@ EVENT {} {:?}", r.origin, r.event.values)
                }
                SourceItem::Rejected { origin, .. } => println!("@@ REJECTED {origin}"),
                other => println!("@@ OTHER {other:?}"),
            }
        }
        println!(
            "@@ END {:?}",
            handle.join().await.map_err(|e| e.to_string())
        );
    });
}

#[test]
fn stdin_source_reads_to_the_end() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["stdin_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(STDIN_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(b"a,b\n1,2\n3,").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        stdin.write_all(b"x\n5,6\n7,8").unwrap(); // no final newline
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done_rx.recv_timeout(STEP) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("the stdin child did not finish");
        }
    };
    writer.join().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.split_once("@@ ").map(|(_, item)| item))
        .collect();
    assert_eq!(
        lines,
        [
            "EVENT stdin, line 2 [1.0, 2.0]",
            "REJECTED stdin, line 3",
            "EVENT stdin, line 4 [5.0, 6.0]",
            "EVENT stdin, line 5 [7.0, 8.0]",
            "END Ok(())",
        ],
        "{stdout}"
    );
}

/// Issue 16, item 1: connections that send a few bytes and then idle took every slot, and a
/// legitimate sender got nothing in. Now the longest-idle one is closed for it.
#[tokio::test]
async fn r16_idle_connections_cannot_take_every_slot() {
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.max_connections = 8;
    cfg.max_connections_per_peer = 100;
    cfg.evict_idle = Duration::from_millis(50);
    cfg.idle_timeout = None;
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"1,2\n3,4\n5").await.unwrap();
        idle.push(c);
    }
    until_events(&mut rx, 16).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sender = TcpStream::connect(addr).await.unwrap();
    let lines: String = (0..400).map(|i| format!("{i},{i}\n")).collect();
    sender.write_all(lines.as_bytes()).await.unwrap();
    let items = until_events(&mut rx, 400).await;
    let from_sender: Vec<_> = values(&items);
    assert_eq!(from_sender.len(), 400);
    assert_eq!(from_sender[399], [399.0, 399.0]);
    assert_eq!(handle.stats().evicted_connections(), 1);
    assert_eq!(handle.stats().refused_connections(), 0);
    // One of the idle ones (not the sender, peer 9) was closed and told why.
    let closed: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Disconnected { origin, reason } => Some((origin.peer, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].0 <= 8, "{closed:?}");
    assert_eq!(
        closed[0].1.as_deref(),
        Some("closed to make room for a new connection")
    );
}

#[tokio::test]
async fn r16_a_silent_connection_times_out_and_an_active_one_does_not() {
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.idle_timeout = Some(Duration::from_millis(300));
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let mut silent = TcpStream::connect(addr).await.unwrap();
    silent.write_all(b"1\n").await.unwrap();
    let mut active = TcpStream::connect(addr).await.unwrap();
    for i in 0..12 {
        active.write_all(format!("{i}\n").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut items = Vec::new();
    while !items
        .iter()
        .any(|i| matches!(i, SourceItem::Disconnected { .. }))
    {
        items.push(next(&mut rx).await);
    }
    let reasons: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Disconnected { origin, reason } => Some((origin.peer, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [(1, Some("idle for 0.3 s".to_string()))]);
    assert_eq!(handle.stats().timed_out_connections(), 1);
    let mut buf = [0_u8; 4];
    assert_eq!(silent.read(&mut buf).await.unwrap_or(0), 0, "closed");
    active.write_all(b"99\n").await.unwrap();
    loop {
        if let SourceItem::Event(r) = next(&mut rx).await {
            if r.event.values == [99.0] {
                break;
            }
        }
    }
}

/// A TCP client bound to a loopback source address of its own.
async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    socket.connect(addr).await
}

#[tokio::test]
async fn r16_one_address_cannot_take_every_slot() {
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.max_connections = 8;
    cfg.max_connections_per_peer = 2;
    cfg.evict_idle = Duration::from_secs(3600);
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let _a1 = connect_from([127, 0, 0, 2], addr).await.unwrap();
    let _a2 = connect_from([127, 0, 0, 2], addr).await.unwrap();
    let mut a3 = connect_from([127, 0, 0, 2], addr).await.unwrap();
    let mut buf = [0_u8; 4];
    let n = timeout(STEP, a3.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the third from one address is refused");
    assert_eq!(handle.stats().refused_connections(), 1);
    let mut b = connect_from([127, 0, 0, 3], addr).await.unwrap();
    b.write_all(b"7\n").await.unwrap();
    assert_eq!(values(&until_events(&mut rx, 1).await), [[7.0]]);
}

/// Issue 16, item 2: strict mode costs the bad peer its connection, not the others theirs.
#[tokio::test]
async fn r16_strict_closes_only_the_connection_that_sent_a_bad_record() {
    let mut cfg = config(tcp_any(), csv(Some(false)));
    cfg.close_on_reject = true;
    let (mut rx, handle, _t) = start(cfg);
    let addr = tcp_addr(&handle);
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"1\nx\n2\n").await.unwrap();
    let mut items = Vec::new();
    while !items
        .iter()
        .any(|i| matches!(i, SourceItem::Disconnected { .. }))
    {
        items.push(next(&mut rx).await);
    }
    assert_eq!(values(&items), [[1.0]], "nothing after the bad line");
    let reason = items.iter().find_map(|i| match i {
        SourceItem::Disconnected { reason, .. } => reason.clone(),
        _ => None,
    });
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("strict mode: line 2")),
        "{reason:?}"
    );
    let mut good = TcpStream::connect(addr).await.unwrap();
    good.write_all(b"3\n4\n").await.unwrap();
    assert_eq!(values(&until_events(&mut rx, 2).await), [[3.0], [4.0]]);
    assert_eq!(handle.stats().closed_on_error(), 1);
}

/// Issue 16, item 5: a header claiming a 4 GiB array no longer swallows the connection.
#[tokio::test]
async fn r16_a_huge_claimed_msgpack_length_costs_one_frame() {
    let decoder = DecoderConfig {
        format: Format::MsgPack,
        max_frame_len: 1024,
        ..DecoderConfig::default()
    };
    let (mut rx, handle, _t) = start(config(tcp_any(), decoder));
    let mut c = TcpStream::connect(tcp_addr(&handle)).await.unwrap();
    let mut bytes = vec![0x91, 0x01];
    bytes.extend([0xdd, 0xff, 0xff, 0xff, 0xff]); // array of 2^32 - 1 items
    bytes.extend([0x91, 0x02, 0x91, 0x03]);
    c.write_all(&bytes).await.unwrap();
    let items = until_events(&mut rx, 3).await;
    assert_eq!(values(&items), [[1.0], [2.0], [3.0]]);
    let rejected: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Rejected { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].starts_with("byte 2: frame of at least"),
        "{rejected:?}"
    );
}

/// Issue 16, item 3: datagrams the kernel drops (receive buffer full) are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_udp_kernel_drops_are_counted() {
    let mut cfg = config(
        SourceSpec::Listen(ListenAddr::Udp(SocketAddr::from(([127, 0, 0, 1], 0)))),
        csv(Some(false)),
    );
    cfg.udp_recv_buffer = 4096;
    let (mut rx, handle, trigger) = start(cfg);
    let addr = match handle.local_addr() {
        Some(ListenAddr::Udp(a)) => *a,
        other => panic!("{other:?}"),
    };
    assert!(handle.stats().udp_recv_buffer() > 0);
    let consumer = tokio::spawn(async move {
        let mut n = 0_u64;
        while let Some(item) = rx.recv().await {
            n += u64::from(matches!(item, SourceItem::Event(_)));
        }
        n
    });
    let sent = 50_000_u64;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..sent {
        sock.send_to(format!("{i}\n").as_bytes(), addr).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    trigger.trigger();
    let stats = std::sync::Arc::clone(handle.stats());
    timeout(STEP, handle.join()).await.unwrap().unwrap();
    let events = consumer.await.unwrap();
    let (kernel, behind) = (stats.kernel_dropped_datagrams(), stats.dropped_datagrams());
    eprintln!("{sent} sent: {events} events, {behind} dropped (channel full), {kernel} dropped by the kernel");
    assert!(kernel > 0, "a 4 KiB buffer overflows");
    assert_eq!(events + behind + kernel, sent);
}
