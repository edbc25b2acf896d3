//! Embeds tbptt in a small tokio daemon: it listens on a TCP socket for CSV lines, forecasts
//! every event as it arrives, trains on a background thread and reports anomalies.
//! To run on its own it also starts a client that sends a noisy daily pattern with one spike.
//!
//! Run: `cargo run --release --example embed`
use tbptt::detect::pipeline::PipelineConfig;
use tbptt::io::source::{self, ListenAddr, SourceConfig, SourceItem};
use tokio::io::AsyncWriteExt;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

const EVENTS: usize = 3000;
const SPIKE_AT: usize = 2500;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (trigger, shutdown) = tbptt::io::shutdown::channel();
    let config = SourceConfig::new("tcp://127.0.0.1:0".parse::<source::SourceSpec>()?);
    let (items, handle) = source::spawn(config, shutdown)?;
    let Some(ListenAddr::Tcp(addr)) = handle.local_addr().cloned() else {
        return Err("expected a TCP listener".into());
    };
    println!("listening on {addr}");
    // The "outside world": one client streaming a metric, then the daemon is asked to stop.
    tokio::spawn(async move {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await {
            let _ = conn.write_all(b"load\n").await;
            for t in 0..EVENTS {
                let daily = (t as f64 * std::f64::consts::TAU / 288.0).sin();
                let noise = ((t * 7919 % 1000) as f64 / 1000.0 - 0.5) * 0.2;
                let spike = if t == SPIKE_AT { 6.0 } else { 0.0 };
                let line = format!("{:.4}\n", 10.0 + 3.0 * daily + noise + spike);
                if conn.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                if t % 10 == 0 {
                    // A live metric arrives over time, not all at once.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        trigger.trigger();
    });
    // The daemon: events in, predictions out, training off the prediction path.
    let events = ReceiverStream::new(items).filter_map(|item| match item {
        SourceItem::Event(record) => Some(record.event), // back to the pool once predicted
        SourceItem::Rejected { origin, error } => {
            eprintln!("{origin}: {error}");
            None
        }
        _ => None,
    });
    let config = PipelineConfig {
        background: true,
        ..Default::default()
    };
    let mut predictions = Box::pin(tbptt::service::stream::predictions(events, config)?);
    let mut last = None;
    while let Some(record) = predictions.next().await {
        let record = record?;
        if record.anomaly {
            println!(
                "event {:>5}: anomaly, score {:.1}, residual {:+.3}",
                record.index, record.score, record.residual[0]
            );
        }
        last = Some(record);
    }
    if let Some(r) = last {
        println!(
            "{} events, {} updates, last forecast {:.3}",
            r.index + 1,
            r.updates,
            r.forecast[0]
        );
    }
    Ok(())
}
