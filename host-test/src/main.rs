//! `heygen-agent`: make HeyGen Video Agent videos through Runflow from the command line,
//! by running the WebAssembly component in the bundled wasmtime host.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use host_test::emulator::{Emulator, EmulatorConfig};
use host_test::json::{error_json, run_json, status_name};
use host_test::runtime::{
    CallError, Orientation, Run, RunOptions, Runtime, RuntimeConfig, Status, VideoRequest,
};
use serde_json::{json, Value};

/// Exit codes, the same with and without `--json`.
mod exit {
    /// The run succeeded (or the command did what it was asked).
    pub const OK: u8 = 0;
    /// The host itself failed (the component could not be loaded or trapped).
    pub const HOST: u8 = 1;
    /// The command line or the environment is wrong; nothing was sent.
    pub const USAGE: u8 = 2;
    /// The run ended failed or canceled.
    pub const RUN_FAILED: u8 = 3;
    /// Waiting for the run timed out; the run goes on.
    pub const TIMED_OUT: u8 = 4;
    /// Runflow refused or failed the request.
    pub const API: u8 = 5;
    /// A callback was refused: bad signature or not a callback.
    pub const REJECTED: u8 = 6;
    /// Interrupted with Ctrl-C while waiting; the run goes on.
    pub const INTERRUPTED: u8 = 130;
}

const DEFAULT_BASE_URL: &str = "https://api.runflow.io";

/// Environment variables passed on to the component when set.
const FORWARDED_ENV: [&str; 5] = [
    "RUNFLOW_RETRY_MAX_ATTEMPTS",
    "RUNFLOW_RETRY_BASE_DELAY_MS",
    "RUNFLOW_RETRY_MAX_DELAY_MS",
    "RUNFLOW_RETRY_BUDGET_MS",
    "RUNFLOW_CONNECT_TIMEOUT_MS",
];

#[derive(Parser)]
#[command(
    name = "heygen-agent",
    version,
    about = "Make HeyGen Video Agent videos through Runflow, from a sandboxed WebAssembly component",
    after_help = "Examples:\n  heygen-agent run --emulator \"A 30-second explainer about rooftop solar\"\n  \
                  RUNFLOW_API_KEY=... heygen-agent run --orientation portrait \"Our new espresso machine in 20 seconds\"\n  \
                  heygen-agent poll 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90"
)]
struct Cli {
    /// Print one JSON object (the run, or {"error": {...}}) instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Use a built-in Runflow emulator on 127.0.0.1 instead of the real API (no key needed).
    #[arg(long, global = true)]
    emulator: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a video run and follow it until it ends.
    #[command(
        after_help = "Example:\n  heygen-agent run --emulator --orientation portrait \"A 20-second teaser for our spring sale\""
    )]
    Run {
        #[command(flatten)]
        video: VideoArgs,
        /// Seconds between polls (default: 5, growing to 30 while a long video renders).
        #[arg(long, value_name = "SECONDS")]
        poll_interval: Option<f64>,
        /// Stop waiting after this many seconds; the run itself goes on.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600.0)]
        timeout: f64,
    },
    /// Create a video run and print it without waiting.
    #[command(
        after_help = "Example:\n  heygen-agent create --client-ref order-4711 \"A product tour of our app\""
    )]
    Create {
        #[command(flatten)]
        video: VideoArgs,
    },
    /// Print a run as it is now.
    #[command(after_help = "Example:\n  heygen-agent poll 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90")]
    Poll {
        /// The run id that `create` or `run` printed.
        run_id: String,
    },
    /// Check a callback's Runflow-Signature and print the event it carries.
    #[command(
        after_help = "Example:\n  RUNFLOW_CALLBACK_SECRET=whsec_... heygen-agent verify-callback \\\n    --body-file body.json --signature 3f9a..."
    )]
    VerifyCallback {
        /// The raw request body, byte for byte.
        #[arg(long, value_name = "FILE")]
        body_file: std::path::PathBuf,
        /// The Runflow-Signature header's value.
        #[arg(long, value_name = "HEX")]
        signature: String,
    },
    /// Receive Runflow callbacks: verify, de-duplicate and append each event to a file.
    #[command(
        after_help = "Example:\n  RUNFLOW_CALLBACK_SECRET=whsec_... heygen-agent listen --addr 127.0.0.1:8788 --out events.jsonl"
    )]
    Listen {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8788")]
        addr: std::net::SocketAddr,
        /// The JSON-lines file that receives one line per run.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// Refuse (413) callback bodies larger than this.
        #[arg(long, value_name = "BYTES", default_value_t = host_test::receiver::DEFAULT_MAX_BODY)]
        max_body_bytes: usize,
    },
    /// Measure the host against a native Rust client, all against the emulator on loopback.
    #[command(after_help = "Example:\n  cargo run --release -p host-test -- bench > bench.md")]
    Bench {
        /// Calls per latency measurement.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
    },
    /// Serve the Runflow emulator until Ctrl-C, printing its base URL and key.
    #[command(after_help = "Example:\n  heygen-agent emulator --addr 127.0.0.1:8787")]
    Emulator {
        /// The address to listen on (a free port on 127.0.0.1 by default).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Args)]
struct VideoArgs {
    /// What the video should be about (or use --prompt-file, or pipe it on stdin).
    prompt: Option<String>,
    /// Read the prompt from this file ("-" for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    prompt_file: Option<std::path::PathBuf>,
    /// Video orientation; left out, the agent picks one from the prompt.
    #[arg(long, value_enum)]
    orientation: Option<OrientationArg>,
    /// Avatar name or id ("auto" lets the agent choose).
    #[arg(long)]
    avatar: Option<String>,
    /// Voice name or id ("auto" lets the agent choose).
    #[arg(long)]
    voice: Option<String>,
    /// Style template id, e.g. style_noir_detective.
    #[arg(long = "style", value_name = "STYLE_ID")]
    style_id: Option<String>,
    /// URL of an image, video, audio file or PDF to use (repeat up to 20 times).
    #[arg(long = "file-url", value_name = "URL")]
    file_urls: Vec<String>,
    /// Keep this video out of the agent's memory.
    #[arg(long)]
    incognito: bool,
    /// Metadata to attach to the run, as key=value (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Your reference for this run; a retried create with the same one never makes a second
    /// run (default: a fresh random one).
    #[arg(long)]
    client_ref: Option<String>,
    /// An https URL that Runflow POSTs the finished run to.
    #[arg(long)]
    callback_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrientationArg {
    Landscape,
    Portrait,
}

/// A failure of the command, with its exit code and JSON form.
struct Failure {
    code: u8,
    error: Value,
}

impl Failure {
    fn usage(kind: &str, message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            error: json!({"kind": kind, "message": message.into()}),
        }
    }

    fn call(error: &CallError) -> Self {
        match error {
            CallError::Run(e) => {
                let kind = host_test::json::error_kind(e);
                let code = if kind == "permanent-invalid-request"
                    || kind == "permanent-bad-configuration"
                {
                    exit::USAGE
                } else {
                    exit::API
                };
                Self {
                    code,
                    error: error_json(e),
                }
            }
            CallError::TimedOut(_) => Self {
                code: exit::TIMED_OUT,
                error: json!({"kind": error.kind(), "message": error.to_string()}),
            },
            CallError::Trapped(_) => Self {
                code: exit::HOST,
                error: json!({"kind": error.kind(), "message": error.to_string()}),
            },
        }
    }

    fn host(error: anyhow::Error) -> Self {
        Self {
            code: exit::HOST,
            error: json!({"kind": "host-error", "message": format!("{error:#}")}),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(exit::HOST);
        }
    };
    let json = cli.json;
    match runtime.block_on(run_command(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if json {
                println!("{}", json!({"error": failure.error}));
            } else {
                let message = failure.error["message"].as_str().unwrap_or("unknown error");
                eprintln!("error: {message}");
                if let Some(run_id) = failure.error["run_id"].as_str() {
                    eprintln!("the run goes on: follow it with `heygen-agent poll {run_id}`");
                }
            }
            ExitCode::from(failure.code)
        }
    }
}

async fn run_command(cli: Cli) -> Result<u8, Failure> {
    let out = Printer { json: cli.json };
    match cli.command {
        Command::Emulator { addr } => serve_emulator(addr, &out).await,
        Command::Bench { calls } => {
            host_test::bench::run(calls).await.map_err(Failure::host)?;
            Ok(exit::OK)
        }
        Command::VerifyCallback {
            body_file,
            signature,
        } => verify_callback(&body_file, &signature, &out).await,
        Command::Listen {
            addr,
            out: file,
            max_body_bytes,
        } => listen(addr, file, max_body_bytes, &out).await,
        Command::Poll { run_id } => {
            let (runtime, _emulator) = connect(cli.emulator).await?;
            let run = runtime
                .poll_run(&run_id)
                .await
                .map_err(|e| Failure::call(&e))?;
            out.run(&run);
            Ok(exit::OK)
        }
        Command::Create { video } => {
            let (request, options) = video.into_request()?;
            let (runtime, _emulator) = connect(cli.emulator).await?;
            let run = runtime
                .create_run(&request, &options)
                .await
                .map_err(|e| Failure::call(&e))?;
            out.run(&run);
            Ok(exit::OK)
        }
        Command::Run {
            video,
            poll_interval,
            timeout,
        } => {
            let (request, options) = video.into_request()?;
            let fixed = poll_interval
                .map(checked_seconds("--poll-interval"))
                .transpose()?;
            let timeout = checked_seconds("--timeout")(timeout)?;
            let (runtime, emulator) = connect(cli.emulator).await?;
            let schedule =
                PollSchedule::new(fixed.or(emulator.as_ref().map(|_| Duration::from_millis(500))));
            let outcome = follow(&runtime, &request, &options, schedule, timeout, &out).await;
            // The built-in emulator lives in this process: let its callbacks go out first.
            if let Some(emulator) = &emulator {
                emulator.settle_callbacks(Duration::from_secs(10)).await;
            }
            outcome
        }
    }
}

fn checked_seconds(flag: &'static str) -> impl Fn(f64) -> Result<Duration, Failure> {
    move |secs| {
        if secs.is_finite() && secs > 0.0 && secs < 1e9 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(Failure::usage(
                "usage",
                format!("{flag} must be a positive number of seconds, e.g. {flag} 10"),
            ))
        }
    }
}

/// Creates the run, then polls it until it ends, the timeout passes or Ctrl-C.
async fn follow(
    runtime: &Runtime,
    request: &VideoRequest,
    options: &RunOptions,
    mut schedule: PollSchedule,
    timeout: Duration,
    out: &Printer,
) -> Result<u8, Failure> {
    let started = Instant::now();
    let mut run = runtime
        .create_run(request, options)
        .await
        .map_err(|e| Failure::call(&e))?;
    out.progress(&format!(
        "created run {} ({})",
        run.id,
        status_name(&run.status)
    ));

    let mut last_status = status_name(&run.status).to_string();
    while !run.terminal {
        if started.elapsed() >= timeout {
            let mut failure = Failure {
                code: exit::TIMED_OUT,
                error: json!({
                    "kind": "wait-timed-out",
                    "message": format!("run {} did not finish within {timeout:?}", run.id),
                }),
            };
            failure.error["run_id"] = json!(run.id);
            return Err(failure);
        }
        let wait = schedule
            .next()
            .min(timeout.saturating_sub(started.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => {
                let mut failure = Failure {
                    code: exit::INTERRUPTED,
                    error: json!({
                        "kind": "interrupted",
                        "message": format!("stopped waiting for run {}", run.id),
                    }),
                };
                failure.error["run_id"] = json!(run.id);
                return Err(failure);
            }
        }
        match runtime.poll_run(&run.id).await {
            Ok(now) => run = now,
            // The component already retried; a passing outage must not lose the run.
            Err(CallError::Run(e))
                if !host_test::json::error_kind(&e).starts_with("permanent-") =>
            {
                out.progress(&format!(
                    "still waiting: {}",
                    host_test::json::error_message(&e)
                ));
                continue;
            }
            Err(e) => {
                let mut failure = Failure::call(&e);
                failure.error["run_id"] = json!(run.id);
                return Err(failure);
            }
        }
        let status = status_name(&run.status);
        if status != last_status {
            out.progress(&format!(
                "[{:>5.1}s] {status}",
                started.elapsed().as_secs_f64()
            ));
            last_status = status.to_string();
        }
    }

    out.run(&run);
    Ok(match run.status {
        Status::Succeeded | Status::PartialSucceeded => exit::OK,
        _ => exit::RUN_FAILED,
    })
}

/// When to poll next: gentle at first, then backing off while a long video renders
/// (HeyGen takes 5 to 10 times the video's length).
struct PollSchedule {
    fixed: Option<Duration>,
    next: Duration,
}

impl PollSchedule {
    fn new(fixed: Option<Duration>) -> Self {
        Self {
            fixed,
            next: Duration::from_secs(5),
        }
    }

    fn next(&mut self) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let now = self.next;
        self.next = (self.next.mul_f64(1.5)).min(Duration::from_secs(30));
        now
    }
}

/// Starts the runtime against the emulator or the real API.
async fn connect(use_emulator: bool) -> Result<(Runtime, Option<Emulator>), Failure> {
    let (mut config, emulator) = if use_emulator {
        let emulator = Emulator::start(emulator_config())
            .await
            .map_err(Failure::host)?;
        let config = RuntimeConfig::new(emulator.api_key(), emulator.base_url());
        (config, Some(emulator))
    } else {
        let key = std::env::var("RUNFLOW_API_KEY").unwrap_or_default();
        if key.trim().is_empty() {
            return Err(Failure::usage(
                "missing-api-key",
                "RUNFLOW_API_KEY is not set: export it with your Runflow API key, or pass \
                 --emulator to try the built-in emulator",
            ));
        }
        let base = std::env::var("RUNFLOW_BASE_URL").unwrap_or_else(|_| DEFAULT_BASE_URL.into());
        (RuntimeConfig::new(key, base), None)
    };
    for name in FORWARDED_ENV {
        if let Ok(value) = std::env::var(name) {
            config.env.push((name.into(), value));
        }
    }
    let runtime = Runtime::embedded(config).map_err(Failure::host)?;
    Ok((runtime, emulator))
}

/// The callback secrets from the environment: the current one, then the previous one.
fn callback_secrets() -> Result<Vec<String>, Failure> {
    let current = std::env::var("RUNFLOW_CALLBACK_SECRET").unwrap_or_default();
    if current.is_empty() {
        return Err(Failure::usage(
            "missing-callback-secret",
            "RUNFLOW_CALLBACK_SECRET is not set: export the callback secret Runflow issued \
             (whsec_...); during rotation put the old one in RUNFLOW_CALLBACK_SECRET_PREVIOUS",
        ));
    }
    let mut secrets = vec![current];
    if let Ok(previous) = std::env::var("RUNFLOW_CALLBACK_SECRET_PREVIOUS") {
        if !previous.is_empty() {
            secrets.push(previous);
        }
    }
    Ok(secrets)
}

/// A runtime for the callback functions, which make no requests.
fn offline_runtime() -> Result<Runtime, Failure> {
    Runtime::embedded(RuntimeConfig::new("", DEFAULT_BASE_URL)).map_err(Failure::host)
}

async fn verify_callback(
    body_file: &std::path::Path,
    signature: &str,
    out: &Printer,
) -> Result<u8, Failure> {
    let secrets = callback_secrets()?;
    let body = std::fs::read(body_file).map_err(|e| {
        Failure::usage("usage", format!("--body-file {}: {e}", body_file.display()))
    })?;
    let runtime = offline_runtime()?;

    let refused = |e: &host_test::runtime::CallbackError| Failure {
        code: exit::REJECTED,
        error: json!({
            "kind": host_test::json::callback_error_kind(e),
            "message": host_test::json::callback_error_message(e),
        }),
    };
    let index = runtime
        .verify_signature(&body, signature, &secrets)
        .await
        .map_err(|e| Failure::call(&e))?
        .map_err(|e| refused(&e))?;
    let event = runtime
        .parse_event(&body)
        .await
        .map_err(|e| Failure::call(&e))?
        .map_err(|e| refused(&e))?;

    let event = host_test::json::event_json(&event);
    if out.json {
        println!("{event}");
    } else {
        let which = if index == 0 { "current" } else { "previous" };
        println!("signature: valid (the {which} secret)");
        println!("event:     {}", event["event"].as_str().unwrap_or(""));
        println!("run:       {}", event["run_id"].as_str().unwrap_or(""));
        println!("status:    {}", event["status"].as_str().unwrap_or(""));
        for output in event["outputs"].as_array().into_iter().flatten() {
            let kind = output["media_type"].as_str().unwrap_or("file");
            println!("{kind:<10} {}", output["url"].as_str().unwrap_or(""));
        }
    }
    Ok(exit::OK)
}

async fn listen(
    addr: std::net::SocketAddr,
    file: std::path::PathBuf,
    max_body: usize,
    out: &Printer,
) -> Result<u8, Failure> {
    let secrets = callback_secrets()?;
    let runtime = std::sync::Arc::new(offline_runtime()?);
    let config = host_test::receiver::ReceiverConfig {
        addr,
        out: file.clone(),
        secrets,
        max_body,
    };
    let receiver = host_test::receiver::Receiver::start(runtime, config)
        .await
        .map_err(Failure::host)?;
    if out.json {
        println!("{}", json!({"callback_url": receiver.url(), "out": file}));
    } else {
        println!("receiving callbacks at {}", receiver.url());
        println!("appending one line per run to {}", file.display());
        println!("(Ctrl-C stops it)");
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")
        .map_err(Failure::host)?;
    Ok(exit::OK)
}

/// The emulator's clock step can be shortened for scripted demos and tests.
fn emulator_config() -> EmulatorConfig {
    let mut config = EmulatorConfig {
        callback_secret: std::env::var("RUNFLOW_CALLBACK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        ..EmulatorConfig::default()
    };
    if let Some(ms) = std::env::var("HEYGEN_EMULATOR_STEP_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.step = Duration::from_millis(ms);
    }
    config
}

async fn serve_emulator(addr: std::net::SocketAddr, out: &Printer) -> Result<u8, Failure> {
    let emulator = Emulator::bind(addr, emulator_config())
        .await
        .map_err(Failure::host)?;
    if out.json {
        println!(
            "{}",
            json!({"base_url": emulator.base_url(), "api_key": emulator.api_key()})
        );
    } else {
        println!("Runflow emulator listening on {}", emulator.base_url());
        println!(
            "export RUNFLOW_BASE_URL={} RUNFLOW_API_KEY={}",
            emulator.base_url(),
            emulator.api_key()
        );
        println!("(Ctrl-C stops it)");
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")
        .map_err(Failure::host)?;
    Ok(exit::OK)
}

impl VideoArgs {
    fn into_request(self) -> Result<(VideoRequest, RunOptions), Failure> {
        let prompt = match (self.prompt, self.prompt_file) {
            (Some(prompt), _) => prompt,
            (None, Some(path)) if path.as_os_str() == "-" => read_stdin()?,
            (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
                Failure::usage("usage", format!("--prompt-file {}: {e}", path.display()))
            })?,
            (None, None) if !std::io::stdin().is_terminal() => read_stdin()?,
            (None, None) => {
                return Err(Failure::usage(
                    "usage",
                    "no prompt: give it as an argument, with --prompt-file, or on stdin",
                ))
            }
        };

        let mut metadata = serde_json::Map::new();
        for pair in &self.metadata {
            let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(Failure::usage(
                    "usage",
                    format!(
                        "--metadata `{pair}` must be KEY=VALUE, e.g. --metadata campaign=winter"
                    ),
                ));
            };
            metadata.insert(key.into(), json!(value));
        }

        let request = VideoRequest {
            prompt: prompt.trim_end_matches(['\n', '\r']).to_string(),
            orientation: self.orientation.map(|o| match o {
                OrientationArg::Landscape => Orientation::Landscape,
                OrientationArg::Portrait => Orientation::Portrait,
            }),
            avatar: self.avatar,
            voice: self.voice,
            style_id: self.style_id,
            file_urls: self.file_urls,
            incognito_mode: self.incognito.then_some(true),
        };
        let options = RunOptions {
            callback_url: self.callback_url,
            metadata: (!metadata.is_empty()).then(|| Value::Object(metadata).to_string()),
            // A reference on every create lets a create whose answer is lost be found again.
            client_ref: Some(
                self.client_ref
                    .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::now_v7())),
            ),
        };
        Ok((request, options))
    }
}

fn read_stdin() -> Result<String, Failure> {
    let mut prompt = String::new();
    std::io::stdin()
        .read_to_string(&mut prompt)
        .map_err(|e| Failure::usage("usage", format!("reading the prompt from stdin: {e}")))?;
    Ok(prompt)
}

/// Prints progress to stderr (text mode only) and results to stdout.
struct Printer {
    json: bool,
}

impl Printer {
    fn progress(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    fn run(&self, run: &Run) {
        if self.json {
            println!("{}", run_json(run));
            return;
        }
        println!("run:     {}", run.id);
        println!("status:  {}", status_name(&run.status));
        for output in &run.outputs {
            let kind = output.media_type.as_deref().unwrap_or("file");
            println!("{kind:<8} {}", output.url);
        }
        if let Some(seconds) = run.video_seconds {
            println!("length:  {seconds} s");
        }
        if let Some(cost) = &run.cost {
            println!("cost:    ${cost}");
        }
        if let Some(failure) = &run.failure {
            let code = failure.code.as_deref().unwrap_or("unknown");
            let message = failure.message.as_deref().unwrap_or("");
            println!("failure: {code} {message}");
        }
    }
}
