//! `worker` and `publish`: keyed series spread over processes on NATS JetStream.

use crate::cli::{PublishArgs, WorkerArgs};
use crate::{build, decoder, wait_for_signal, AnyError};
use std::io::Read;
use tbptt::event::Event;
use tbptt::io::format::{ReadError, Reader};
use tbptt::io::source::SourceSpec;
use tbptt::service::run::Keys;
use tbptt::service::scale::{connect, run_worker, Counters, Publisher, ScaleConfig};

fn runtime() -> Result<tokio::runtime::Runtime, AnyError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Serves the worker's `/metrics` on `addr` (bound now, so a taken port is an error at once)
/// for as long as the runtime runs.
fn serve_metrics(
    addr: std::net::SocketAddr,
    counters: std::sync::Arc<Counters>,
) -> Result<(), AnyError> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        if let Err(e) =
            axum::serve(listener, tbptt::service::scale::metrics::router(counters)).await
        {
            tracing::error!("metrics server: {e}");
        }
    });
    tracing::info!(target: "tbptt::listening", "metrics on http://{local}/metrics");
    Ok(())
}

/// `worker`: runs until SIGINT or SIGTERM, then checkpoints and releases its partitions.
pub fn worker(a: &WorkerArgs) -> Result<(), AnyError> {
    let run = build(&a.common, SourceSpec::Stdin)?;
    let mut keyed = match run.keys {
        Keys::PerKey(k) | Keys::Auto(k) => k,
        _ => return Err("worker: --shared-model is not for workers (a model per key)".into()),
    };
    keyed.pipeline = run.pipeline;
    keyed.pipeline.background = false;
    let mut config = ScaleConfig {
        url: a.nats.nats.clone(),
        partitions: a.nats.partitions as usize,
        replicas: a.nats.replicas as usize,
        lease_ttl: a.lease_ttl,
        checkpoint_interval: a.state_interval,
        keyed,
        ..ScaleConfig::default()
    };
    if let Some(id) = &a.id {
        config.id = id.clone();
    }
    let counters = std::sync::Arc::new(Counters::default());
    let rt = runtime()?;
    if let Some(addr) = a.common.monitor.metrics_addr()? {
        let _enter = rt.enter();
        serve_metrics(addr, counters.clone())?;
    }
    let stats = rt.block_on(run_worker(config, counters, async {
        wait_for_signal().await;
    }))?;
    if !a.common.quiet {
        eprintln!("{}", serde_json::to_string(&stats)?);
    }
    Ok(())
}

/// `publish`: every event of the input, to its partition's subject; waits until all are
/// stored.
pub fn publish(a: &PublishArgs) -> Result<(), AnyError> {
    let file = a.input.as_ref().filter(|p| p.as_os_str() != "-");
    let config = decoder(&a.input_args, file.map(|p| p.as_path()))?;
    let input: Box<dyn Read> = match file {
        Some(p) => Box::new(
            std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let mut reader = Reader::new(input, &config)?;
    let rt = runtime()?;
    let (n, refused) = rt.block_on(async {
        let client = connect(&a.nats.nats, None).await?;
        let mut p =
            Publisher::new(client, a.nats.partitions as usize, a.nats.replicas as usize).await?;
        let mut ev = Event::new();
        let mut refused = 0u64;
        loop {
            match reader.read_event(&mut ev) {
                Ok(true) => p.publish(&ev).await?,
                Ok(false) => break,
                Err(ReadError::Parse(e)) if !e.is_fatal() && !a.input_args.strict => {
                    refused += 1;
                    if refused <= 10 {
                        tracing::warn!("{e}");
                    }
                }
                Err(e) => return Err(AnyError::from(e)),
            }
        }
        p.flush().await?;
        Ok::<_, AnyError>((p.published(), refused))
    })?;
    tracing::info!(target: "tbptt::announce", "published {n} events ({refused} refused)");
    Ok(())
}
