//! A callback receiver: the endpoint to give Runflow as a run's `callback_url`.
//!
//! Each callback is read with a size limit, its signature checked and its body read by the
//! component, then de-duplicated by run id and appended as one JSON line to a file that is
//! flushed to disk *before* the 2xx goes back: an event Runflow sees acknowledged is an event
//! kept. Callbacks carry no timestamp, so de-duplication by run id (and event kind) is also
//! the replay protection; the ids already in the file are loaded at start, so a restart
//! keeps it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};

use crate::json::{callback_error_kind, callback_error_message, event_json};
use crate::runtime::Runtime;

/// The largest callback body accepted, unless configured otherwise.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How long a sender may take to deliver its headers and body.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to receive callbacks.
#[derive(Clone)]
pub struct ReceiverConfig {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The JSON-lines file events are appended to.
    pub out: PathBuf,
    /// The callback secrets, newest first (two while rotating).
    pub secrets: Vec<String>,
    /// Bodies larger than this are refused with 413.
    pub max_body: usize,
}

struct Sink {
    file: tokio::fs::File,
    seen: HashSet<String>,
}

struct Shared {
    runtime: Arc<Runtime>,
    secrets: Vec<String>,
    max_body: usize,
    sink: Mutex<Sink>,
}

/// A running receiver. It stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Receiver {
    /// Opens the event file (keeping what it holds) and starts listening.
    pub async fn start(runtime: Arc<Runtime>, config: ReceiverConfig) -> anyhow::Result<Self> {
        let sink = open_sink(&config.out).await?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding the callback receiver to {}", config.addr))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            runtime,
            secrets: config.secrets,
            max_body: config.max_body,
            sink: Mutex::new(sink),
        });
        let (stop, stopped) = watch::channel(false);

        crate::serve::spawn(listener, stopped, READ_TIMEOUT, move |request| {
            let shared = shared.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
        });

        Ok(Self { addr, stop })
    }

    /// The address the receiver listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give Runflow as `callback_url` (any path is accepted).
    pub fn url(&self) -> String {
        format!("http://{}/runflow/callback", self.addr)
    }
}

/// Opens the file for appending and collects the run ids it already holds. A last line cut
/// short by a crash is left as it is, and the next event starts on a new line.
async fn open_sink(path: &PathBuf) -> anyhow::Result<Sink> {
    let existing = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let seen = existing
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|event| {
            let run_id = event["run_id"].as_str()?;
            Some(dedupe_key(run_id, event["event"].as_str().unwrap_or("")))
        })
        .collect();

    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening {} for appending", path.display()))?;
    if existing.last().is_some_and(|b| *b != b'\n') {
        file.write_all(b"\n").await?;
    }
    Ok(Sink { file, seen })
}

/// Events are told apart by run and kind: Runflow sends one terminal event per run, and an
/// event of another kind for the same run (one this version does not know) must be kept,
/// not acknowledged as a duplicate of the first.
fn dedupe_key(run_id: &str, event: &str) -> String {
    format!("{run_id}\u{0}{event}")
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, _) => receive(shared, request).await,
        (&Method::GET, "/health") => answer(StatusCode::OK, json!({"status": "ok"})),
        _ => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "callbacks are POSTed"}),
        ),
    }
}

async fn receive(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("callback bodies are limited to {} bytes", shared.max_body)}),
        )
    };
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.max_body as u64) {
        return too_large();
    }
    let signature = request
        .headers()
        .get("runflow-signature")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let request_id = request
        .headers()
        .get("runflow-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let limited = Limited::new(request.into_body(), shared.max_body);
    let body = match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "the body could not be read"}),
            )
        }
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "the body took too long"}),
            )
        }
    };

    let Some(signature) = signature else {
        tracing::warn!("refused a callback without a Runflow-Signature header");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "the Runflow-Signature header is missing"}),
        );
    };
    match shared
        .runtime
        .verify_signature(&body, &signature, &shared.secrets)
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(reason = callback_error_kind(&e), "refused a callback");
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": callback_error_message(&e), "kind": callback_error_kind(&e)}),
            );
        }
        Err(e) => return internal(&e),
    }
    let event = match shared.runtime.parse_event(&body).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": callback_error_message(&e), "kind": callback_error_kind(&e)}),
            )
        }
        Err(e) => return internal(&e),
    };

    let mut line = event_json(&event);
    line["runflow_request_id"] = json!(request_id);
    let key = dedupe_key(&event.run_id, line["event"].as_str().unwrap_or(""));
    let mut sink = shared.sink.lock().await;
    if sink.seen.contains(&key) {
        return answer(
            StatusCode::OK,
            json!({"status": "duplicate", "run_id": event.run_id}),
        );
    }
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    // The event must be on disk before Runflow hears it was received.
    let written = async {
        sink.file.write_all(&bytes).await?;
        sink.file.flush().await?;
        sink.file.sync_data().await
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, run_id = event.run_id, "could not store a callback");
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "the event could not be stored; send it again"}),
        );
    }
    sink.seen.insert(key);
    tracing::info!(run_id = event.run_id, "stored a callback");
    answer(
        StatusCode::OK,
        json!({"status": "stored", "run_id": event.run_id}),
    )
}

fn internal(error: &crate::runtime::CallError) -> Response<Full<Bytes>> {
    tracing::error!(error = %error, "the component failed while reading a callback");
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "the callback could not be checked; send it again"}),
    )
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    response
}
