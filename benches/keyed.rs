//! Many keyed series: throughput over 10,000 interleaved series on 2 workers against one
//! series' rate in the same run, latency from event to record, resident memory per series,
//! and the store's write time for 10,000 series.
//!
//! `cargo bench --bench keyed` (set `KEYED_SERIES` for another series count at H = 16, e.g.
//! 100000; H = 64 runs at most 10,000, and the latency is taken over at most 10,000).

use hdrhistogram::Histogram;
use std::time::Instant;
use tbptt::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig};
use tbptt::event::Event;
use tbptt::io::checkpoint;
use tbptt::io::store::Store;
use tbptt::service::keyed::{Carries, KeyedConfig, Workers};

/// An event with the moment it was submitted and whether its latency counts.
struct Timed(Event, Instant, bool);

impl Carries for Timed {
    fn event(&self) -> &Event {
        &self.0
    }
}

fn value(t: usize, k: usize) -> f64 {
    50.0 + 10.0 * (0.3 * t as f64 + k as f64).sin() + ((t * 7919 + k) % 101) as f64 / 50.0
}

fn template(h: usize) -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.learner.d_hidden = h;
    c
}

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Events per second of one series through one pipeline, inline.
fn single(h: usize, n: usize) -> f64 {
    let mut p = Pipeline::new(template(h)).unwrap();
    let mut ev = Event::new();
    let mut out = OutputRecord::default();
    let t0 = Instant::now();
    for t in 0..n {
        ev.values.clear();
        ev.values.push(value(t, 0));
        p.process_into(&ev, &mut out).unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Runs `rounds` events of each of `series` keys through `workers` workers: events/s, the
/// latency histogram (µs) of the last round, and resident KiB per series. With `pace` (events
/// per second) the last round is offered at that rate (latency at a load below capacity);
/// otherwise as fast as the workers take them (throughput; latency is then the queue's).
fn keyed(
    h: usize,
    series: usize,
    rounds: usize,
    workers: usize,
    pace: Option<f64>,
) -> (f64, Histogram<u64>, f64) {
    let config = KeyedConfig {
        pipeline: template(h),
        workers,
        ..KeyedConfig::default()
    };
    let rss0 = rss_kib();
    let mut w = Workers::<Timed>::spawn(&config).unwrap();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let keys: Vec<String> = (0..series).map(|k| format!("host-{k}")).collect();
    let mut spare: Vec<Event> = Vec::new();
    // Series start one to eight rounds apart, so that their updates (every 8 events) fall in
    // different rounds, as they do for series that did not all start at once.
    let total: usize = (0..series).map(|k| rounds - k % 8).sum();
    let mut done = 0;
    let t0 = Instant::now();
    let mut take = |d: tbptt::service::keyed::Done<Timed>, w: &mut Workers<Timed>| {
        d.result.unwrap();
        let Timed(ev, at, timed) = d.item;
        if timed {
            hist.record(at.elapsed().as_micros() as u64).unwrap();
        }
        done += 1;
        w.recycle(d.record);
        ev
    };
    for t in 0..rounds {
        let last = t + 1 == rounds;
        if last {
            // The last round starts with empty queues.
            while let Some(d) = w.wait_done() {
                spare.push(take(d, &mut w));
            }
        }
        let round = Instant::now();
        for (k, key) in keys.iter().enumerate() {
            if t < k % 8 {
                continue;
            }
            if let (Some(r), true) = (pace, last) {
                // Sleep (not spin: the workers need the cores) until the event is due.
                let ahead = k as f64 / r - round.elapsed().as_secs_f64();
                if ahead > 0.0 {
                    std::thread::sleep(std::time::Duration::from_secs_f64(ahead));
                }
                while let Some(d) = w.try_done() {
                    spare.push(take(d, &mut w));
                }
            }
            let mut ev = spare.pop().unwrap_or_default();
            ev.clear();
            ev.key.push_str(key);
            ev.values.push(value(t, k));
            while !w.ready_for(&ev) {
                let d = w.wait_done().unwrap();
                spare.push(take(d, &mut w));
            }
            w.submit(Timed(ev, Instant::now(), last));
            while let Some(d) = w.try_done() {
                spare.push(take(d, &mut w));
            }
        }
    }
    while let Some(d) = w.wait_done() {
        spare.push(take(d, &mut w));
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    let per_series = (rss_kib() - rss0) / series as f64;
    let stats = w.finish();
    assert_eq!(stats.events as usize, total);
    (rate, hist, per_series)
}

/// Seconds to write `series` states of H = 16 series to a fresh store in one transaction,
/// and the bytes written.
fn store_write(series: usize) -> (f64, usize) {
    let dir = std::env::temp_dir().join(format!("tbptt-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = template(16);
    let mut p = Pipeline::new(config.clone()).unwrap();
    let mut ev = Event::new();
    for t in 0..200 {
        ev.values.clear();
        ev.values.push(value(t, 0));
        p.process(&ev).unwrap();
    }
    let bytes = checkpoint::encode(&p.snapshot().unwrap()).unwrap();
    let store = Store::open(&dir.join("s.redb"), &config).unwrap();
    let keys: Vec<String> = (0..series).map(|k| format!("host-{k}")).collect();
    let t0 = Instant::now();
    store
        .write(keys.iter().map(|k| (k.as_str(), bytes.as_slice())), [])
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    (secs, bytes.len() * series)
}

fn main() {
    let series: usize = std::env::var("KEYED_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("keyed series (2 workers, GRU, T = 32, k = 8, Adam, likelihood)");
    for h in [16usize, 64] {
        // At H = 64 a series takes about 100 KiB: at most 10,000 of them.
        let series = if h > 16 { series.min(10_000) } else { series };
        let one = single(h, 200_000.min(series * 40));
        let (rate, _, kib) = keyed(h, series, 40, 2, None);
        let offered = rate / 2.0;
        let (_, hist, _) = keyed(h, series.min(10_000), 40, 2, Some(offered));
        println!(
            "H = {h:>3}: one series {one:>9.0} events/s; {series} series on 2 workers \
             {rate:>9.0} events/s ({:.2} of one series' rate per worker); {kib:.1} KiB \
             resident per series; latency event -> record at {offered:.0} events/s: p50 {} µs, \
             p99 {} µs, p99.9 {} µs",
            rate / 2.0 / one,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
        );
    }
    let (secs, bytes) = store_write(series);
    println!(
        "store: {series} series (H = 16, 200 events each) written in {:.3} s ({:.1} MB)",
        secs,
        bytes as f64 / 1e6
    );
}
