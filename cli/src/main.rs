//! `hiedge`: the native command line for Hierarchical Inference on any model set (`--models DIR`;
//! the committed Fashion-MNIST set by default).
//!
//! * `hiedge eval`: runs the set's tiny and large models over labelled test data (IDX files or a
//!   folder of images per class) and prints the HI trade-off table for every decision policy.
//! * `hiedge calibrate`: fits the decision module (temperature, LogisticTop2, per-policy thresholds)
//!   on the set's calibration data and writes it into the manifest.
//! * `hiedge bench`: times both models natively, side by side, and writes a table.
//! * `hiedge import`: writes a model set's manifest from a tiny and a large ONNX file (compiled).
//! * `hiedge compile`: compiles a set's ONNX files to the NNEF archives the browser and Worker load.
//! * `hiedge bench-worker`: load-tests the Worker under `wrangler dev` and compares its inference
//!   time with native tract.

mod bench;
mod bench_worker;
mod calibrate;
mod compile;
mod data;
mod eval;
mod import;
mod limits;
mod monitor;
mod plot;
mod predict;
mod quantize;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hiedge_core::manifest::OffloadCodec;

/// Hierarchical Inference: a tiny model on the device, a large one at the edge.
#[derive(Parser)]
#[command(name = "hiedge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the models and the data are.
#[derive(clap::Args, Clone)]
pub struct Paths {
    /// Model-set directory holding manifest.json and the model files it names.
    #[arg(long, default_value = "models/fashion-mnist")]
    pub models: PathBuf,
    /// Labelled test data: a directory of IDX files (`t10k-*`, `train-*`; default: Debian's
    /// dataset-fashion-mnist) or of images in one sub-folder per class (`<dir>/<class>/*.png|jpg`).
    #[arg(long, env = "FASHION_MNIST_DIR", default_value = "/usr/share/datasets/fashion-mnist")]
    pub data: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Write a model set (manifest.json, the ONNX files and their NNEF archives) from two ONNX files.
    Import(import::ImportArgs),
    /// Compile the set's ONNX files to the NNEF archives the browser client and the Worker load
    /// (checked against the ONNX outputs) and point the manifest at them.
    Compile {
        /// Model-set directory holding manifest.json and the ONNX files.
        #[arg(long, default_value = "models/fashion-mnist")]
        models: PathBuf,
    },
    /// Store one model's weights as f16 or int8 (smaller files, the same f32 computation) after an
    /// accuracy gate on labelled data: the set changes only when the drop is within --max-drop.
    Quantize(quantize::QuantizeArgs),
    /// Run one model of a set natively on image files (any size: converted as the set's input
    /// says) and print its answers as JSON.
    Predict {
        /// Model-set directory holding manifest.json and the model files it names.
        #[arg(long, default_value = "models/fashion-mnist")]
        models: PathBuf,
        /// The model to run (`tiny`, `large`).
        #[arg(long, default_value = "large")]
        model: String,
        /// Print the raw outputs too.
        #[arg(long)]
        logits: bool,
        /// Image files (PNG, JPEG, ...).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay the test set through the set's calibrated HI and print what a deployment's monitor
    /// reports over time (offload rate vs the calibrated one, confidence drift, a label-free
    /// accuracy estimate, alarms), optionally with a shift from a chosen sample on.
    Monitor(monitor::MonitorArgs),
    /// Print the HI trade-off table on the test set for every policy.
    Eval {
        #[command(flatten)]
        paths: Paths,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Use only the first N test images.
        #[arg(long)]
        limit: Option<usize>,
        /// Accuracy drop from large-only (in percentage points) the operating point may give up.
        #[arg(long, default_value_t = 0.3)]
        max_drop: f64,
        /// Also run the large model on every test image sent compressed (`jpeg:85`, `webp:80`,
        /// `png`, `raw`; repeatable): bytes and accuracy per codec, to choose the manifest's
        /// `offload_codec` by numbers.
        #[arg(long = "offload-codec", value_parser = import::parse_codec)]
        offload_codec: Vec<OffloadCodec>,
        /// What an answer is scored against: the test set's `labels`, or the `large` model's
        /// answers (agreement with the large model: what a deployment can see without labels, and
        /// what a client's shadow report measures).
        #[arg(long, value_enum, default_value = "labels")]
        truth: eval::Truth,
        /// Three tiers: the manifest roles of the device, Worker and server models (e.g.
        /// `tiny,mid,large`): where each sample is answered and the accuracy, `max_prob` at both hops.
        #[arg(long)]
        tiers: Option<String>,
    },
    /// Fit temperature, LogisticTop2 and per-policy thresholds on the calibration set; write the manifest.
    Calibrate {
        #[command(flatten)]
        paths: Paths,
        #[command(flatten)]
        data: calibrate::CalibrationData,
        /// Accuracy drop from large-only (in percentage points) the thresholds aim for.
        #[arg(long, default_value_t = 0.3)]
        max_drop: f64,
        /// Offload round trip (ms) the EE-HI thresholds are fitted for (stage times are measured).
        #[arg(long, default_value_t = 20.0)]
        rtt_ms: f64,
        /// Three tiers: also fit the Worker's hop (the manifest's `oip.escalate` threshold) for the
        /// manifest roles of the device, Worker and server models (e.g. `tiny,mid,large`).
        #[arg(long)]
        tiers: Option<String>,
        /// Print what would be written without changing the manifest.
        #[arg(long)]
        dry_run: bool,
    },
    /// Time the tiny and large models natively (single thread), interleaved, and write a table.
    Bench {
        #[command(flatten)]
        paths: Paths,
        /// Number of test images to time each model on.
        #[arg(short, long, default_value_t = 2000)]
        n: usize,
        /// Markdown file to write the table to.
        #[arg(long, default_value = "bench/native.md")]
        out: PathBuf,
    },
    /// Load-test the Worker under `wrangler dev` (started here unless --url is given): requests/s and
    /// p50/p99 per concurrency, workerd vs native inference time, bundle size.
    BenchWorker {
        #[command(flatten)]
        paths: Paths,
        /// A running Worker's base URL; without it `wrangler dev` is started on a free loopback port.
        #[arg(long)]
        url: Option<String>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        concurrency: Vec<usize>,
        /// Interleaved health/classify pairs for the inference-time estimate.
        #[arg(long, default_value_t = 500)]
        pairs: usize,
        /// Markdown file to write.
        #[arg(long, default_value = "bench/worker.md")]
        out: PathBuf,
    },
}

/// Counts the heap, for the Workers' memory check of `import` and `compile` (limits.rs).
#[global_allocator]
static ALLOCATOR: limits::PeakAlloc = limits::PeakAlloc;

fn main() {
    // A user error is one clear line (with its causes), not a backtrace.
    if let Err(e) = run(Cli::parse().command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Import(args) => import::run(&args),
        Command::Compile { models } => compile::run(&models),
        Command::Quantize(args) => quantize::run(&args),
        Command::Predict { models, model, logits, files } => predict::run(&models, &model, logits, &files),
        Command::Monitor(args) => monitor::run(&args),
        Command::Eval { paths, json, limit, max_drop, offload_codec, truth, tiers } => {
            eval::run(&paths, json, limit, max_drop, &offload_codec, truth, tiers.as_deref())
        }
        Command::Calibrate { paths, data, max_drop, rtt_ms, tiers, dry_run } => {
            calibrate::run(&paths, &data, max_drop, rtt_ms, tiers.as_deref(), dry_run)
        }
        Command::Bench { paths, n, out } => bench::run(&paths, n, &out),
        Command::BenchWorker { paths, url, seconds, concurrency, pairs, out } => {
            bench_worker::run(&paths, url, seconds, &concurrency, pairs, &out)
        }
    }
}
