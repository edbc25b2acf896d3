//! Command-line flags (the only clap user).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use tbptt::anomaly::LikelihoodConfig;

const EXAMPLES: &str = "\
Examples:
  cat data/co2_mauna_loa_weekly.csv | tbptt learn --missing hold
  tbptt replay data/nab_ec2_cpu_utilization_24ae8d.csv --summary summary.json -o out.csv
  tbptt replay log.csv --speed 60x --cell lstm --hidden 64 -T 48 -k 4
  tbptt learn --listen tcp://127.0.0.1:9000 --format jsonl --threshold 5
  tbptt learn --listen udp://127.0.0.1:9001 --columns cpu,mem --time ts
  tbptt learn --connect 127.0.0.1:9000 --output-format jsonl
  tbptt learn --listen tcp://127.0.0.1:9000 --checkpoint /var/lib/tbptt/model.ckpt --checkpoint-interval 60
  tbptt inspect /var/lib/tbptt/model.ckpt --json
  tbptt learn --listen tcp://127.0.0.1:9000 --record day.jsonl
  tbptt sweep day.jsonl --format jsonl -T 8,16,32,full -k 1,4 --plot sweep-plots
  tbptt sweep data/airline_passengers.csv --season 12 --json
  tbptt nab nab/data results/tbptt";

/// Streaming online learner: a recurrent network that forecasts every event of a stream at
/// once and learns from it by truncated backpropagation through time, TBPTT(k, T).
#[derive(Parser, Debug)]
#[command(name = "tbptt", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Log level for messages on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read events (stdin, a file or a socket), forecast each at once, learn, write one record
    /// per event. Trains on a background thread unless --sync.
    #[command(after_help = EXAMPLES)]
    Learn(LearnArgs),
    /// Replay a recorded log: like `learn` on a file, deterministic (--sync) by default,
    /// optionally paced by the log's timestamps, with a progress bar on a terminal.
    #[command(after_help = EXAMPLES)]
    Replay(ReplayArgs),
    /// Run a grid of TBPTT(k, T) configurations over one recorded log, inline and
    /// deterministically, spread over the cores; print each one's error over the last 20%
    /// against naive baselines, its cost and memory, and recommend the cheapest configuration
    /// within a tolerance of the best.
    #[command(after_help = EXAMPLES)]
    Sweep(crate::sweep::SweepArgs),
    /// Show what a checkpoint holds: configuration, events seen, updates, loss, size. Exits
    /// with code 2 and names the problem if the file is truncated, corrupt, of an unknown
    /// version or otherwise unusable.
    Inspect(InspectArgs),
    /// Run the anomaly detector over every CSV (timestamp,value) below DATA_DIR, one fresh
    /// learner per file, files in parallel, and write NAB result files
    /// (timestamp,value,anomaly_score) with the same folders and names below OUT_DIR.
    Nab(NabArgs),
}

/// Flags of `nab`.
#[derive(Args, Debug)]
pub struct NabArgs {
    /// The data tree (category folders of timestamp,value CSV files).
    #[arg(value_name = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where result files go (created as needed).
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
    /// Anomaly score: likelihood, zscore or raw (written mapped into [0, 1]).
    #[arg(long, default_value = "likelihood")]
    pub anomaly: String,
    /// Settings of the likelihood that differ from the defaults, as a JSON object, e.g.
    /// '{"onset": 50, "history": 4096}' (see the library's LikelihoodConfig).
    #[arg(long, value_name = "JSON", value_parser = likelihood_settings)]
    pub likelihood: Option<LikelihoodConfig>,
    /// Files scored at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Recurrent cell: elman, gru or lstm.
    #[arg(long, default_value = "gru")]
    pub cell: String,
    /// Hidden size H.
    #[arg(long, default_value_t = 32, value_name = "H")]
    pub hidden: usize,
    /// Window length T (k2).
    #[arg(short = 'T', long = "window", default_value_t = 32, value_name = "T")]
    pub window: usize,
    /// Update every k events.
    #[arg(short = 'k', long = "every", default_value_t = 8, value_name = "K")]
    pub every: usize,
    /// Seed of the weight initialization.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Do not print the closing line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Flags of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The checkpoint file.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print one JSON object instead of the human-readable form.
    #[arg(long)]
    pub json: bool,
}

/// Checkpoint and resume flags, shared by `learn` and `replay`.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Write checkpoints of the whole learner state to this file (atomically; older ones
    /// are kept as PATH.1, PATH.2). If PATH exists, the run resumes from it unless
    /// --no-resume. A final checkpoint is written when the run ends.
    #[arg(long, value_name = "PATH", help_heading = "Checkpoints")]
    pub checkpoint: Option<PathBuf>,
    /// Write a checkpoint every N events.
    #[arg(
        long,
        value_name = "N",
        requires = "checkpoint",
        value_parser = clap::value_parser!(u64).range(1..),
        help_heading = "Checkpoints"
    )]
    pub checkpoint_every: Option<u64>,
    /// Write a checkpoint when this many seconds have passed since the last (default 60
    /// when neither this nor --checkpoint-every is given).
    #[arg(
        long,
        value_name = "SECS",
        requires = "checkpoint",
        help_heading = "Checkpoints"
    )]
    pub checkpoint_interval: Option<f64>,
    /// Checkpoint files kept in all, the newest at PATH.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=100),
        help_heading = "Checkpoints"
    )]
    pub checkpoint_keep: u64,
    /// Resume from this checkpoint (it must exist and load). Model flags given together with
    /// it must match the checkpoint's settings.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "no_resume",
        help_heading = "Checkpoints"
    )]
    pub resume: Option<PathBuf>,
    /// Start fresh even when the --checkpoint file exists (it is then replaced, and rotated
    /// to PATH.1).
    #[arg(long, requires = "checkpoint", help_heading = "Checkpoints")]
    pub no_resume: bool,
}

/// Flags of `learn`.
#[derive(Args, Debug)]
pub struct LearnArgs {
    /// Input file ('-' or nothing: standard input). Not with --listen or --connect.
    #[arg(value_name = "FILE", conflicts_with_all = ["listen", "connect"])]
    pub input: Option<PathBuf>,
    /// Listen for events: tcp://ADDR (many clients, one model; a bare IP:PORT means tcp),
    /// udp://ADDR (one event per datagram) or unix://PATH. The bound address is announced on
    /// stderr. With --strict, a TCP or Unix connection that sends a bad record is closed (the
    /// run goes on); --strict is refused with udp://.
    #[arg(long, value_name = "URL", conflicts_with = "connect")]
    pub listen: Option<String>,
    /// Connect to a TCP server and read events from it, reconnecting with backoff.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Train inline, deterministically (predictions wait for updates).
    #[arg(long)]
    pub sync: bool,
    /// Record every accepted event with its arrival time to FILE (JSON lines; read it back
    /// with `replay FILE --format jsonl`, or `sweep`; `--time arrival` paces by arrival). A
    /// run resumed from a checkpoint appends to FILE; a fresh run replaces it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Limits of a `--listen` socket.
#[derive(Args, Debug)]
pub struct ListenerArgs {
    /// Close a TCP or Unix connection that sends nothing for this long; 0: never.
    #[arg(
        long,
        default_value_t = 120.0,
        value_name = "SECS",
        help_heading = "Listener"
    )]
    pub idle_timeout: f64,
    /// Most connections open at once; when all are taken, the connection idle longest (at
    /// least 1 s) is closed for a new one, else the new one is refused.
    #[arg(
        long,
        default_value_t = 64,
        value_name = "N",
        help_heading = "Listener"
    )]
    pub max_connections: usize,
    /// Most TCP connections open at once from one IP address.
    #[arg(
        long,
        default_value_t = 16,
        value_name = "N",
        help_heading = "Listener"
    )]
    pub max_connections_per_peer: usize,
    /// UDP receive buffer asked of the kernel (SO_RCVBUF), in bytes.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES", help_heading = "Listener")]
    pub udp_recv_buffer: usize,
}

impl ListenerArgs {
    /// Sets these limits in `source`.
    ///
    /// # Errors
    /// A message for a negative or non-finite idle timeout.
    pub fn apply(
        &self,
        source: &mut tbptt::source::SourceConfig,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let t = self.idle_timeout;
        if !(t >= 0.0 && t.is_finite()) {
            return Err(format!("--idle-timeout must be 0 or positive, got {t}").into());
        }
        source.idle_timeout = (t > 0.0).then(|| std::time::Duration::from_secs_f64(t));
        source.max_connections = self.max_connections;
        source.max_connections_per_peer = self.max_connections_per_peer;
        source.udp_recv_buffer = self.udp_recv_buffer;
        source.validate()?;
        Ok(())
    }
}

/// Flags of `replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The recorded log.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Pacing: max, realtime, or a factor such as 10x (uses the --time column).
    #[arg(long, default_value = "max", value_name = "SPEED")]
    pub speed: String,
    /// Train on a background thread instead of inline (not deterministic).
    #[arg(long = "async")]
    pub background: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub common: Common,
}

/// How input records are decoded: shared by `learn`, `replay` and `sweep`.
#[derive(Args, Debug)]
pub struct InputArgs {
    // ---- input format
    /// Input format: csv, jsonl or msgpack.
    #[arg(long, default_value = "csv", help_heading = "Input")]
    pub format: String,
    /// Input columns, by name or 0-based index, comma-separated (default: all but time/key).
    #[arg(long, value_name = "COLS", help_heading = "Input")]
    pub columns: Option<String>,
    /// Explicit target columns (supervised pairs); without it the next event is the target.
    #[arg(long, value_name = "COLS", help_heading = "Input")]
    pub target: Option<String>,
    /// Timestamp column (default: detected from its values).
    #[arg(long, value_name = "COL", help_heading = "Input")]
    pub time: Option<String>,
    /// Series key column (carried to the output).
    #[arg(long, value_name = "COL", help_heading = "Input")]
    pub key: Option<String>,
    /// Missing values (empty, NA, null): skip the event, or hold the column's last value.
    #[arg(
        long,
        default_value = "skip",
        value_name = "POLICY",
        help_heading = "Input"
    )]
    pub missing: String,
    /// CSV delimiter.
    #[arg(long, default_value = ",", help_heading = "Input")]
    pub delimiter: char,
    /// Longest accepted line or frame, in bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES", help_heading = "Input")]
    pub max_line: usize,
    /// Stop with an error at the first bad record instead of skipping it.
    #[arg(long, help_heading = "Input")]
    pub strict: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N", help_heading = "Input")]
    pub max_events: Option<u64>,
}

/// Training flags shared by `learn`, `replay` and `sweep` (the grid's flags, which `sweep`
/// takes as lists, are in [`Common`] and [`SweepArgs`]).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Stacked layers.
    #[arg(short = 'L', long, default_value_t = 1, help_heading = "Model")]
    pub layers: usize,
    /// Steps of each window the loss counts: k, all, or a number.
    #[arg(long, default_value = "k", value_name = "L", help_heading = "Model")]
    pub loss_steps: String,
    /// Optimizer: sgd, adam, adamw or rmsprop.
    #[arg(long, default_value = "adam", help_heading = "Model")]
    pub opt: String,
    /// Learning rate (default: 3e-3; sgd 5e-2).
    #[arg(long, help_heading = "Model")]
    pub lr: Option<f64>,
    /// Global gradient-norm clip; 0 disables.
    #[arg(long, default_value_t = 1.0, help_heading = "Model")]
    pub clip: f64,
    /// Loss: mse, huber[:DELTA] or ce (cross-entropy over one-hot classes).
    #[arg(long, default_value = "mse", help_heading = "Model")]
    pub loss: String,
    /// Seed of the weight initialization.
    #[arg(long, default_value_t = 0, help_heading = "Model")]
    pub seed: u64,
    /// Do not normalize inputs and targets.
    #[arg(long, help_heading = "Model")]
    pub no_normalize: bool,
    /// Exponentially weighted normalization with this half-life in events (default:
    /// cumulative statistics).
    #[arg(long, value_name = "EVENTS", help_heading = "Model")]
    pub norm_halflife: Option<f64>,
}

impl TrainArgs {
    /// A learner configuration with these settings (the rest at their defaults), and the
    /// normalization.
    ///
    /// # Errors
    /// A message for an optimizer, loss or loss-steps value that does not parse.
    pub fn learner(
        &self,
    ) -> Result<(tbptt::LearnerConfig, tbptt::norm::NormMode), Box<dyn std::error::Error>> {
        use tbptt::norm::NormMode;
        let mut optimizer: tbptt::optim::OptimizerConfig = self.opt.parse()?;
        if let Some(lr) = self.lr {
            optimizer = optimizer.with_lr(lr);
        }
        let learner = tbptt::LearnerConfig {
            layers: self.layers,
            loss_steps: self.loss_steps.parse()?,
            loss: self.loss.parse()?,
            optimizer,
            clip: (self.clip > 0.0).then_some(self.clip),
            seed: self.seed,
            ..Default::default()
        };
        let normalize = match (self.no_normalize, self.norm_halflife) {
            (true, _) => NormMode::Off,
            (false, Some(h)) => NormMode::Ewm { half_life: h },
            (false, None) => NormMode::Cumulative,
        };
        Ok((learner, normalize))
    }
}

/// The settings of `-T auto`, shared by `learn`, `replay` and `sweep`.
#[derive(Args, Debug)]
pub struct AutoArgs {
    /// With -T auto: smallest T [default: 16].
    #[arg(long, value_name = "T")]
    pub t_min: Option<usize>,
    /// With -T auto: largest T; buffers are allocated for it [default: 256].
    #[arg(long, value_name = "T")]
    pub t_max: Option<usize>,
    /// With -T auto: largest accepted truncation bias, relative to the gradient, in (0, 1)
    /// [default: 0.01].
    #[arg(long, value_name = "TOL")]
    pub t_tolerance: Option<f64>,
}

impl AutoArgs {
    /// Whether any of them was given.
    pub fn any(&self) -> bool {
        self.t_min.is_some() || self.t_max.is_some() || self.t_tolerance.is_some()
    }

    /// `a` with the settings given replacing its own.
    pub fn apply(&self, mut a: tbptt::AutoTruncation) -> tbptt::AutoTruncation {
        a.min = self.t_min.unwrap_or(a.min);
        a.max = self.t_max.unwrap_or(a.max);
        a.tolerance = self.t_tolerance.unwrap_or(a.tolerance);
        a
    }
}

/// Flags shared by `learn` and `replay`.
#[derive(Args, Debug)]
pub struct Common {
    /// How events are read.
    #[command(flatten)]
    pub input: InputArgs,

    // ---- model
    /// Recurrent cell: elman, gru or lstm.
    #[arg(long, default_value = "gru", help_heading = "Model")]
    pub cell: String,
    /// Hidden size H.
    #[arg(long, default_value_t = 32, value_name = "H", help_heading = "Model")]
    pub hidden: usize,
    /// Window length T (k2): steps of backpropagation per update, or auto: T adapts online
    /// to the measured decay of the gradient (see --t-min, --t-max, --t-tolerance).
    #[arg(
        short = 'T',
        long = "window",
        default_value = "32",
        value_name = "T|auto",
        help_heading = "Model"
    )]
    pub window: tbptt::Truncation,
    /// Settings of -T auto.
    #[command(flatten, next_help_heading = "Model")]
    pub auto: AutoArgs,
    /// Update every k events (k1 <= T).
    #[arg(
        short = 'k',
        long = "every",
        default_value_t = 8,
        value_name = "K",
        help_heading = "Model"
    )]
    pub every: usize,
    /// Training settings.
    #[command(flatten)]
    pub train: TrainArgs,

    // ---- anomaly
    /// Anomaly score: likelihood (in [0, 1]: tail probabilities of the forecast error,
    /// level-shift, daily and new-extreme statistics, one alarm per episode), zscore (the forecast
    /// error standardized, unbounded) or raw (the normalized error |r| as |r| / (1 + |r|)).
    #[arg(long, default_value = "likelihood", help_heading = "Anomaly")]
    pub anomaly: String,
    /// Flag events whose anomaly score exceeds this (default: 0.5 for likelihood, 4 for
    /// zscore, 0.8 for raw).
    #[arg(long, help_heading = "Anomaly")]
    pub threshold: Option<f64>,
    /// Half-life of the residual statistics behind the z-score, in events.
    #[arg(
        long,
        default_value_t = 1000.0,
        value_name = "EVENTS",
        help_heading = "Anomaly"
    )]
    pub anomaly_halflife: f64,
    /// Settings of the likelihood that differ from the defaults, as a JSON object, e.g.
    /// '{"confirm": 0}' to report an alarm at once instead of 5 events later with its
    /// episode's peak (see the library's LikelihoodConfig).
    #[arg(
        long,
        value_name = "JSON",
        value_parser = likelihood_settings,
        help_heading = "Anomaly"
    )]
    pub likelihood: Option<LikelihoodConfig>,

    // ---- output
    /// Where records go: '-' for stdout, a file, or 'none'.
    #[arg(short = 'o', long, default_value = "-", help_heading = "Output")]
    pub output: String,
    /// Record format: csv or jsonl.
    #[arg(long, default_value = "csv", help_heading = "Output")]
    pub output_format: String,
    /// Also write the summary as one JSON object to this file.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub summary: Option<PathBuf>,
    /// Do not print the summary on stderr.
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
    /// Draw the forecast against the actual series, with the anomaly score under it, to this
    /// SVG file at the end (first value of each event; decimated past 20000 points).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub plot: Option<PathBuf>,

    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
}

/// Parses `--likelihood`: a JSON object of likelihood settings, the rest at their defaults.
fn likelihood_settings(json: &str) -> Result<LikelihoodConfig, String> {
    let config: LikelihoodConfig = serde_json::from_str(json)
        .map_err(|e| format!("expected a JSON object of likelihood settings: {e}"))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
