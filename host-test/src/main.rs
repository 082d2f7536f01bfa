//! `heygen-agent`: make HeyGen Video Agent videos through Runflow from the command line,
//! by running the WebAssembly component in the bundled wasmtime host.

mod cli;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use host_test::emulator::{Emulator, EmulatorConfig};
use host_test::runtime::{Runtime, RuntimeConfig};
use serde_json::json;

use cli::duration::parse_duration;
use cli::follow::{Interrupt, Session, Waiting};
use cli::output::{printable, Printer};
use cli::video::VideoArgs;
use cli::{download, estimate, exit, Failure};
use host_test::wait::PollSchedule;

const DEFAULT_BASE_URL: &str = "https://api.runflow.io";

/// Environment variables passed on to the component when set.
const FORWARDED_ENV: [&str; 5] = [
    "RUNFLOW_RETRY_MAX_ATTEMPTS",
    "RUNFLOW_RETRY_BASE_DELAY_MS",
    "RUNFLOW_RETRY_MAX_DELAY_MS",
    "RUNFLOW_RETRY_BUDGET_MS",
    "RUNFLOW_CONNECT_TIMEOUT_MS",
];

/// The examples `--help` starts its closing part with.
const EXAMPLES: &str = "\
Examples:
  heygen-agent run --emulator \"A 30-second explainer about rooftop solar\"
  RUNFLOW_API_KEY=... heygen-agent run --download videos \"Our new espresso machine in 20 seconds\"
  heygen-agent run --no-wait --client-ref order-4711 \"A product tour of our app\"
  heygen-agent poll --wait --download videos 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90
  heygen-agent estimate --seconds 30";

/// The environment `--help` lists last.
const ENVIRONMENT: &str = "\
Environment:
  RUNFLOW_API_KEY   your Runflow API key (not needed with --emulator)
  RUNFLOW_BASE_URL  the API's base URL (default https://api.runflow.io)
  NO_COLOR          set to anything to turn colours off";

/// The top command's help after its options.
fn top_after_help() -> String {
    format!("{EXAMPLES}\n\n{}\n\n{ENVIRONMENT}", exit::TABLE)
}

#[derive(Parser)]
#[command(
    name = "heygen-agent",
    version,
    about = "Make HeyGen Video Agent videos through Runflow, from a sandboxed WebAssembly component",
    after_help = top_after_help()
)]
struct Cli {
    /// Print one JSON object (the run, or {"error": {...}}) instead of text; no decoration.
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
    /// Create a video run and follow it until it ends (or, with --no-wait, only create it).
    #[command(after_help = "Examples:\n  \
        heygen-agent run --emulator --orientation portrait \"A 20-second teaser for our spring sale\"\n  \
        heygen-agent run --download videos --timeout 20m \"A product tour of our app\"\n  \
        heygen-agent run --no-wait --client-ref order-4711 \"A product tour of our app\"\n  \
        echo \"A cat explains compound interest\" | heygen-agent run --json")]
    Run {
        #[command(flatten)]
        video: VideoArgs,
        #[command(flatten)]
        waiting: WaitArgs,
        /// Create the run, print it and return without waiting (follow it with `poll`).
        #[arg(long, conflicts_with_all = ["timeout", "poll_interval", "download"])]
        no_wait: bool,
        /// Save the output files into this folder once the run ends, as <run-id>-<n>-<kind>.<ext>.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
    },
    /// Create a video run and print it without waiting.
    #[command(
        after_help = "Example:\n  heygen-agent create --client-ref order-4711 \"A product tour of our app\""
    )]
    Create {
        #[command(flatten)]
        video: VideoArgs,
    },
    /// Print a run as it is now, or wait for it to end with --wait.
    #[command(after_help = "Examples:\n  \
        heygen-agent poll 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90\n  \
        heygen-agent poll --wait --download videos 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90\n\n\
        Without --wait or --download, poll exits 0 whenever it could read the run, whatever its \
        status; with either, it exits as run does.")]
    Poll {
        /// The run id that `create` or `run` printed.
        run_id: String,
        /// Follow the run until it ends, as `run` does.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        waiting: WaitArgs,
        /// Save the output files of the finished run into this folder.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
    },
    /// Estimate what a video costs: $0.034 per second of generated video.
    #[command(after_help = "Example:\n  \
        heygen-agent estimate --seconds 30\n\n\
        The agent picks the video's length from the prompt; Runflow bills the seconds it \
        actually generates.")]
    Estimate {
        /// The video's length: whole seconds (30) or a length (30s, 2m, 1m30s).
        #[arg(long, value_name = "LENGTH", value_parser = estimate::parse_seconds)]
        seconds: u64,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        heygen-agent completions bash > ~/.local/share/bash-completion/completions/heygen-agent\n  \
        heygen-agent completions zsh > \"${fpath[1]}/_heygen-agent\"\n  \
        heygen-agent completions fish > ~/.config/fish/completions/heygen-agent.fish")]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check a callback's Runflow-Signature and print the event it carries.
    #[command(
        after_help = "Example:\n  RUNFLOW_CALLBACK_SECRET=whsec_... heygen-agent verify-callback \\\n    --body-file body.json --signature 3f9a..."
    )]
    VerifyCallback {
        /// The raw request body, byte for byte.
        #[arg(long, value_name = "FILE")]
        body_file: PathBuf,
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
        #[arg(long, default_value = "127.0.0.1:8788", value_parser = parse_listen_addr)]
        addr: std::net::SocketAddr,
        /// The JSON-lines file that receives one line per run.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Refuse (413) callback bodies larger than this.
        #[arg(long, value_name = "BYTES", default_value_t = host_test::receiver::DEFAULT_MAX_BODY,
              value_parser = parse_body_limit)]
        max_body_bytes: usize,
    },
    /// Measure the host against a native Rust client, all against the emulator on loopback.
    #[command(after_help = "Example:\n  cargo run --release -p host-test -- bench > bench.md")]
    Bench {
        /// Calls per latency measurement and per throughput row. Below about 2000 the
        /// figures get noisy, and the 256-caller row gives each caller only a few calls.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
    },
    /// Serve the Runflow emulator until Ctrl-C, printing its base URL and key.
    #[command(after_help = "Example:\n  heygen-agent emulator --addr 127.0.0.1:8787")]
    Emulator {
        /// The address to listen on (a free port on 127.0.0.1 by default).
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_listen_addr)]
        addr: std::net::SocketAddr,
    },
}

impl Command {
    /// The subcommand as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Run { .. } => "run",
            Command::Create { .. } => "create",
            Command::Poll { .. } => "poll",
            Command::Estimate { .. } => "estimate",
            Command::Completions { .. } => "completions",
            Command::VerifyCallback { .. } => "verify-callback",
            Command::Listen { .. } => "listen",
            Command::Bench { .. } => "bench",
            Command::Emulator { .. } => "emulator",
        }
    }
}

/// How long to wait for a run, and how often to look.
#[derive(Args)]
struct WaitArgs {
    /// Time between polls: seconds or 30s, 2m (default: 5s, growing to 30s while a long
    /// video renders).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    poll_interval: Option<Duration>,
    /// Stop waiting after this long: seconds or 90s, 20m, 1h (default: 1h); the run itself
    /// goes on.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
}

impl WaitArgs {
    /// The schedule and timeout; against the built-in emulator, polls come quickly.
    fn waiting(&self, emulator: Option<&Emulator>) -> Waiting {
        let quick = emulator.map(|_| {
            (emulator_config().step / 2)
                .clamp(Duration::from_millis(20), Duration::from_millis(500))
        });
        Waiting {
            schedule: self
                .poll_interval
                .or(quick)
                .map_or_else(PollSchedule::default, PollSchedule::fixed),
            timeout: self.timeout.unwrap_or(Duration::from_secs(3600)),
        }
    }

    fn given(&self) -> bool {
        self.poll_interval.is_some() || self.timeout.is_some()
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a terminal that wants them; a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            // With --json nothing but the one object is printed unless logs are asked for.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| if cli.json { "off" } else { "warn" }.into()),
        )
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(exit::HOST);
        }
    };
    let out = Printer::new(cli.json);
    match runtime.block_on(run_command(cli, &out)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.code)
        }
    }
}

/// A command line clap refused: as clap prints it, or as one JSON error object when `--json`
/// was asked for; exit 2 either way. `--help` and `--version` also arrive here, and print
/// and exit 0 as usual.
fn usage_error(error: clap::Error) -> ExitCode {
    let wants_json = std::env::args_os().any(|a| a == "--json");
    if error.exit_code() == 0 || !wants_json {
        error.exit();
    }
    // clap's text without its usage block: the error line and any tips, on one line.
    let text = error.render().to_string();
    let message = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("; ");
    let message = if message.is_empty() {
        "invalid command line".to_string()
    } else {
        message
    };
    println!(
        "{}",
        json!({"error": {"kind": "usage", "message": format!("{message}; see --help")}})
    );
    ExitCode::from(exit::USAGE)
}

async fn run_command(cli: Cli, out: &Printer) -> Result<u8, Failure> {
    if cli.emulator && !matches!(cli.command, Command::Run { .. } | Command::Create { .. }) {
        return Err(Failure::usage(
            "usage",
            format!(
                "--emulator applies only to run and create: the built-in emulator lives and \
                 dies with one command, so {} could never see its runs",
                cli.command.name()
            ),
        )
        .hint(
            "serve one with `heygen-agent emulator`, then export the RUNFLOW_BASE_URL and \
             RUNFLOW_API_KEY it prints for every command",
        ));
    }
    match cli.command {
        Command::Emulator { addr } => serve_emulator(addr, out).await,
        Command::Bench { calls } => {
            host_test::bench::run(calls).await.map_err(Failure::host)?;
            Ok(exit::OK)
        }
        Command::VerifyCallback {
            body_file,
            signature,
        } => verify_callback(&body_file, &signature, out).await,
        Command::Listen {
            addr,
            out: file,
            max_body_bytes,
        } => listen(addr, file, max_body_bytes, out).await,
        Command::Estimate { seconds } => {
            if out.json {
                println!("{}", estimate::estimate_json(seconds));
            } else {
                println!("{}", estimate::rule(seconds));
            }
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "heygen-agent", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Create { video } => create(video, cli.emulator, out).await,
        Command::Run {
            video,
            waiting,
            no_wait,
            download,
        } => {
            if no_wait {
                create(video, cli.emulator, out).await
            } else {
                run(video, waiting, download.as_deref(), cli.emulator, out).await
            }
        }
        Command::Poll {
            run_id,
            wait,
            waiting,
            download,
        } => {
            poll(
                &run_id,
                wait,
                waiting,
                download.as_deref(),
                cli.emulator,
                out,
            )
            .await
        }
    }
}

/// `create` and `run --no-wait`: make the run, print it, say how to follow it.
async fn create(video: VideoArgs, use_emulator: bool, out: &Printer) -> Result<u8, Failure> {
    let (request, options) = video.into_request()?;
    let (runtime, emulator) = connect(use_emulator).await?;
    // Through a session, so that Ctrl-C or SIGTERM during a slow create still prints how to
    // find the run (its client-ref) instead of dying silently.
    let mut session = Session::new(&runtime, out, emulator.is_some());
    let run = session.create(&request, &options).await?;
    session.clear_line();
    out.run(&run);
    if emulator.is_some() {
        out.note(
            "the built-in emulator stops with this command, and the run with it: use \
             `heygen-agent run --emulator` to follow a run there",
        );
    } else {
        out.note(&format!(
            "follow it with `heygen-agent poll --wait {}`",
            printable(&run.id)
        ));
    }
    Ok(exit::OK)
}

/// `run`: create the run, follow it, print how it ended and save its files if asked.
async fn run(
    video: VideoArgs,
    waiting: WaitArgs,
    download: Option<&Path>,
    use_emulator: bool,
    out: &Printer,
) -> Result<u8, Failure> {
    let (request, options) = video.into_request()?;
    // Checked before the run is created, so that a typo costs nothing.
    let dir = download.map(download::prepare_dir).transpose()?;
    let (runtime, emulator) = connect(use_emulator).await?;
    let mut waiting = waiting.waiting(emulator.as_ref());

    let mut session = Session::new(&runtime, out, emulator.is_some());
    let outcome = async {
        let run = session.create(&request, &options).await?;
        let run = session.wait(run, &mut waiting).await?;
        session.finish(run, dir.as_deref()).await
    }
    .await;
    // The built-in emulator lives in this process: let its callbacks go out first, unless
    // the user asked to stop.
    let interrupted = matches!(&outcome, Err(f) if f.code == exit::INTERRUPTED);
    if let (Some(emulator), false) = (&emulator, interrupted) {
        emulator.settle_callbacks(Duration::from_secs(10)).await;
    }
    outcome
}

/// `poll`: read the run once, or follow it with `--wait`; save its files if asked.
async fn poll(
    run_id: &str,
    wait: bool,
    waiting: WaitArgs,
    download: Option<&Path>,
    use_emulator: bool,
    out: &Printer,
) -> Result<u8, Failure> {
    if !wait && waiting.given() {
        return Err(Failure::usage(
            "usage",
            "--timeout and --poll-interval only apply with --wait: add --wait, or leave them out",
        ));
    }
    let dir = download.map(download::prepare_dir).transpose()?;
    let (runtime, emulator) = connect(use_emulator).await?;
    let mut waiting = waiting.waiting(emulator.as_ref());

    let mut session = Session::new(&runtime, out, emulator.is_some());
    if wait {
        let run = session.look_patiently(run_id, &mut waiting).await?;
        let run = session.wait(run, &mut waiting).await?;
        return session.finish(run, dir.as_deref()).await;
    }
    let run = session.look(run_id).await?;
    if dir.is_none() {
        session.finish(run, None).await?;
        return Ok(exit::OK);
    }
    session.finish(run, dir.as_deref()).await
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
        let base = std::env::var("RUNFLOW_BASE_URL")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        if let Err(e) = host_test::runtime::Origin::parse(base.trim()) {
            return Err(Failure::usage(
                "bad-base-url",
                format!("RUNFLOW_BASE_URL: {e}; unset it to use {DEFAULT_BASE_URL}"),
            ));
        }
        (RuntimeConfig::new(key, base.trim()), None)
    };
    for name in FORWARDED_ENV {
        if let Ok(value) = std::env::var(name) {
            config.env.push((name.into(), value));
        }
    }
    let runtime = Runtime::embedded(for_the_tool(config)).map_err(Failure::host)?;
    Ok((runtime, emulator))
}

/// The tool makes a few calls at a time, and starts often: a small pool, and the compiled
/// component cached on disk so later starts skip compilation.
fn for_the_tool(config: RuntimeConfig) -> RuntimeConfig {
    RuntimeConfig {
        max_concurrent_calls: 8,
        cache_dir: RuntimeConfig::default_cache_dir(),
        ..config
    }
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
    Runtime::embedded(for_the_tool(RuntimeConfig::new("", DEFAULT_BASE_URL))).map_err(Failure::host)
}

async fn verify_callback(body_file: &Path, signature: &str, out: &Printer) -> Result<u8, Failure> {
    let secrets = callback_secrets()?;
    let body = read_callback_body(body_file)?;
    let runtime = offline_runtime()?;

    let refused = |e: &host_test::runtime::CallbackError| {
        Failure::new(
            exit::REJECTED,
            host_test::json::callback_error_kind(e),
            host_test::json::callback_error_message(e),
        )
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
        // Everything below comes from the callback body: shown without control characters.
        let field = |value: &serde_json::Value| printable(value.as_str().unwrap_or(""));
        println!("event:     {}", field(&event["event"]));
        println!("run:       {}", field(&event["run_id"]));
        println!("status:    {}", field(&event["status"]));
        for output in event["outputs"].as_array().into_iter().flatten() {
            let kind = printable(output["media_type"].as_str().unwrap_or("file"));
            println!("{kind:<10} {}", field(&output["url"]));
        }
    }
    Ok(exit::OK)
}

/// Reads a saved callback body, refusing one larger than any callback the receiver accepts
/// (so a wrong file such as a device or a video is not read whole into memory).
fn read_callback_body(path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = host_test::receiver::DEFAULT_MAX_BODY;
    let unreadable =
        |e: std::io::Error| Failure::usage("usage", format!("--body-file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    cli::read_at_most(file, limit as u64)
        .map_err(unreadable)?
        .ok_or_else(|| {
            Failure::usage(
                "usage",
                format!(
                    "--body-file {} is larger than {limit} bytes, which no Runflow callback is: \
                     give the file holding the callback request's raw body",
                    path.display()
                ),
            )
        })
}

/// Reads a listening address: `IP:PORT`, or `localhost:PORT` for 127.0.0.1 (read here,
/// not looked up, so it never depends on a resolver).
fn parse_listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    let local = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    local
        .as_deref()
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("`{text}` is not an address to listen on: write IP:PORT, such as 127.0.0.1:8788, or localhost:8788"))
}

/// Reads `--max-body-bytes`: a positive number of bytes.
fn parse_body_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 would refuse every callback: give a size in bytes, such as 1048576".into()),
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(format!(
            "`{text}` is not a number of bytes (such as 1048576)"
        )),
    }
}

async fn listen(
    addr: std::net::SocketAddr,
    file: PathBuf,
    max_body: usize,
    out: &Printer,
) -> Result<u8, Failure> {
    let secrets = callback_secrets()?;
    // The file is read at start (its run ids) and appended to: it must be a regular file,
    // not a folder or a device that never ends.
    if let Ok(metadata) = std::fs::metadata(&file) {
        if !metadata.is_file() {
            return Err(Failure::usage(
                "usage",
                format!(
                    "--out {} is not a regular file: give the path of the JSON-lines file to \
                     append events to (it is made if missing)",
                    file.display()
                ),
            ));
        }
    }
    let runtime = std::sync::Arc::new(offline_runtime()?);
    let config = host_test::receiver::ReceiverConfig {
        addr,
        out: file.clone(),
        secrets,
        max_body,
    };
    // Ctrl-C or SIGTERM stops it, as they stop a wait; listened for before anything is
    // printed, so a signal sent as soon as the address appears is not missed.
    let mut stop = Interrupt::listen();
    let receiver = host_test::receiver::Receiver::start(runtime, config)
        .await
        .map_err(|e| {
            let message = format!("{e:#}");
            let hint = if message.starts_with("binding") {
                "pick a free --addr (port 0 takes any)"
            } else {
                "give an --out file you can read and write, in a folder that exists"
            };
            Failure::usage("cannot-listen", message).hint(hint)
        })?;
    if out.json {
        println!("{}", json!({"callback_url": receiver.url(), "out": file}));
    } else {
        if receiver.addr().ip().is_unspecified() {
            println!(
                "receiving callbacks on every address of this machine, port {}: give Runflow \
                 this machine's public address, e.g. https://<your-host>:{}/runflow/callback",
                receiver.addr().port(),
                receiver.addr().port()
            );
        } else {
            println!("receiving callbacks at {}", receiver.url());
        }
        println!("appending one line per run to {}", file.display());
        println!("(Ctrl-C stops it)");
    }
    stop.pressed().await;
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
    if !addr.ip().is_loopback() {
        // It accepts a published key and makes up runs: nothing to offer another machine.
        return Err(Failure::usage(
            "usage",
            format!(
                "--addr {addr}: the emulator listens on loopback only (127.0.0.1 or [::1]); \
                 its key is public"
            ),
        ));
    }
    // As for `listen`: the handlers are in place before the address is printed.
    let mut stop = Interrupt::listen();
    let emulator = Emulator::bind(addr, emulator_config()).await.map_err(|e| {
        Failure::usage("cannot-listen", format!("{e:#}"))
            .hint("pick a free --addr, or 127.0.0.1:0 for any free port")
    })?;
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
    stop.pressed().await;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::parse_listen_addr;

    #[test]
    fn listen_addresses_take_localhost_without_a_lookup() {
        assert_eq!(
            parse_listen_addr("localhost:8788"),
            Ok("127.0.0.1:8788".parse().unwrap())
        );
        assert_eq!(parse_listen_addr("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        for bad in ["localhost", "example.com:80", "127.0.0.1:99999", ""] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }
}
