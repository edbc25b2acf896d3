//! The monitoring daemon's parts the command starts: the `/metrics` endpoint and the outputs
//! to a time-series database (`-o influx+http://...`, `-o graphite://...`).

use crate::cli::Common;
use crate::AnyError;
use std::sync::Arc;
use tbptt::io::shutdown::ShutdownTrigger;
use tbptt::io::sink::graphite::GraphiteSink;
use tbptt::io::sink::influx::InfluxSink;
use tbptt::io::sink::remote::RemoteCounters;
use tbptt::io::sink::{RecordWriter, RemoteStats, Sink, Tee};
use tbptt::service::metrics::{Metrics, MetricsConfig, MetricsObserver};
use tbptt::service::run::{OutputTarget, RunConfig};

/// One `--output` value.
enum Target<'a> {
    Local(OutputTarget),
    Influx(&'a str),
    Graphite(&'a str),
}

fn target(t: &str) -> Target<'_> {
    if let Some(url) = t.strip_prefix("influx+") {
        Target::Influx(url)
    } else if let Some(addr) = t.strip_prefix("graphite://") {
        Target::Graphite(addr)
    } else {
        Target::Local(match t {
            "-" => OutputTarget::Stdout,
            "none" => OutputTarget::Discard,
            p => OutputTarget::File(p.into()),
        })
    }
}

/// The run's own output when `--output` names exactly one file, stdout or `none` (the run
/// writes it as before); otherwise [`start`] builds the sink and this is `Discard`.
///
/// # Errors
/// A `scheme://` target tbptt does not know (a typo would otherwise become a file name).
pub fn local_output(outputs: &[String]) -> Result<OutputTarget, AnyError> {
    for o in outputs {
        if let Some((scheme, _)) = o.split_once("://") {
            let known = o.starts_with("influx+http://")
                || o.starts_with("influx+https://")
                || scheme == "graphite";
            if !known {
                return Err(format!(
                    "--output {o}: unknown scheme {scheme}:// (expected a file, '-', 'none', \
                     influx+http://HOST:PORT/write?db=NAME or graphite://HOST:PORT)"
                )
                .into());
            }
        }
    }
    match outputs {
        [one] => match target(one) {
            Target::Local(t) => Ok(t),
            _ => Ok(OutputTarget::Discard),
        },
        _ => Ok(OutputTarget::Discard),
    }
}

/// What the command started: the metrics (with their server's stop) and the remote outputs'
/// counters.
pub struct Monitoring {
    metrics: Option<(Metrics, ShutdownTrigger)>,
    outputs: Vec<Arc<RemoteCounters>>,
}

impl Monitoring {
    /// The observer feeding `/metrics`, when it is served.
    pub fn observer(&self) -> Option<MetricsObserver> {
        self.metrics.as_ref().map(|(m, _)| m.observer())
    }

    /// The remote outputs' counters now.
    pub fn output_stats(&self) -> Vec<RemoteStats> {
        self.outputs.iter().map(|c| c.snapshot()).collect()
    }

    /// Stops the metrics server.
    pub fn stop(&self) {
        if let Some((_, t)) = &self.metrics {
            t.trigger();
        }
    }
}

/// Starts the metrics server (`--metrics`) and, when `--output` names a database or several
/// targets, the sink that writes to all of them. Call inside the tokio runtime.
///
/// # Errors
/// An address that cannot be bound, a target that cannot be used.
pub fn start(c: &Common, config: &RunConfig) -> Result<(Monitoring, Option<Tee>), AnyError> {
    let m = &c.monitor;
    let mut monitoring = Monitoring {
        metrics: None,
        outputs: Vec::new(),
    };
    if let Some(addr) = m.metrics_addr()? {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let metrics = Metrics::new(MetricsConfig {
            max_series: usize::try_from(m.metrics_series).unwrap_or(1000),
            ..MetricsConfig::default()
        });
        let (trigger, shutdown) = tbptt::io::shutdown::channel();
        let server = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(listener, shutdown).await {
                tracing::error!("metrics server: {e}");
            }
        });
        tracing::info!(target: "tbptt::listening", "metrics on http://{local}/metrics");
        monitoring.metrics = Some((metrics, trigger));
    }
    let single_local =
        matches!(c.output.as_slice(), [one] if matches!(target(one), Target::Local(_)));
    if single_local {
        return Ok((monitoring, None));
    }
    let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
    for o in &c.output {
        match target(o) {
            Target::Local(OutputTarget::Discard) => {}
            Target::Local(t) => {
                let w: Box<dyn std::io::Write + Send> = match &t {
                    OutputTarget::File(p) => Box::new(
                        std::fs::File::create(p)
                            .map_err(|e| format!("cannot open {} (output): {e}", p.display()))?,
                    ),
                    _ => Box::new(std::io::stdout()),
                };
                sinks.push(Box::new(
                    RecordWriter::new(w, config.output_format).with_members(config.members),
                ));
            }
            Target::Influx(url) => {
                let s = InfluxSink::start(url, m.remote())?;
                monitoring.outputs.push(s.counters());
                sinks.push(Box::new(s));
            }
            Target::Graphite(addr) => {
                let s = GraphiteSink::start(addr, m.remote())?;
                monitoring.outputs.push(s.counters());
                sinks.push(Box::new(s));
            }
        }
    }
    if let Some((metrics, _)) = &monitoring.metrics {
        for o in &monitoring.outputs {
            metrics.add_output(o.clone());
        }
    }
    Ok((monitoring, Some(Tee::new(sinks))))
}
