//! A local stand-in for Runflow's API, for tests and for trying the tool without a key.
//!
//! It is a real HTTP/1.1 server on 127.0.0.1 that behaves as Runflow's public docs describe:
//! it checks the bearer key, creates HeyGen Video Agent runs, moves each through `queued`,
//! `dispatching` and `running` to `succeeded` on a compressed clock, lists runs by
//! `client_ref`, serves the generated file, and answers unknown paths, bad keys and bad
//! input with Runflow's error bodies. It records every request it receives, so a test can
//! assert on exactly what the component sent, and keeps a ledger of the runs it made.
//!
//! Tests can also script faults per request (see [`Fault`]).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The key the emulator accepts unless told otherwise.
pub const DEFAULT_KEY: &str = "emulator-key";
/// The model this emulator serves.
pub const MODEL_ID: &str = "heygen/v3/video-agent";
/// Runflow's price for this model, in US dollars per second of video.
pub const PRICE_PER_SECOND: f64 = 0.034;

const CREATE_PATH: &str = "/v1/models/heygen/v3/video-agent/runs";

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The bearer key it accepts.
    pub api_key: String,
    /// How long each of `queued`, `dispatching` and `running` lasts.
    pub step: Duration,
    /// The secret callbacks are signed with (`Runflow-Signature`); unsigned when `None`.
    pub callback_secret: Option<String>,
    /// The wait before the second callback attempt; the third waits twice as long.
    pub callback_backoff: Duration,
    /// How long one callback attempt may take before it counts as failed.
    pub callback_timeout: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_KEY.into(),
            step: Duration::from_millis(700),
            callback_secret: None,
            callback_backoff: Duration::from_secs(1),
            callback_timeout: Duration::from_secs(5),
        }
    }
}

/// The number of attempts Runflow makes to deliver a callback.
pub const CALLBACK_ATTEMPTS: u32 = 3;

/// One attempt to deliver a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The run the callback was about.
    pub run_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's HTTP status, or why no answer came.
    pub outcome: Result<u16, DeliveryFailure>,
}

/// Why a callback attempt brought no HTTP status back.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryFailure {
    /// Not sent: the emulator calls back only to http URLs on loopback, so that nothing it
    /// does leaves this machine. Trying again would change nothing.
    Refused,
    /// Sent, or tried, and failed: the connection, the exchange or the time limit, with why.
    Failed(String),
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => {
                f.write_str("not delivered: the emulator calls back only to http URLs on loopback")
            }
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// A request as the emulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path with its query string.
    pub path: String,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How a scripted run ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// With a video.
    Succeed,
    /// With `failed` and a failure code.
    Fail,
    /// With `partial_succeeded` and some outputs.
    PartialSucceed,
    /// Stuck in a status this client does not know.
    Unknown(String),
}

/// What the emulator does instead of (or besides) answering normally. Each fault applies to
/// the next request whose method and path start match, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and body (and `Retry-After`, if given); nothing is created.
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, sent byte for byte.
        body: Vec<u8>,
        /// A `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without answering, before doing anything.
    DropBeforeHandling,
    /// Handle the request (a create makes its run), then close the connection unanswered.
    DropAfterHandling,
    /// Handle the request, then send only the first half of the body and close.
    Truncate,
    /// Handle the request, then answer 200 with a body that is not JSON.
    Malformed,
    /// Handle the request, then answer 200 with a body of this many bytes.
    Oversized(usize),
    /// Answer with this status and a body of this many bytes, without handling the request
    /// (a gateway's error page gone wrong).
    OversizedError(u16, usize),
    /// A create makes a run that ends this way.
    End(Ending),
}

#[derive(Debug)]
struct ScriptedFault {
    method: Method,
    path_prefix: String,
    fault: Fault,
}

#[derive(Debug, Clone)]
struct StoredRun {
    id: String,
    created: Instant,
    created_at: SystemTime,
    input: Value,
    metadata: Value,
    client_ref: Value,
    callback_url: Value,
    ending: Ending,
    video_seconds: u32,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<String, StoredRun>,
    requests: Vec<RecordedRequest>,
    faults: VecDeque<ScriptedFault>,
    deliveries: Vec<Delivery>,
    deliver_twice: bool,
    corrupt_first_callback: bool,
    pending_callbacks: usize,
}

struct Shared {
    config: EmulatorConfig,
    base_url: String,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator. It stops when dropped.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Emulator {
    /// Starts an emulator on 127.0.0.1 with a free port.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Self> {
        Self::bind("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    /// Starts an emulator on `addr`.
    pub async fn bind(addr: SocketAddr, config: EmulatorConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the emulator to {addr}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            base_url: format!("http://{addr}"),
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = watch::channel(false);

        let server = shared.clone();
        // Longer than any client keeps an idle connection (the host's pool: 30 s), so the
        // client, not the emulator, closes it, and no poll races a closing connection.
        crate::serve::spawn(listener, stopped, Duration::from_secs(65), move |request| {
            handle(server.clone(), request)
        });

        Ok(Self { shared, addr, stop })
    }

    /// The base URL to give the component, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key the emulator accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// The number of runs created so far.
    pub fn run_count(&self) -> usize {
        self.shared.state().runs.len()
    }

    /// The `client_ref` of every run created, one entry per run.
    pub fn client_refs(&self) -> Vec<Option<String>> {
        self.shared
            .state()
            .runs
            .values()
            .map(|r| r.client_ref.as_str().map(str::to_string))
            .collect()
    }

    /// Applies `fault` to the next request with this method whose path starts with
    /// `path_prefix`.
    pub fn script(&self, method: &str, path_prefix: &str, fault: Fault) {
        self.shared.state().faults.push_back(ScriptedFault {
            method: method.parse().expect("a valid HTTP method"),
            path_prefix: path_prefix.into(),
            fault,
        });
    }

    /// Forgets every scripted fault not yet used.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// Creates `count` runs directly, without requests (for load tests), and returns their ids.
    pub fn seed_runs(&self, count: usize) -> Vec<String> {
        let mut state = self.shared.state();
        (0..count)
            .map(|i| {
                let run = StoredRun {
                    id: uuid::Uuid::now_v7().to_string(),
                    created: Instant::now(),
                    created_at: SystemTime::now(),
                    input: json!({"prompt": format!("Seeded video {i}")}),
                    metadata: Value::Null,
                    client_ref: Value::Null,
                    callback_url: Value::Null,
                    ending: Ending::Succeed,
                    video_seconds: 30,
                };
                let id = run.id.clone();
                state.runs.insert(id.clone(), run);
                id
            })
            .collect()
    }

    /// Every callback delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.state().deliveries.clone()
    }

    /// Waits until every callback in flight has been delivered or given up, at most `limit`.
    /// Returns whether none is left.
    pub async fn settle_callbacks(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.shared.state().pending_callbacks > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// After a callback is delivered, delivers it once more (as Runflow may).
    pub fn deliver_callbacks_twice(&self, twice: bool) {
        self.shared.state().deliver_twice = twice;
    }

    /// Signs the first attempt of each callback wrongly, so a checking receiver refuses it
    /// and the retry is exercised.
    pub fn corrupt_first_callback(&self, corrupt: bool) {
        self.shared.state().corrupt_first_callback = corrupt;
    }

    /// Scripts a fault for the next create request.
    pub fn script_create(&self, fault: Fault) {
        self.script("POST", CREATE_PATH, fault);
    }
}

impl Fault {
    /// An answer with this status and body (not handled: a create makes no run).
    pub fn answer(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Fault::Status {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    /// The same, with a `Retry-After` header.
    pub fn answer_after(status: u16, body: impl Into<Vec<u8>>, retry_after: &str) -> Self {
        Fault::Status {
            status,
            body: body.into(),
            retry_after: Some(retry_after.into()),
        }
    }
}

type EmulatorBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose by a scripted fault")
    }
}

impl std::error::Error for DropConnection {}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<EmulatorBody>, DropConnection> {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return Err(DropConnection),
    };
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body,
    };

    let fault = {
        let mut state = shared.state();
        state.requests.push(recorded.clone());
        let index = state
            .faults
            .iter()
            .position(|f| f.method == method && path.starts_with(&f.path_prefix));
        index.and_then(|i| state.faults.remove(i)).map(|f| f.fault)
    };

    match fault {
        Some(Fault::Status {
            status,
            body,
            retry_after,
        }) => {
            let mut response = text_response(status, "application/json", body);
            if let Some(value) = retry_after {
                if let Ok(value) = value.parse() {
                    response.headers_mut().insert("retry-after", value);
                }
            }
            return Ok(response);
        }
        Some(Fault::DropBeforeHandling) => return Err(DropConnection),
        Some(Fault::OversizedError(status, size)) => return Ok(oversized_error(status, size)),
        Some(Fault::Delay(wait)) => tokio::time::sleep(wait).await,
        _ => {}
    }

    let ending = match &fault {
        Some(Fault::End(ending)) => ending.clone(),
        _ => Ending::Succeed,
    };
    let response = route(&shared, &method, &path, &recorded, ending);

    match fault {
        Some(Fault::DropAfterHandling) => Err(DropConnection),
        Some(Fault::Truncate) => Ok(truncated(response).await),
        Some(Fault::Malformed) => Ok(text_response(
            200,
            "application/json",
            b"{\"id\": \"01936f0e-7a3c\", \"status_code\": \"queu".to_vec(),
        )),
        Some(Fault::Oversized(size)) => Ok(oversized(size)),
        _ => Ok(response),
    }
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    request: &RecordedRequest,
    ending: Ending,
) -> Response<EmulatorBody> {
    let (route_path, query) = path.split_once('?').unwrap_or((path, ""));

    // Generated files are public presigned URLs: no key needed.
    if method == Method::GET && route_path.starts_with("/files/") {
        return file(shared, route_path);
    }
    if route_path == "/v1/health" && method == Method::GET {
        return json_response(200, json!({"status": "ok"}));
    }

    let expected = format!("Bearer {}", shared.config.api_key);
    if request.header("authorization") != Some(expected.as_str()) {
        return error(401, "UNAUTHORIZED", "Missing or invalid API key.", None);
    }

    match (method, route_path) {
        (&Method::POST, CREATE_PATH) => create(shared, request, ending),
        (&Method::GET, "/v1/runs") => list(shared, query),
        (&Method::GET, p) if p.starts_with("/v1/runs/") => {
            let id = &p["/v1/runs/".len()..];
            let state = shared.state();
            match state.runs.get(id) {
                Some(run) => json_response(200, run_json(shared, run)),
                None => error(
                    404,
                    "RUN_NOT_FOUND",
                    &format!("Run {id} was not found."),
                    None,
                ),
            }
        }
        (_, CREATE_PATH) | (_, "/v1/runs") => {
            error(405, "METHOD_NOT_ALLOWED", "Method not allowed.", None)
        }
        _ => error(
            404,
            "NOT_FOUND",
            &format!("No route for {method} {route_path}."),
            None,
        ),
    }
}

fn create(
    shared: &Arc<Shared>,
    request: &RecordedRequest,
    ending: Ending,
) -> Response<EmulatorBody> {
    // Gateways in front of Runflow refuse chunked request bodies.
    if request.header("content-length").is_none() {
        return error(411, "LENGTH_REQUIRED", "Content-Length is required.", None);
    }
    let Some(Value::Object(body)) = request.json() else {
        return error(400, "BAD_REQUEST", "The body must be a JSON object.", None);
    };
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    if let Some(problems) = validate_input(&input) {
        return error(
            422,
            "VALIDATION_ERROR",
            "Request validation failed",
            Some(problems),
        );
    }
    let prompt = input["prompt"].as_str().unwrap_or_default();
    let run = StoredRun {
        id: uuid::Uuid::now_v7().to_string(),
        created: Instant::now(),
        created_at: SystemTime::now(),
        input: input.clone(),
        metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
        client_ref: body.get("client_ref").cloned().unwrap_or(Value::Null),
        callback_url: body.get("callback_url").cloned().unwrap_or(Value::Null),
        ending,
        video_seconds: video_length(prompt),
    };
    let answer = run_json(shared, &run);
    if let Some(url) = run.callback_url.as_str() {
        if !matches!(run.ending, Ending::Unknown(_)) {
            shared.state().pending_callbacks += 1;
            let (shared, id, url) = (shared.clone(), run.id.clone(), url.to_string());
            tokio::spawn(async move {
                send_callback(&shared, id, url).await;
                shared.state().pending_callbacks -= 1;
            });
        }
    }
    shared.state().runs.insert(run.id.clone(), run);
    json_response(201, answer)
}

/// Checks the model input as Runflow documents it; returns the per-field problems.
fn validate_input(input: &Value) -> Option<Value> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: &str| {
        problems.push(json!({"field": field, "message": message}));
    };
    let Some(input) = input.as_object() else {
        problem("input", "is required and must be an object");
        return Some(Value::Array(problems));
    };
    match input.get("prompt").and_then(Value::as_str) {
        None => problem("input.prompt", "is required"),
        Some(p) if p.trim().is_empty() => problem("input.prompt", "must not be empty"),
        Some(p) if p.chars().count() > 10_000 => {
            problem("input.prompt", "must be at most 10000 characters")
        }
        _ => {}
    }
    if let Some(o) = input.get("orientation") {
        if !matches!(o.as_str(), Some("landscape" | "portrait")) {
            problem("input.orientation", "must be one of: landscape, portrait");
        }
    }
    if let Some(urls) = input.get("file_urls") {
        match urls.as_array() {
            Some(list) if list.len() > 20 => problem("input.file_urls", "at most 20 files"),
            Some(list) if list.iter().all(Value::is_string) => {}
            _ => problem("input.file_urls", "must be a list of URLs"),
        }
    }
    for key in ["avatar", "voice", "style_id"] {
        if input.get(key).is_some_and(|v| !v.is_string()) {
            problem(&format!("input.{key}"), "must be a string");
        }
    }
    if input.get("incognito_mode").is_some_and(|v| !v.is_boolean()) {
        problem("input.incognito_mode", "must be a boolean");
    }
    (!problems.is_empty()).then_some(Value::Array(problems))
}

/// A made-up but plausible video length: about 2.5 words a second of narration.
fn video_length(prompt: &str) -> u32 {
    let words = prompt.split_whitespace().count() as u32;
    (words * 2).clamp(15, 180)
}

fn list(shared: &Shared, query: &str) -> Response<EmulatorBody> {
    let mut filters = Vec::new();
    let mut limit = 100usize;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "q" => {
                for term in value.split(" AND ") {
                    let Some((field, wanted)) = term.split_once(':') else {
                        return error(
                            400,
                            "INVALID_FILTER",
                            &format!("Bad filter term `{term}`."),
                            None,
                        );
                    };
                    if !matches!(field, "client_ref" | "status_code") {
                        return error(
                            400,
                            "INVALID_FILTER",
                            &format!("Unknown filter field `{field}`."),
                            None,
                        );
                    }
                    filters.push((field.to_string(), wanted.to_string()));
                }
            }
            "limit" => limit = value.parse::<usize>().unwrap_or(100).clamp(1, 500),
            _ => {}
        }
    }

    let state = shared.state();
    let items: Vec<Value> = state
        .runs
        .values()
        .rev()
        .map(|run| run_json(shared, run))
        .filter(|run| filters.iter().all(|(field, wanted)| run[field] == *wanted))
        .take(limit)
        .collect();
    json_response(
        200,
        json!({"items": items, "next_pq": null, "prev_pq": null}),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a run is, going by the emulator's clock.
fn status_of(shared: &Shared, run: &StoredRun) -> (&'static str, bool) {
    let steps = run.created.elapsed().as_nanos() / shared.config.step.as_nanos().max(1);
    match steps {
        0 => ("queued", false),
        1 => ("dispatching", false),
        2 => ("running", false),
        _ => match &run.ending {
            Ending::Succeed => ("succeeded", true),
            Ending::Fail => ("failed", true),
            Ending::PartialSucceed => ("partial_succeeded", true),
            Ending::Unknown(_) => ("unknown", false),
        },
    }
}

fn run_json(shared: &Shared, run: &StoredRun) -> Value {
    let (status, terminal) = status_of(shared, run);
    let step = shared.config.step;
    let started_at = (status != "queued").then(|| iso8601(run.created_at + step));
    let completed_at = terminal.then(|| iso8601(run.created_at + step * 3));
    let status_code = match &run.ending {
        Ending::Unknown(raw) if status == "unknown" => raw.clone(),
        _ => status.to_string(),
    };

    let mut out = Map::new();
    out.insert("id".into(), json!(run.id));
    out.insert("flow_id".into(), Value::Null);
    out.insert("model_id".into(), json!(MODEL_ID));
    out.insert("target_type".into(), json!("model"));
    out.insert("status_code".into(), json!(status_code));
    out.insert("source_code".into(), json!("api"));
    out.insert("input".into(), run.input.clone());
    out.insert("output".into(), Value::Null);
    out.insert("duration_ms".into(), Value::Null);
    out.insert("cost".into(), Value::Null);
    out.insert("cost_breakdown".into(), Value::Null);
    out.insert("client_ref".into(), run.client_ref.clone());
    out.insert("request_id".into(), json!(format!("req_{}", &run.id[24..])));
    out.insert("created_at".into(), json!(iso8601(run.created_at)));
    out.insert("started_at".into(), json!(started_at));
    out.insert("completed_at".into(), json!(completed_at));
    out.insert("callback_url".into(), run.callback_url.clone());
    out.insert("metadata".into(), run.metadata.clone());
    out.insert(
        "links".into(),
        json!({"self": format!("/v1/runs/{}", run.id)}),
    );
    out.insert("failure_code".into(), Value::Null);
    out.insert("failure_message".into(), Value::Null);
    out.insert("failure_stage_code".into(), Value::Null);

    if terminal {
        out.insert("duration_ms".into(), json!((step * 3).as_millis() as u64));
        match run.ending {
            Ending::Succeed | Ending::PartialSucceed => {
                let seconds = run.video_seconds;
                let mut outputs = vec![json!({
                    "type": "video",
                    "url": format!("{}/files/{}/video.mp4?sig=emulated", shared.base_url, run.id),
                    "duration": seconds,
                })];
                if run.ending == Ending::Succeed {
                    outputs.push(json!({
                        "type": "image",
                        "url": format!("{}/files/{}/thumbnail.jpg?sig=emulated", shared.base_url, run.id),
                    }));
                }
                out.insert(
                    "output".into(),
                    json!({
                        "outputs": outputs,
                        "seed": null,
                        "timing": {"inference_ms": (step * 2).as_millis() as u64},
                        "nsfw_detected": false,
                    }),
                );
                out.insert(
                    "cost".into(),
                    json!(format!("{:.4}", f64::from(seconds) * PRICE_PER_SECOND)),
                );
                out.insert(
                    "cost_breakdown".into(),
                    json!({"unit": "second", "quantity": seconds, "unit_price": "0.034"}),
                );
                if run.ending == Ending::PartialSucceed {
                    out.insert("failure_code".into(), json!("PARTIAL_OUTPUT"));
                    out.insert(
                        "failure_message".into(),
                        json!("The thumbnail could not be rendered."),
                    );
                    out.insert("failure_stage_code".into(), json!("postprocess"));
                }
            }
            Ending::Fail => {
                out.insert("cost".into(), json!("0"));
                out.insert("failure_code".into(), json!("PROVIDER_ERROR"));
                out.insert(
                    "failure_message".into(),
                    json!("HeyGen could not render the video."),
                );
                out.insert("failure_stage_code".into(), json!("inference"));
            }
            Ending::Unknown(_) => {}
        }
    }
    Value::Object(out)
}

/// Waits until the run ends, then POSTs the callback envelope as Runflow does: signed when
/// a secret is set, retried on non-2xx, timeouts and refused connections (3 attempts, waiting
/// one backoff then two).
async fn send_callback(shared: &Shared, run_id: String, url: String) {
    tokio::time::sleep(shared.config.step * 3).await;
    let Some(body) = callback_body(shared, &run_id) else {
        return;
    };
    let (twice, corrupt_first) = {
        let state = shared.state();
        (state.deliver_twice, state.corrupt_first_callback)
    };

    let mut delivered = false;
    for attempt in 1..=CALLBACK_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(shared.config.callback_backoff * (attempt - 1)).await;
        }
        let corrupt = corrupt_first && attempt == 1;
        let outcome = post_callback(shared, &url, &body, corrupt).await;
        let ok = matches!(outcome, Ok(200..=299));
        let refused = outcome == Err(DeliveryFailure::Refused);
        shared.state().deliveries.push(Delivery {
            run_id: run_id.clone(),
            attempt,
            outcome,
        });
        if ok {
            delivered = true;
            break;
        }
        if refused {
            // A URL off this machine stays off it: trying again changes nothing.
            break;
        }
    }
    if delivered && twice {
        let outcome = post_callback(shared, &url, &body, false).await;
        shared.state().deliveries.push(Delivery {
            run_id,
            attempt: CALLBACK_ATTEMPTS + 1,
            outcome,
        });
    }
}

/// The documented callback envelope for a finished run.
fn callback_body(shared: &Shared, run_id: &str) -> Option<Vec<u8>> {
    let run = shared.state().runs.get(run_id).cloned()?;
    let view = run_json(shared, &run);
    let (event, status) = match run.ending {
        Ending::Succeed => ("run.completed", "succeeded"),
        Ending::Fail => ("run.failed", "failed"),
        Ending::PartialSucceed => ("run.partial_succeeded", "partial_succeeded"),
        Ending::Unknown(_) => return None,
    };
    let output = if run.ending == Ending::Fail {
        json!({"error": {
            "code": view["failure_code"],
            "message": view["failure_message"],
            "stage": view["failure_stage_code"],
        }})
    } else {
        view["output"].clone()
    };
    let body = json!({
        "event": event,
        "run_id": run.id,
        "status": status,
        "output": output,
        "duration_ms": view["duration_ms"],
        "created_at": view["created_at"],
        "completed_at": view["completed_at"],
        "metadata": view["metadata"],
    });
    Some(body.to_string().into_bytes())
}

/// Signs a callback body: lowercase hex HMAC-SHA256, keyed with the secret string as is.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One delivery attempt. The emulator calls back only to loopback http URLs: it must never
/// send anything off this machine.
async fn post_callback(
    shared: &Shared,
    url: &str,
    body: &[u8],
    corrupt: bool,
) -> Result<u16, DeliveryFailure> {
    let failed = DeliveryFailure::Failed;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| failed(format!("bad callback URL: {e}")))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if uri.scheme_str() != Some("http") || !loopback {
        tracing::warn!(
            host,
            "the emulator does not deliver callbacks off this machine: give an http \
             callback URL on 127.0.0.1 (such as the one `heygen-agent listen` prints)"
        );
        return Err(DeliveryFailure::Refused);
    }
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();

    let mut request = Request::post(path)
        .header("host", format!("{host}:{port}"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("runflow-request-id", uuid::Uuid::now_v7().to_string())
        .header("user-agent", "Runflow-Emulator-Callbacks/1");
    if let Some(secret) = &shared.config.callback_secret {
        let mut signature = sign(secret, body);
        if corrupt {
            signature = sign(&format!("{secret}-wrong"), body);
        }
        request = request.header("runflow-signature", signature);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| failed(e.to_string()))?;

    let attempt = async {
        let addr = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let stream = tokio::net::TcpStream::connect((addr, port))
            .await
            .map_err(|e| format!("connection failed: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response.status().as_u16())
    };
    match tokio::time::timeout(shared.config.callback_timeout, attempt).await {
        Ok(outcome) => outcome.map_err(failed),
        Err(_) => Err(failed("timed out".into())),
    }
}

/// Serves a generated file: a small but real-looking MP4 (or JPEG) header and padding.
fn file(shared: &Shared, path: &str) -> Response<EmulatorBody> {
    let mut parts = path.trim_start_matches("/files/").splitn(2, '/');
    let (id, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let exists = shared.state().runs.contains_key(id);
    if !exists || !(name == "video.mp4" || name == "thumbnail.jpg") {
        return text_response(404, "text/plain", b"Not Found".to_vec());
    }
    let (content_type, mut bytes) = if name == "video.mp4" {
        (
            "video/mp4",
            b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec(),
        )
    } else {
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec())
    };
    bytes.extend(std::iter::repeat_n(0u8, 256 * 1024));
    text_response(200, content_type, bytes)
}

fn error(status: u16, code: &str, message: &str, errors: Option<Value>) -> Response<EmulatorBody> {
    json_response(
        status,
        json!({"code": code, "message": message, "errors": errors}),
    )
}

fn json_response(status: u16, body: Value) -> Response<EmulatorBody> {
    text_response(status, "application/json", body.to_string().into_bytes())
}

fn text_response(status: u16, content_type: &str, body: Vec<u8>) -> Response<EmulatorBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        content_type.parse().expect("a valid content type"),
    );
    response
}

fn full(body: Vec<u8>) -> EmulatorBody {
    http_body_util::Full::new(Bytes::from(body))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Sends the response's headers with its full `Content-Length`, then half the body, then
/// breaks the connection.
async fn truncated(response: Response<EmulatorBody>) -> Response<EmulatorBody> {
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    parts.headers.insert(
        "content-length",
        bytes.len().to_string().parse().expect("a number"),
    );
    let half = bytes.slice(..bytes.len() / 2);
    Response::from_parts(parts, BrokenBody { first: Some(half) }.boxed())
}

/// A 200 whose body is `size` bytes of a JSON string that never ends.
fn oversized(size: usize) -> Response<EmulatorBody> {
    let mut body = b"{\"id\": \"".to_vec();
    body.resize(size, b'x');
    text_response(200, "application/json", body)
}

/// An error status with a `size`-byte HTML body.
fn oversized_error(status: u16, size: usize) -> Response<EmulatorBody> {
    let mut body = b"<html>".to_vec();
    body.resize(size, b'x');
    text_response(status, "text/html", body)
}

/// A body that yields one chunk and then fails, so hyper aborts the connection mid-body.
struct BrokenBody {
    first: Option<Bytes>,
}

impl Body for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Poll::Ready(Some(Err(std::io::Error::other("truncated on purpose")))),
        }
    }
}

/// Formats a time as Runflow does: `2026-12-04T10:00:00.123456+00:00`.
pub fn iso8601(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_runflows() {
        let t = UNIX_EPOCH + Duration::from_micros(1_796_378_400_123_456);

        assert_eq!(iso8601(t), "2026-12-04T10:00:00.123456+00:00");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("client_ref%3Aorder-1"), "client_ref:order-1");
        assert_eq!(percent_decode("a+b%zz%"), "a b%zz%");
    }
}
