//! Command-line flags (the only clap user).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tbptt::detect::anomaly::{AnomalyKind, LikelihoodConfig};
use tbptt::detect::forecast::{ForecastConfig, ForecastTarget};
use tbptt::io::format::{Format, Missing};
use tbptt::io::sink::OutputFormat;
use tbptt::nn::optim::OptimizerConfig;
use tbptt::service::run::Speed;
use tbptt::{CellKind, Loss, LossSteps, Truncation};

/// `--cell`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CellArg {
    /// Elman (tanh) cell.
    #[value(aliases = ["rnn", "tanh"])]
    Elman,
    /// Gated recurrent unit.
    Gru,
    /// Long short-term memory.
    Lstm,
}

impl From<CellArg> for CellKind {
    fn from(c: CellArg) -> Self {
        match c {
            CellArg::Elman => CellKind::Elman,
            CellArg::Gru => CellKind::Gru,
            CellArg::Lstm => CellKind::Lstm,
        }
    }
}

/// `--anomaly`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnomalyArg {
    /// The anomaly likelihood.
    Likelihood,
    /// The standardized forecast error.
    Zscore,
    /// The normalized error.
    Raw,
}

impl From<AnomalyArg> for AnomalyKind {
    fn from(a: AnomalyArg) -> Self {
        match a {
            AnomalyArg::Likelihood => AnomalyKind::Likelihood,
            AnomalyArg::Zscore => AnomalyKind::ZScore,
            AnomalyArg::Raw => AnomalyKind::Raw,
        }
    }
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Comma-separated values.
    Csv,
    /// JSON Lines.
    #[value(aliases = ["json", "ndjson"])]
    Jsonl,
    /// MessagePack.
    #[value(alias = "mpk")]
    Msgpack,
    /// Graphite plaintext: `path value [timestamp]`; the path is the series key.
    Graphite,
    /// InfluxDB line protocol; each numeric field is a series (see --influx-precision).
    #[value(alias = "line-protocol")]
    Influx,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Jsonl => Format::JsonLines,
            FormatArg::Msgpack => Format::MsgPack,
            FormatArg::Graphite => Format::Graphite,
            FormatArg::Influx => Format::Influx,
        }
    }
}

/// `--missing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MissingArg {
    /// Skip the event.
    Skip,
    /// Hold the column's last value.
    Hold,
}

impl From<MissingArg> for Missing {
    fn from(m: MissingArg) -> Self {
        match m {
            MissingArg::Skip => Missing::Skip,
            MissingArg::Hold => Missing::Hold,
        }
    }
}

/// `--output-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormatArg {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    #[value(aliases = ["json", "jsonlines"])]
    Jsonl,
}

impl From<OutputFormatArg> for OutputFormat {
    fn from(f: OutputFormatArg) -> Self {
        match f {
            OutputFormatArg::Csv => OutputFormat::Csv,
            OutputFormatArg::Jsonl => OutputFormat::Jsonl,
        }
    }
}

const EXAMPLES: &str = "\
Examples:
  cat data/co2_mauna_loa_weekly.csv | tbptt learn --missing hold
  tbptt replay data/nab_ec2_cpu_utilization_24ae8d.csv --summary summary.json -o out.csv
  tbptt replay log.csv --speed 60x --cell lstm --hidden 64 -T 48 -k 4
  tbptt learn --listen tcp://127.0.0.1:9000 --format jsonl --threshold 0.4
  tbptt learn --listen udp://127.0.0.1:9001 --columns cpu,mem --time ts
  tbptt learn --connect 127.0.0.1:9000 --output-format jsonl
  tbptt learn --listen 127.0.0.1:9000 --checkpoint model.ckpt --checkpoint-interval 60
  tbptt inspect /var/lib/tbptt/model.ckpt --json
  tbptt learn --listen tcp://127.0.0.1:9000 --record day.jsonl
  tbptt sweep day.jsonl --format jsonl -T 8,16,32,full -k 1,4 --plot sweep-plots
  tbptt sweep data/airline_passengers.csv --season 12 --json
  tbptt nab nab/data results/tbptt";

const LEARN_EXAMPLES: &str = "\
Examples:
  cat data/co2_mauna_loa_weekly.csv | tbptt learn --missing hold
  tbptt learn --listen tcp://127.0.0.1:9000 --format jsonl --threshold 0.4
  tbptt learn --listen udp://127.0.0.1:9001 --columns cpu,mem --time ts
  tbptt learn --listen 127.0.0.1:9000 --key host --store series.redb --max-series 50000
  tbptt learn --listen 127.0.0.1:9000 --key host --metrics 9464 -o graphite://127.0.0.1:2003
  tbptt learn --connect 127.0.0.1:9000 --output-format jsonl
  tbptt learn --listen 127.0.0.1:9000 --checkpoint model.ckpt --checkpoint-interval 60
  tbptt learn --listen tcp://127.0.0.1:9000 --record day.jsonl";

const REPLAY_EXAMPLES: &str = "\
Examples:
  tbptt replay data/nab_ec2_cpu_utilization_24ae8d.csv --summary summary.json -o out.csv
  tbptt replay log.csv --speed 60x --cell lstm --hidden 64 -T 48 -k 4
  tbptt replay hosts.csv --key host --workers 2 --plot hosts.svg
  tbptt replay day.jsonl --format jsonl --time arrival --speed realtime
  gunzip -c log.csv.gz | tbptt replay - -o out.csv";

const SWEEP_EXAMPLES: &str = "\
Examples:
  tbptt sweep data/airline_passengers.csv --season 12 --json
  tbptt sweep day.jsonl --format jsonl -T 8,16,32,full -k 1,4 --plot sweep-plots
  tbptt sweep log.csv -T 16,32,auto --cell gru,lstm --hidden 32,64 --threads 2";

const INSPECT_EXAMPLES: &str = "\
Examples:
  tbptt inspect /var/lib/tbptt/model.ckpt
  tbptt inspect /var/lib/tbptt/model.ckpt --json
  tbptt inspect series.redb";

const NAB_EXAMPLES: &str = "\
Examples:
  tbptt nab nab/data results/tbptt
  tbptt nab nab/data results/zscore --anomaly zscore
  tbptt nab nab/data results/quick --likelihood '{\"confirm\": 0}' --threads 2";

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
    /// per event. Trains on a background thread unless --sync; a busy trainer slows the
    /// input (no update is lost) unless --lossy.
    #[command(after_help = LEARN_EXAMPLES)]
    Learn(LearnArgs),
    /// Replay a recorded log: like `learn` on a file, deterministic (--sync) by default,
    /// optionally paced by the log's timestamps, with a progress bar on a terminal.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(ReplayArgs),
    /// Run a grid of TBPTT(k, T) configurations over one recorded log, inline and
    /// deterministically, spread over the cores; print each one's error over the last 20%
    /// against naive baselines, its cost and memory, and recommend the cheapest configuration
    /// within a tolerance of the best.
    #[command(after_help = SWEEP_EXAMPLES)]
    Sweep(crate::sweep::SweepArgs),
    /// Show what a checkpoint holds: configuration, events seen, updates, loss, size. Exits
    /// with code 2 and names the problem if the file is truncated, corrupt, of an unknown
    /// version or otherwise unusable. Given a state store (--store), lists its series.
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Run the anomaly detector over every CSV (timestamp,value) below DATA_DIR, one fresh
    /// learner per file, files in parallel, and write NAB result files
    /// (timestamp,value,anomaly_score) with the same folders and names below OUT_DIR.
    #[command(after_help = NAB_EXAMPLES)]
    Nab(NabArgs),
    /// Own a share of the partitions of keyed series on NATS JetStream: read each owned
    /// partition's events from TBPTT_IN, learn them as `learn --key --sync` would, publish the
    /// records to tbptt.out.<key> (JSON lines), checkpoint every partition with its stream
    /// sequence. Partitions move between live workers through leases.
    #[command(after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Publish a file's (or stdin's) events to NATS JetStream, each to
    /// tbptt.in.<partition>.<key> (the partition a hash of --key's value), for `worker`.
    #[command(after_help = WORKER_EXAMPLES)]
    Publish(PublishArgs),
}

const WORKER_EXAMPLES: &str = "\
Examples:
  tbptt publish --nats nats://127.0.0.1:4222 --partitions 16 --key host metrics.csv
  tbptt worker --nats nats://127.0.0.1:4222 --partitions 16 --hidden 16";

/// Where NATS is and how the work is cut.
#[derive(Args, Debug)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(
        long,
        value_name = "URL",
        default_value = "nats://127.0.0.1:4222",
        help_heading = "NATS"
    )]
    pub nats: String,
    /// Partitions (workers and producers must agree).
    #[arg(long, value_name = "P", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096), help_heading = "NATS")]
    pub partitions: u64,
    /// Replicas of the streams and buckets, when they are created.
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5), help_heading = "NATS")]
    pub replicas: u64,
}

/// Flags of `worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Lease time to live (when the lease bucket is created; otherwise the bucket's).
    #[arg(long, value_name = "DURATION", default_value = "6s", value_parser = duration, help_heading = "NATS")]
    pub lease_ttl: std::time::Duration,
    /// How often each owned partition's state is checkpointed (with its stream sequence).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration, help_heading = "NATS")]
    pub state_interval: std::time::Duration,
    /// This worker's name (A-Z a-z 0-9 _ -) [default: w<pid>].
    #[arg(long, value_name = "NAME", help_heading = "NATS")]
    pub id: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Flags of `publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Input file ('-' or nothing: standard input).
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// How events are read (--key COL names the series).
    #[command(flatten)]
    pub input_args: InputArgs,
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
    /// Anomaly score (written mapped into [0, 1]).
    #[arg(long, value_enum, default_value_t = AnomalyArg::Likelihood)]
    pub anomaly: AnomalyArg,
    /// Settings of the likelihood that differ from the defaults, as a JSON object, e.g.
    /// '{"onset": 50, "history": 4096}' (see the library's LikelihoodConfig).
    #[arg(long, value_name = "JSON", value_parser = likelihood_settings)]
    pub likelihood: Option<LikelihoodConfig>,
    /// Settings of the forecaster that differ from the defaults, as a JSON object, e.g.
    /// '{"target": "level"}' (as `replay --forecast`).
    #[arg(long, value_name = "JSON", value_parser = forecast_settings)]
    pub forecast: Option<ForecastConfig>,
    /// Files scored at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N", alias = "jobs")]
    pub threads: Option<usize>,
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = CellArg::Gru)]
    pub cell: CellArg,
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
    /// The checkpoint file, or a state store (--store): each series is then listed.
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
    /// udp://ADDR (one event per datagram), unix://PATH, or http://ADDR (InfluxDB /write and
    /// /api/v2/write, Prometheus remote write at /api/v1/write). The bound address is
    /// announced on stderr. With --strict, a TCP or Unix connection that sends a bad record is closed (the
    /// run goes on); --strict is refused with udp://.
    #[arg(long, value_name = "URL", conflicts_with = "connect")]
    pub listen: Option<String>,
    /// Connect to a TCP server and read events from it, reconnecting with backoff.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Train inline, deterministically (predictions wait for updates).
    #[arg(long)]
    pub sync: bool,
    /// Skip a due update when the background trainer is still busy (predictions never wait;
    /// skipped updates are counted), instead of slowing the input to the trainer's pace.
    #[arg(long, conflicts_with = "sync")]
    pub lossy: bool,
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
    // ---- monitoring protocols (http://)
    /// Largest HTTP request body, as sent and once decompressed (gzip, snappy); larger ones
    /// are answered 413.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES", help_heading = "Listener")]
    pub max_body: usize,
}

impl ListenerArgs {
    /// Sets these limits in `source`.
    ///
    /// # Errors
    /// A message for a negative or non-finite idle timeout.
    pub fn apply(
        &self,
        source: &mut tbptt::io::source::SourceConfig,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let t = self.idle_timeout;
        if !(t >= 0.0 && t.is_finite()) {
            return Err(format!("--idle-timeout must be 0 or positive, got {t}").into());
        }
        source.idle_timeout = (t > 0.0).then(|| std::time::Duration::from_secs_f64(t));
        source.max_connections = self.max_connections;
        source.max_connections_per_peer = self.max_connections_per_peer;
        source.udp_recv_buffer = self.udp_recv_buffer;
        source.max_body = self.max_body;
        source.validate()?;
        Ok(())
    }
}

/// Flags of `replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The recorded log ('-': standard input).
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Pacing: max, realtime, or a factor such as 10x (uses the --time column).
    #[arg(long, default_value = "max", value_name = "SPEED")]
    pub speed: Speed,
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
    /// Input format [default: from the file's name (.jsonl, .ndjson, .json, .msgpack, .mpk)
    /// or first line, else csv].
    #[arg(long, value_enum, ignore_case = true, help_heading = "Input")]
    pub format: Option<FormatArg>,
    /// Unit of InfluxDB line-protocol timestamps (--format influx on sockets, stdin and
    /// files; HTTP requests say theirs with `precision=`).
    #[arg(long, default_value = "ns", value_name = "UNIT", value_parser = ["ns", "us", "ms", "s"], help_heading = "Input")]
    pub influx_precision: String,
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
        value_enum,
        default_value_t = MissingArg::Skip,
        value_name = "POLICY",
        help_heading = "Input"
    )]
    pub missing: MissingArg,
    /// CSV delimiter: one character, or tab ('\t' also works) [default: ',', or ';', tab or
    /// '|' when a file's first line has one of those and no comma].
    #[arg(long, value_parser = delimiter, help_heading = "Input")]
    pub delimiter: Option<char>,
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
    /// Stacked layers [default: 1].
    #[arg(short = 'L', long, help_heading = "Model")]
    pub layers: Option<usize>,
    /// Steps of each window the loss counts: k, all, or a number [default: k].
    #[arg(long, value_name = "L", help_heading = "Model")]
    pub loss_steps: Option<LossSteps>,
    /// Optimizer: sgd, adam, adamw or rmsprop, optionally with a learning rate as in
    /// adam:1e-3 [default: adam].
    #[arg(long, help_heading = "Model")]
    pub opt: Option<OptimizerConfig>,
    /// Learning rate (default: 3e-3; sgd 5e-2).
    #[arg(long, help_heading = "Model")]
    pub lr: Option<f64>,
    /// Global gradient-norm clip; 0 disables [default: 1].
    #[arg(long, help_heading = "Model")]
    pub clip: Option<f64>,
    /// Loss: mse, huber[:DELTA] or ce (cross-entropy over one-hot classes) [default: mse].
    #[arg(long, help_heading = "Model")]
    pub loss: Option<Loss>,
    /// Seed of the weight initialization [default: 0].
    #[arg(long, help_heading = "Model")]
    pub seed: Option<u64>,
    /// Do not normalize inputs and targets.
    #[arg(long, help_heading = "Model")]
    pub no_normalize: bool,
    /// Exponentially weighted normalization with this half-life in events (default:
    /// cumulative statistics).
    #[arg(long, value_name = "EVENTS", help_heading = "Model")]
    pub norm_halflife: Option<f64>,
    /// What the network predicts: the next value's change from the current one, or the next
    /// value's level [default: change].
    #[arg(long, value_enum, help_heading = "Forecast")]
    pub predict: Option<Predict>,
    /// Forecast with the network alone, without combining it with the naive and seasonal
    /// baselines by their recent errors.
    #[arg(long, help_heading = "Forecast")]
    pub no_combine: bool,
    /// Settings of the forecaster that differ from the defaults, as a JSON object, e.g.
    /// '{"eta": 1.0, "time": false}' (fields: target, combine, time, eta, share,
    /// max_season); --predict and --no-combine apply on top.
    #[arg(long, value_name = "JSON", value_parser = forecast_settings, help_heading = "Forecast")]
    pub forecast: Option<ForecastConfig>,
}

/// What the network predicts (`--predict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Predict {
    /// The next value's change from the current one, normalized.
    Change,
    /// The next value, normalized.
    Level,
}

/// Parses `--forecast`: a JSON object of forecaster settings, the rest at their defaults.
fn forecast_settings(json: &str) -> Result<ForecastConfig, String> {
    let c: ForecastConfig = serde_json::from_str(json)
        .map_err(|e| format!("expected a JSON object of forecast settings: {e}"))?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

impl TrainArgs {
    /// A learner configuration with these settings (the rest at their defaults), and the
    /// normalization.
    ///
    /// # Errors
    /// None today (the values were parsed by clap); kept for settings checked together.
    pub fn learner(
        &self,
    ) -> Result<(tbptt::LearnerConfig, tbptt::detect::norm::NormMode), Box<dyn std::error::Error>>
    {
        use tbptt::detect::norm::NormMode;
        let mut optimizer = self.opt.clone().unwrap_or_default();
        if let Some(lr) = self.lr {
            optimizer = optimizer.with_lr(lr);
        }
        let clip = self.clip.unwrap_or(1.0);
        let learner = tbptt::LearnerConfig {
            layers: self.layers.unwrap_or(1),
            seed: self.seed.unwrap_or(0),
            trainer: tbptt::TrainerConfig {
                optimizer,
                loss_steps: self.loss_steps.unwrap_or(LossSteps::Every),
                loss: self.loss.unwrap_or(Loss::Mse),
                clip: (clip > 0.0).then_some(clip),
                ..Default::default()
            },
            ..Default::default()
        };
        let normalize = match (self.no_normalize, self.norm_halflife) {
            (true, _) => NormMode::Off,
            (false, Some(h)) => NormMode::Ewm { half_life: h },
            (false, None) => NormMode::Cumulative,
        };
        Ok((learner, normalize))
    }

    /// The forecaster's settings: `--forecast`, then `--predict` and `--no-combine`.
    pub fn forecast(&self) -> ForecastConfig {
        let mut f = self.forecast.unwrap_or_default();
        match self.predict {
            Some(Predict::Change) => f.target = ForecastTarget::Change,
            Some(Predict::Level) => f.target = ForecastTarget::Level,
            None => {}
        }
        if self.no_combine {
            f.combine = false;
        }
        f
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
    /// Recurrent cell [default: gru].
    #[arg(long, value_enum, help_heading = "Model")]
    pub cell: Option<CellArg>,
    /// Hidden size H [default: 32].
    #[arg(long, value_name = "H", help_heading = "Model")]
    pub hidden: Option<usize>,
    /// Window length T (k2): steps of backpropagation per update, or auto: T adapts online
    /// to the measured decay of the gradient (see --t-min, --t-max, --t-tolerance)
    /// [default: 32].
    #[arg(
        short = 'T',
        long = "window",
        value_name = "T|auto",
        help_heading = "Model"
    )]
    pub window: Option<Truncation>,
    /// Settings of -T auto.
    #[command(flatten, next_help_heading = "Model")]
    pub auto: AutoArgs,
    /// Update every k events (k1 <= T) [default: 8].
    #[arg(short = 'k', long = "every", value_name = "K", help_heading = "Model")]
    pub every: Option<usize>,
    /// Training settings.
    #[command(flatten)]
    pub train: TrainArgs,

    // ---- anomaly
    /// Anomaly score: likelihood (in [0, 1]: tail probabilities of the forecast error,
    /// level-shift, daily and new-extreme statistics, one alarm per episode), zscore (the forecast
    /// error standardized, unbounded) or raw (the normalized error |r| as |r| / (1 + |r|))
    /// [default: likelihood].
    #[arg(long, value_enum, help_heading = "Anomaly")]
    pub anomaly: Option<AnomalyArg>,
    /// Flag events whose anomaly score exceeds this (default: 0.5 for likelihood, 4 for
    /// zscore, 0.8 for raw).
    #[arg(long, help_heading = "Anomaly")]
    pub threshold: Option<f64>,
    /// Half-life of the residual statistics behind the z-score, in events [default: 1000].
    #[arg(long, value_name = "EVENTS", help_heading = "Anomaly")]
    pub anomaly_halflife: Option<f64>,
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
    /// Where records go: '-' for stdout, a file, 'none', or a time-series database:
    /// influx+http://HOST:PORT/write?db=NAME (InfluxDB line protocol over HTTP) or
    /// graphite://HOST:PORT (plaintext over TCP). Repeat it to write to several.
    #[arg(
        short = 'o',
        long,
        default_value = "-",
        value_name = "TARGET",
        action = clap::ArgAction::Append,
        help_heading = "Output"
    )]
    pub output: Vec<String>,
    /// Record format.
    #[arg(long, value_enum, default_value_t = OutputFormatArg::Csv, help_heading = "Output")]
    pub output_format: OutputFormatArg,
    /// Also write each forecast member (net, naive, seasonal, seasonal_change) and its weight
    /// in the combination.
    #[arg(long, help_heading = "Output")]
    pub members: bool,
    /// Write record times as seconds since the Unix epoch. Default: as the input wrote them
    /// (ISO 8601 text stays text, Unix milliseconds stay milliseconds).
    #[arg(long, help_heading = "Output")]
    pub epoch_times: bool,
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

    #[command(flatten)]
    pub series: SeriesArgs,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

// ---- monitoring daemon: /metrics and the outputs to a time-series database

/// Flags of the metrics endpoint and of the outputs to a time-series database, shared by
/// `learn` and `replay`.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (OpenMetrics when the scraper asks
    /// for it), with /healthz and /ready. A bare port means 127.0.0.1:PORT; port 0 picks a
    /// free one (announced on stderr) [default: off].
    #[arg(long, value_name = "ADDR", help_heading = "Monitoring")]
    pub metrics: Option<String>,
    /// Series exported one by one at /metrics at most: the most recently seen, and those
    /// flagged as anomalies in the last 10 minutes; the rest count in the aggregates.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        help_heading = "Monitoring"
    )]
    pub metrics_series: u64,
    /// Lines per batch of an influx+http:// or graphite:// output; a batch not full is sent
    /// after 1 s.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        help_heading = "Monitoring"
    )]
    pub output_batch: u64,
    /// Batches an influx+http:// or graphite:// output queues at most; past it the oldest is
    /// dropped (counted).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=100_000),
        help_heading = "Monitoring"
    )]
    pub output_queue: u64,
    /// Attempts per batch of an influx+http:// or graphite:// output (retried with backoff
    /// from 100 ms to 5 s); then the batch is dropped (counted).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=100),
        help_heading = "Monitoring"
    )]
    pub output_attempts: u32,
}

impl MonitorArgs {
    /// The `--metrics` address: a bare port is on the loopback interface.
    ///
    /// # Errors
    /// A message for an address that does not parse.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let Some(a) = &self.metrics else {
            return Ok(None);
        };
        let a = a.trim();
        let full = if a.parse::<u16>().is_ok() {
            format!("127.0.0.1:{a}")
        } else {
            a.to_string()
        };
        use std::net::ToSocketAddrs;
        full.to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(Some)
            .ok_or_else(|| format!("--metrics: expected PORT or HOST:PORT, got {a:?}"))
    }

    /// The batching and retrying of the remote outputs.
    pub fn remote(&self) -> tbptt::io::sink::remote::RemoteConfig {
        tbptt::io::sink::remote::RemoteConfig {
            batch_lines: usize::try_from(self.output_batch).unwrap_or(5000),
            max_batches: usize::try_from(self.output_queue).unwrap_or(64),
            max_attempts: self.output_attempts,
            ..Default::default()
        }
    }
}

/// Flags of keyed series (`--key`, or the monitoring formats, whose events name their
/// series), shared by `learn` and `replay`.
#[derive(Args, Debug)]
pub struct SeriesArgs {
    /// With keys (--key, or a keyed input: --format graphite|influx, --listen http://): one
    /// model for every key (the events of all keys form one sequence), instead of a pipeline
    /// per key.
    #[arg(long, help_heading = "Series")]
    pub shared_model: bool,
    /// With keys: worker threads the series are spread over, by key hash [default: the
    /// number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024), help_heading = "Series")]
    pub workers: Option<u64>,
    /// With keys: series kept in memory at most. Past it the least recently seen series is
    /// evicted to --store (and restored on its next event); without a store, events of new
    /// keys are refused and counted.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Series")]
    pub max_series: u64,
    /// With keys: forget a series not seen for this long (seconds, or with a unit: 90s,
    /// 15m, 2h, 7d), also in the store [default: never].
    #[arg(long, value_name = "DURATION", value_parser = duration, help_heading = "Series")]
    pub series_ttl: Option<std::time::Duration>,
    /// With keys: keep every series' state in this database file (created if missing;
    /// series are restored from it on their first event).
    #[arg(long, value_name = "PATH", help_heading = "Series")]
    pub store: Option<PathBuf>,
    /// How often the series that changed are written to --store.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, requires = "store", help_heading = "Series")]
    pub store_interval: std::time::Duration,
}

/// Parses `--delimiter`: one character, `tab` or `\t`.
fn delimiter(s: &str) -> Result<char, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok('\t'),
        _ => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c != '\n' && c != '\r' && c != '"' => Ok(c),
                _ => Err(format!(
                    "expected one character (or tab) as the delimiter, got {s:?}"
                )),
            }
        }
    }
}

/// Parses a duration: seconds (`2.5`), or a number with a unit `ms`, `s`, `m`, `h`, `d`.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 30, 90s, 15m, 2h or 7d, got {s:?}"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => return Err(format!("unknown unit {u:?} in {s:?}: use ms, s, m, h or d")),
    };
    let secs = n * scale;
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!(
            "the duration must be positive (and at most 1e9 s), got {s:?}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses `--likelihood`: a JSON object of likelihood settings, the rest at their defaults.
fn likelihood_settings(json: &str) -> Result<LikelihoodConfig, String> {
    let config: LikelihoodConfig = serde_json::from_str(json)
        .map_err(|e| format!("expected a JSON object of likelihood settings: {e}"))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
