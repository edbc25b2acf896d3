//! A daemon of many keyed series: TCP clients send `key,value` lines; every series gets its
//! own learner, and the daemon prints each forecast and flags anomalies.
//!
//! ```text
//! cargo run --release --example daemon -- 127.0.0.1:7070
//! printf 'web-1,0.5\nweb-2,40\nweb-1,0.6\n' | nc -q1 127.0.0.1 7070
//! ```
use tbptt::event::Event;
use tbptt::io::format::{ColumnSpec, Decoded, DecoderConfig, Selector};
use tbptt::service::keyed::{KeyedConfig, KeyedService};
use tokio::io::AsyncBufReadExt;
use tokio_stream::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7070".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    let (service, mut records) = KeyedService::start(KeyedConfig::default())?;
    let input = service.sender();
    tokio::spawn(async move {
        while let Ok((socket, peer)) = listener.accept().await {
            let input = input.clone();
            tokio::spawn(async move {
                let columns = ColumnSpec {
                    key: Some(Selector::Index(0)),
                    ..Default::default()
                };
                let config = DecoderConfig {
                    columns,
                    header: Some(false),
                    ..Default::default()
                };
                let Ok(mut decoder) = config.build() else {
                    return;
                };
                let mut lines = tokio::io::BufReader::new(socket).lines();
                let mut n = 0;
                while let Ok(Some(line)) = lines.next_line().await {
                    n += 1;
                    let mut ev = Event::new();
                    match decoder.decode_line(line.as_bytes(), n, &mut ev) {
                        Ok(Decoded::Event) if input.send(ev).await.is_err() => return,
                        Ok(_) => {}
                        Err(e) => eprintln!("{peer}: {e}"),
                    }
                }
            });
        }
    });
    while let Some(record) = records.next().await {
        match record {
            Ok(r) if r.anomaly => println!("{} #{}: ANOMALY score {:.2}", r.key, r.index, r.score),
            Ok(r) => println!("{} #{}: next {:.3}", r.key, r.index, r.forecast[0]),
            Err(e) => eprintln!("{e}"),
        }
    }
    Ok(())
}
