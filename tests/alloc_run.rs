//! Proves a whole run allocates nothing per event once warm: a file source decoding CSV, the
//! pipeline (inline training, anomaly likelihood) and a CSV output file. A counting global
//! allocator counts every allocation on every thread. A run of 40,000 events may allocate only
//! a little more than a run of 20,000, not once per event (the likelihood's summaries and
//! rings are allocated by the first two events).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use tbptt::io::format::Selector;
use tbptt::io::sink::OutputFormat;
use tbptt::io::source::{SourceConfig, SourceSpec};
use tbptt::service::keyed::KeyedConfig;
use tbptt::service::run::{Keys, OutputTarget, RunConfig, Speed};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is global: the tests of this file run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations made by a whole run over `n` events of a keyed, timestamped CSV file, with
/// `hosts` keys in turn.
fn run_allocations(dir: &std::path::Path, n: usize, hosts: usize, keys: Keys) -> u64 {
    let input = dir.join(format!("in-{n}-{hosts}.csv"));
    let mut text = String::from("ts,host,cpu\n");
    for t in 0..n {
        let x = 50.0 + 10.0 * (t as f64 * 0.02).sin() + ((t * 7919) % 101) as f64 / 50.0;
        let (h, step) = (t % hosts, t / hosts);
        text.push_str(&format!("{},web-{h},{x:.4}\n", 1_600_000_000 + 60 * step));
    }
    std::fs::write(&input, text).unwrap();
    let mut source = SourceConfig::new(SourceSpec::File(input));
    source.decoder.columns.time = Some(Selector::Name("ts".into()));
    source.decoder.columns.key = Some(Selector::Name("host".into()));
    let config = RunConfig::new(source)
        .with_pipeline(Default::default())
        .with_output(OutputTarget::File(dir.join(format!("out-{n}.csv"))))
        .with_members(false)
        .with_epoch_times(false)
        .with_output_format(OutputFormat::Csv)
        .with_strict(true)
        .with_speed(Speed::Max)
        .with_max_events(None)
        .with_keys(keys);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The trigger lives as long as the run: dropping it would fire the shutdown.
    let (_trigger, shutdown) = tbptt::io::shutdown::channel();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let summary = runtime
        .block_on(tbptt::service::run::run(config, shutdown))
        .unwrap();
    let used = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(summary.events, n as u64);
    assert_eq!(summary.rejected, 0);
    used
}

#[test]
fn a_run_allocates_nothing_per_event_once_warm() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tbptt-alloc-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = run_allocations(&dir, 20_000, 1, Keys::Shared);
    let long = run_allocations(&dir, 40_000, 1, Keys::Shared);
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("allocations: {short} for 20,000 events, {long} for 40,000");
    let extra = long.saturating_sub(short);
    assert!(
        extra < 500,
        "20,000 more events cost {extra} more allocations ({short} vs {long})"
    );
}

#[test]
fn keyed_series_allocate_nothing_per_event_once_each_is_warm() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tbptt-alloc-keyed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keyed = || {
        Keys::PerKey(KeyedConfig {
            workers: 2,
            ..KeyedConfig::default()
        })
    };
    // 100 series on two workers: 200 and then 600 events each. The record and event
    // buffers in flight between the threads grow with how far the reader gets ahead of the
    // workers (at most 256 per worker), so the two runs differ by a few thousand allocations
    // whatever the length; one allocation per event would be 40,000 more.
    let short = run_allocations(&dir, 20_000, 100, keyed());
    let long = run_allocations(&dir, 60_000, 100, keyed());
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("keyed allocations: {short} for 20,000 events, {long} for 60,000");
    let extra = long.saturating_sub(short);
    assert!(
        extra < 4_000,
        "40,000 more events over 100 series cost {extra} more allocations ({short} vs {long})"
    );
}
