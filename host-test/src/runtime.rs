//! Loading the component once and calling it many times, each call in a fresh, limited Store.
//!
//! The host, not the component, decides what a call may do:
//!
//! - **reach**: only the origin (scheme, host and port) of the configured base URL; any
//!   other outgoing request is denied and logged with the host it tried;
//! - **time**: a wall-clock limit on the whole call, network waits included, plus
//!   first-byte and between-bytes timeouts on every outgoing request;
//! - **CPU**: epoch interruption traps a guest that computes for too long;
//! - **memory**: a cap on the guest's linear memory.
//!
//! A call that breaks a limit, or whose guest traps, fails alone: its Store is dropped and
//! the [`Runtime`] goes on serving other calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// Types and glue generated from `wit/` for the host side.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "video-agent",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::runflow::heygen_video_agent::callbacks::{
    CallbackError, CallbackEvent, EventKind,
};
pub use bindings::exports::runflow::heygen_video_agent::runs::{
    ApiError, Failure, FieldProblem, Orientation, Output, Run, RunError, RunOptions, Status,
    TransportError, UnknownOutcome, VideoRequest,
};

/// The component built from this checkout, embedded in the host.
pub const COMPONENT_WASM: &[u8] = include_bytes!(env!("HEYGEN_COMPONENT_WASM"));

/// Where the build left the component file (for tools that read it).
pub const COMPONENT_PATH: &str = env!("HEYGEN_COMPONENT_WASM");

/// How often the engine's epoch advances; the CPU limit is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

const MIB: usize = 1024 * 1024;
/// The guard region after each pooled memory.
const GUARD_BYTES: usize = 2 * MIB;
/// The fewest bytes of memory a call may be limited to: the component starts at about 1.1 MiB.
const MIN_MEMORY: usize = 2 * MIB;
/// The largest memory a 32-bit wasm guest can address.
const MAX_MEMORY: usize = 4096 * MIB;
/// The most calls in flight a `Runtime` accepts.
const MAX_CALLS: usize = 10_000;

/// What each call may use, and where it may go.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// The Runflow API key, handed to the component in `RUNFLOW_API_KEY`.
    pub api_key: String,
    /// The Runflow base URL, handed to the component in `RUNFLOW_BASE_URL`. Its origin is
    /// the only one the component may reach.
    pub base_url: String,
    /// Further environment variables for the component (the retry settings, for example).
    pub env: Vec<(String, String)>,
    /// The most one call may take from instantiation to result, network waits included
    /// (time spent waiting for one of the `max_concurrent_calls` slots is not counted).
    pub call_timeout: Duration,
    /// The most CPU time the guest may spend computing in one call; at least 10 ms.
    pub cpu_limit: Duration,
    /// The largest linear memory the guest may grow to, in bytes: from 2 MiB (the
    /// component's memory starts at about 1.1 MiB) to 4 GiB.
    pub memory_limit: usize,
    /// How long opening a connection may take. The component's own limit
    /// (`RUNFLOW_CONNECT_TIMEOUT_MS`, 10 s unless set) applies when it is shorter.
    pub connect_timeout: Duration,
    /// How long an outgoing request may wait for the first byte of its answer.
    pub first_byte_timeout: Duration,
    /// How long an answer may pause between two bytes.
    pub between_bytes_timeout: Duration,
    /// The most calls in flight at once, from 1 to 10,000; more wait their turn. With
    /// pooling it also sizes the pool, which reserves `memory_limit` plus 2 MiB of address
    /// space per slot when the `Runtime` is made (about 66 GiB of address space, not memory,
    /// for the defaults).
    pub max_concurrent_calls: usize,
    /// Preallocate instance slots (the pooling allocator) so instantiation is a reuse, not
    /// a fresh allocation.
    pub pooling: bool,
    /// With pooling, on Linux 6.7 or later (the `PAGEMAP_SCAN` ioctl) and a machine with no
    /// swap: how many bytes of each pooled linear memory may stay resident between calls.
    /// When a call ends, wasmtime finds the pages its guest wrote and sets the lowest of them,
    /// up to this many bytes, back to their initial contents in place; the rest are returned
    /// to the kernel as usual. The next call in that slot then neither faults those pages in
    /// again nor pays for returning them. Once kept, a page stays resident while the
    /// `Runtime` lives, so the cost is memory: up to this much per memory slot used (about
    /// 1 GiB for 1000 slots at the default, in the worst case; this component's calls write
    /// far less). `0` returns every page after each call.
    ///
    /// Why not with swap: wasmtime 48's in-place reset skips a written page that is not in
    /// RAM at that moment, without returning it either, so the slot's next guest would start
    /// with what the previous one left there. With swap, a page of a call waiting on the
    /// network can be swapped out; without it, the same can happen only to a page that the
    /// kernel is moving at the instant of the reset (compaction), a window of microseconds.
    /// What such a page could show a guest is less than it already has: every guest of a
    /// `Runtime` is given its API key, with which it could read every run anyway. Set `0`
    /// where even that window matters.
    ///
    /// The machine is looked at once, when the `Runtime` is made (swap turned on later is
    /// not noticed); `Runtime::keeps_pages_resident` says whether the setting is in force.
    /// Larger values are capped at `memory_limit`, and the size is counted in whole pages.
    pub keep_resident: usize,
    /// Keep the precompiled component here, so later starts skip compilation.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Send the component's requests through one pooled keep-alive client shared by every
    /// call, instead of wasmtime's default of a new connection (and TLS handshake) per
    /// request.
    pub keep_alive: bool,
}

impl RuntimeConfig {
    /// Limits that suit interactive and automated use alike.
    pub fn new(api_key: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: base_url.into(),
            env: Vec::new(),
            call_timeout: Duration::from_secs(300),
            cpu_limit: Duration::from_secs(2),
            memory_limit: 64 * MIB,
            connect_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            max_concurrent_calls: 1000,
            pooling: true,
            keep_resident: MIB,
            cache_dir: None,
            keep_alive: true,
        }
    }

    /// Refuses settings no call could work with, naming the field and what it accepts.
    pub fn check(&self) -> anyhow::Result<()> {
        let field =
            |name: &str, problem: String| Err(anyhow::anyhow!("RuntimeConfig.{name} {problem}"));
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&self.memory_limit) {
            return field(
                "memory_limit",
                format!(
                    "is {} bytes: give from 2 MiB (the component's memory starts at about \
                     1.1 MiB) to 4 GiB",
                    self.memory_limit
                ),
            );
        }
        if !(1..=MAX_CALLS).contains(&self.max_concurrent_calls) {
            return field(
                "max_concurrent_calls",
                format!(
                    "is {}: give from 1 to {MAX_CALLS} (more callers than that wait their turn)",
                    self.max_concurrent_calls
                ),
            );
        }
        if self.cpu_limit < EPOCH_TICK {
            return field(
                "cpu_limit",
                format!(
                    "is {:?}: give at least 10 ms, the interval at which it is checked",
                    self.cpu_limit
                ),
            );
        }
        for (name, value) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("first_byte_timeout", self.first_byte_timeout),
            ("between_bytes_timeout", self.between_bytes_timeout),
        ] {
            if value.is_zero() {
                return field(
                    name,
                    "is zero: no call could finish; give a duration".into(),
                );
            }
        }
        Ok(())
    }

    /// The conventional cache directory: `$XDG_CACHE_HOME/heygen-agent` or
    /// `~/.cache/heygen-agent`, if either can be found.
    pub fn default_cache_dir() -> Option<std::path::PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })?;
        Some(base.join("heygen-agent"))
    }
}

// The key must never reach a log, so Debug leaves it out.
impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("api_key", &"<hidden>")
            .field("base_url", &self.base_url)
            .field("call_timeout", &self.call_timeout)
            .field("cpu_limit", &self.cpu_limit)
            .field("memory_limit", &self.memory_limit)
            .finish_non_exhaustive()
    }
}

/// Why a call produced no answer from the component.
#[derive(Debug)]
pub enum CallError {
    /// The component answered with one of its error cases.
    Run(RunError),
    /// The call ran past the wall-clock limit and was abandoned.
    TimedOut(Duration),
    /// The guest trapped, ran out of memory or CPU, or could not be instantiated.
    Trapped(String),
}

impl CallError {
    /// The name scripts see as `error.kind`: the WIT case name, or `host-timeout` /
    /// `host-trap` for failures of the call itself.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Run(e) => crate::json::error_kind(e),
            CallError::TimedOut(_) => "host-timeout",
            CallError::Trapped(_) => "host-trap",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Run(e) => f.write_str(&crate::json::error_message(e)),
            CallError::TimedOut(limit) => write!(
                f,
                "the call did not finish within {limit:?} and was stopped: check that the \
                 Runflow API is reachable, or raise the call timeout"
            ),
            CallError::Trapped(why) => write!(f, "the component failed: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A loaded component, ready to be called from many tasks at once.
pub struct Runtime {
    engine: Engine,
    pre: bindings::VideoAgentPre<HostState>,
    config: RuntimeConfig,
    origin: Arc<Origin>,
    ticker_stop: Arc<AtomicBool>,
    slots: Arc<tokio::sync::Semaphore>,
    loaded: crate::cache::Loaded,
    clients: Option<Arc<Clients>>,
    keeps_pages: bool,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Loads the component embedded in this host.
    pub fn embedded(config: RuntimeConfig) -> anyhow::Result<Self> {
        Self::from_bytes(COMPONENT_WASM, config)
    }

    /// Loads a component from a `.wasm` file.
    pub fn from_file(
        path: impl AsRef<std::path::Path>,
        config: RuntimeConfig,
    ) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes, config)
    }

    /// Compiles and links a component given as bytes.
    pub fn from_bytes(wasm: &[u8], config: RuntimeConfig) -> anyhow::Result<Self> {
        config.check()?;
        let origin = Arc::new(Origin::parse(&config.base_url)?);

        let keeps_pages = keeps_pages_resident(&config);
        tracing::debug!(keeps_pages, "pool slots keep the pages their guests wrote");
        let engine = Engine::new(&engine_config(&config, keeps_pages)).with_context(|| {
            if config.pooling {
                let per_slot = config.memory_limit as f64 + GUARD_BYTES as f64;
                format!(
                    "reserving the instance pool ({} slots of {:.0} MiB of address space, \
                     {:.1} GiB in all): lower RuntimeConfig.max_concurrent_calls or \
                     memory_limit, or set pooling to false",
                    config.max_concurrent_calls,
                    per_slot / MIB as f64,
                    per_slot * config.max_concurrent_calls as f64 / (1024.0 * MIB as f64)
                )
            } else {
                "configuring the engine".into()
            }
        })?;

        let (component, loaded) = match &config.cache_dir {
            Some(dir) => crate::cache::load(&engine, wasm, dir)?,
            None => (
                Component::new(&engine, wasm).context("compiling the component")?,
                crate::cache::Loaded::Compiled,
            ),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .context("linking WASI HTTP")?;
        // Pre-link the component once, so each call only instantiates.
        let pre = bindings::VideoAgentPre::new(
            linker
                .instantiate_pre(&component)
                .context("the component needs imports this host does not provide")?,
        )?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        let clients = config
            .keep_alive
            .then(|| Clients::new(&config).map(Arc::new))
            .transpose()?;

        Ok(Self {
            engine,
            pre,
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_calls)),
            config,
            origin,
            ticker_stop,
            loaded,
            clients,
            keeps_pages,
        })
    }

    /// Whether the component was compiled or came from the cache.
    pub fn loaded(&self) -> crate::cache::Loaded {
        self.loaded
    }

    /// Whether pool slots keep the pages their guests wrote (`RuntimeConfig::keep_resident`
    /// asked for it and this machine allows it).
    pub fn keeps_pages_resident(&self) -> bool {
        self.keeps_pages
    }

    /// Bytes that pool slots not in use keep resident (memories and tables), or `None`
    /// without pooling. Stays near zero unless pages are kept.
    pub fn pool_resident_bytes(&self) -> Option<usize> {
        let metrics = self.engine.pooling_allocator_metrics()?;
        Some(metrics.unused_memory_bytes_resident() + metrics.unused_table_bytes_resident())
    }

    /// Instantiates the component and keeps the instance alive until the result is dropped,
    /// for measuring what a live instance costs.
    pub async fn live_instance(&self) -> Result<LiveInstance, CallError> {
        let slot = self.slot().await;
        let mut store = self.new_store();
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Trapped(format!("instantiating: {e:#}")))?;
        Ok(LiveInstance {
            _store: store,
            _instance: instance,
            _slot: slot,
        })
    }

    /// Instantiates the component and drops the instance: the fixed cost of every call,
    /// exposed for benchmarks.
    pub async fn instantiate_only(&self) -> Result<(), CallError> {
        let _slot = self.slot().await;
        let mut store = self.new_store();
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| CallError::Trapped(format!("instantiating: {e:#}")))
    }

    /// The settings this runtime was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Calls `create-run` in a fresh instance.
    pub async fn create_run(
        &self,
        request: &VideoRequest,
        options: &RunOptions,
    ) -> Result<Run, CallError> {
        match self.call(Call::Create(request, options)).await? {
            Answer::Run(run) => run.map_err(CallError::Run),
            _ => unreachable!("create-run answers with a run"),
        }
    }

    /// Calls `poll-run` in a fresh instance.
    pub async fn poll_run(&self, run_id: &str) -> Result<Run, CallError> {
        match self.call(Call::Poll(run_id)).await? {
            Answer::Run(run) => run.map_err(CallError::Run),
            _ => unreachable!("poll-run answers with a run"),
        }
    }

    /// Calls `verify-signature`: the outer error is the call's, the inner the component's.
    pub async fn verify_signature(
        &self,
        body: &[u8],
        signature: &str,
        secrets: &[String],
    ) -> Result<Result<u32, CallbackError>, CallError> {
        match self.call(Call::Verify(body, signature, secrets)).await? {
            Answer::Verified(result) => Ok(result),
            _ => unreachable!("verify-signature answers with an index"),
        }
    }

    /// Calls `parse-event`: the outer error is the call's, the inner the component's.
    pub async fn parse_event(
        &self,
        body: &[u8],
    ) -> Result<Result<CallbackEvent, CallbackError>, CallError> {
        match self.call(Call::Parse(body)).await? {
            Answer::Event(result) => Ok(result),
            _ => unreachable!("parse-event answers with an event"),
        }
    }

    async fn call(&self, call: Call<'_>) -> Result<Answer, CallError> {
        let limit = self.config.call_timeout;
        // Waiting for a free slot is not part of the call: its clock starts once it has one.
        let _slot = self.slot().await;
        let work = async {
            let mut store = self.new_store();
            let guest = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| CallError::Trapped(format!("instantiating: {e:#}")))?;
            let runs = guest.runflow_heygen_video_agent_runs();
            let callbacks = guest.runflow_heygen_video_agent_callbacks();
            let answer = match call {
                Call::Create(request, options) => runs
                    .call_create_run(&mut store, request, options)
                    .await
                    .map(Answer::Run),
                Call::Poll(run_id) => runs
                    .call_poll_run(&mut store, run_id)
                    .await
                    .map(Answer::Run),
                Call::Verify(body, signature, secrets) => callbacks
                    .call_verify_signature(&mut store, body, signature, secrets)
                    .await
                    .map(Answer::Verified),
                Call::Parse(body) => callbacks
                    .call_parse_event(&mut store, body)
                    .await
                    .map(Answer::Event),
            };
            // The Store, and with it every resource of this call, is dropped here.
            answer.map_err(|trap| CallError::Trapped(describe_trap(&trap, &store)))
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(CallError::TimedOut(limit)),
        }
    }

    /// One of the `max_concurrent_calls` slots, held until dropped.
    async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    fn new_store(&self) -> Store<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        let mut env = vec![
            ("RUNFLOW_API_KEY", self.config.api_key.as_str()),
            ("RUNFLOW_BASE_URL", self.config.base_url.as_str()),
        ];
        // A variable in `config.env` replaces the one above, rather than appearing twice.
        for (name, value) in &self.config.env {
            env.retain(|(n, _)| n != name);
            env.push((name, value));
        }
        wasi.envs(&env);
        // No preopened directories, no sockets, no inherited stdio: the component needs none.
        wasi.allow_ip_name_lookup(false);
        wasi.allow_tcp(false);
        wasi.allow_udp(false);

        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OriginGuard {
                clients: self.clients.clone(),
                origin: self.origin.clone(),
                connect_timeout: self.config.connect_timeout,
                first_byte_timeout: self.config.first_byte_timeout,
                between_bytes_timeout: self.config.between_bytes_timeout,
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(self.config.memory_limit)
                .instances(4)
                .tables(20)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            cpu_ticks_left: ticks(self.config.cpu_limit),
            out_of_cpu: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);

        // Each tick that finds the guest running wasm costs one tick of its CPU allowance;
        // ticks spent waiting in the host (on the network) never reach this callback.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.cpu_ticks_left == 0 {
                state.out_of_cpu = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            state.cpu_ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }
}

/// The engine: epoch interruption for the CPU limit and, unless turned off, the pooling
/// allocator sized for `max_concurrent_calls` instances capped at `memory_limit` each.
fn engine_config(config: &RuntimeConfig, keeps_pages: bool) -> Config {
    let mut engine = Config::new();
    engine.epoch_interruption(true);
    if config.pooling {
        let slots = u32::try_from(config.max_concurrent_calls).unwrap_or(MAX_CALLS as u32);
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(8))
            .total_stacks(slots)
            .max_memory_size(config.memory_limit);
        if keeps_pages {
            pool.linear_memory_keep_resident(config.keep_resident.min(config.memory_limit))
                // One host page (wasmtime rounds up): this component's tables fit in one, and
                // a table that fits is zeroed whole, without the ioctl's page-skipping scan.
                .table_keep_resident(1)
                .pagemap_scan(wasmtime::Enabled::Yes);
        }
        engine.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        // Reserve only what the memory cap allows, so a thousand slots fit comfortably in
        // the address space.
        engine.memory_reservation(config.memory_limit as u64);
        engine.memory_guard_size(GUARD_BYTES as u64);
        engine.memory_reservation_for_growth(0);
    }
    engine
}

/// Whether pool slots keep their written pages (see `RuntimeConfig::keep_resident`). Without
/// the ioctl, keeping pages would mean zeroing all of them after every call, which costs
/// more than the page faults it saves; with swap, a swapped-out page would escape the reset.
fn keeps_pages_resident(config: &RuntimeConfig) -> bool {
    config.pooling
        && config.keep_resident > 0
        && wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
        && !swap_configured()
}

/// Whether this machine has swap, from `/proc/meminfo`; unknown counts as yes.
fn swap_configured() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return true;
    };
    info.lines()
        .find_map(|line| line.strip_prefix("SwapTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .is_none_or(|kib| kib > 0)
}

fn ticks(limit: Duration) -> u64 {
    (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

fn describe_trap(trap: &wasmtime::Error, store: &Store<HostState>) -> String {
    if store.data().out_of_cpu {
        return "it computed for longer than its CPU limit".into();
    }
    let text = format!("{trap:#}");
    if text.contains("memory") && text.contains("grow") || text.contains("resource limit") {
        return format!("it needed more memory than its limit ({text})");
    }
    text
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the runtime is dropped.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch thread");
}

/// An instance kept alive with its Store; dropping it frees both.
pub struct LiveInstance {
    _store: Store<HostState>,
    _instance: bindings::VideoAgent,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// One exported function and its arguments.
enum Call<'a> {
    Create(&'a VideoRequest, &'a RunOptions),
    Poll(&'a str),
    Verify(&'a [u8], &'a str, &'a [String]),
    Parse(&'a [u8]),
}

/// What an exported function returned.
enum Answer {
    Run(Result<Run, RunError>),
    Verified(Result<u32, CallbackError>),
    Event(Result<CallbackEvent, CallbackError>),
}

/// Everything one call's Store holds.
struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OriginGuard,
    limits: StoreLimits,
    cpu_ticks_left: u64,
    out_of_cpu: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A scheme, host and port that outgoing requests must match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Reads the origin of an http(s) URL.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let Ok(uri) = url.parse::<http::Uri>() else {
            bail!("the base URL `{url}` is not a valid URL: write it as https://host[:port]");
        };
        let Some(scheme) = uri.scheme_str().map(str::to_ascii_lowercase) else {
            bail!("the base URL `{url}` has no scheme: start it with https://");
        };
        if scheme != "http" && scheme != "https" {
            bail!("the base URL `{url}` must use http or https");
        }
        let Some(host) = uri.host() else {
            bail!("the base URL `{url}` has no host");
        };
        // The component refuses these on every call; refuse them once, here.
        if uri.query().is_some() || url.contains('#') || url.contains(char::is_whitespace) {
            bail!(
                "the base URL `{url}` must be a plain URL without query, fragment or spaces, \
                 e.g. https://api.runflow.io"
            );
        }
        let authority = uri.authority().map_or("", |a| a.as_str());
        if authority.contains('@') {
            bail!("the base URL `{url}` must name a host without user info");
        }
        if uri.path().trim_end_matches('/').rsplit('/').next() == Some("v1") {
            bail!(
                "the base URL `{url}` ends in the API version path: give the origin only \
                 (such as https://api.runflow.io); `/v1/...` is added to every request"
            );
        }
        // The port as written: `http::Uri` reads one past 65535 as no port at all.
        let written_port = authority
            .rsplit_once(':')
            .filter(|(_, port)| !port.contains(']'))
            .map(|(_, port)| port);
        let port = match written_port {
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => bail!("the base URL `{url}` has the port `{text}`: give one from 1 to 65535"),
            },
            None if scheme == "https" => 443,
            None => 80,
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let default_port = if scheme == "https" { 443 } else { 80 };
        scheme == self.scheme
            && uri.host().map(str::to_ascii_lowercase).as_deref() == Some(self.host.as_str())
            && uri.port_u16().unwrap_or(default_port) == self.port
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The keep-alive clients shared by every call. A client fixes its connect and between-bytes
/// timeouts, so there is one per pair the component asks for: in practice one, as the pair
/// comes from the component's settings. Past `MAX_CLIENTS` pairs, a request gets a client of
/// its own, with correct timeouts but no connection reuse.
struct Clients {
    by_timeouts: std::sync::Mutex<Vec<((Duration, Duration), reqwest::Client)>>,
}

const MAX_CLIENTS: usize = 8;

impl Clients {
    fn new(config: &RuntimeConfig) -> anyhow::Result<Self> {
        // The pair a component with default settings asks for, built now so that a client
        // that cannot be built fails the Runtime, not a call.
        let usual = (
            config.connect_timeout.min(Duration::from_secs(10)),
            config.between_bytes_timeout,
        );
        let client = Self::build(usual)?;
        Ok(Self {
            by_timeouts: std::sync::Mutex::new(vec![(usual, client)]),
        })
    }

    /// A client that never follows redirects (a redirect could lead past the allow-list)
    /// and ignores proxy variables (requests go only where the guard allowed).
    fn build((connect, between_bytes): (Duration, Duration)) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect)
            .read_timeout(between_bytes)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
    }

    fn get(&self, timeouts: (Duration, Duration)) -> Result<reqwest::Client, HttpError> {
        let mut all = self.by_timeouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, client)) = all.iter().find(|(pair, _)| *pair == timeouts) {
            return Ok(client.clone());
        }
        let client = Self::build(timeouts)
            .map_err(|e| HttpError::InternalError(Some(format!("building a client: {e}"))))?;
        if all.len() < MAX_CLIENTS {
            all.push((timeouts, client.clone()));
        }
        Ok(client)
    }
}

/// The outgoing-HTTP policy of one call: the allow-list and the timeouts.
struct OriginGuard {
    clients: Option<Arc<Clients>>,
    origin: Arc<Origin>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    between_bytes_timeout: Duration,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OriginGuard {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        if !self.origin.allows(request.uri()) {
            tracing::warn!(
                host = request.uri().host().unwrap_or("<none>"),
                allowed = %self.origin,
                "denied an outgoing request from the component to a host it may not reach"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }

        // The guest may shorten these, never lengthen them past the host's limits.
        let mut options = options.unwrap_or_default();
        let connect = shorter(options.connect_timeout, self.connect_timeout);
        let first_byte = shorter(options.first_byte_timeout, self.first_byte_timeout);
        let between_bytes = shorter(options.between_bytes_timeout, self.between_bytes_timeout);
        options.connect_timeout = Some(connect);
        options.first_byte_timeout = Some(first_byte);
        options.between_bytes_timeout = Some(between_bytes);

        let _ = fut;
        if let Some(clients) = &self.clients {
            return match clients.get((connect, between_bytes)) {
                Ok(client) => Box::new(send_pooled(client, request, first_byte)),
                Err(e) => Box::new(async { Err(e) }),
            };
        }
        Box::new(async move {
            use http_body_util::BodyExt;

            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

/// The largest request body the pooled client forwards; the component's are a few KiB.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// Sends through the pooled client. Errors are sorted as the default sender sorts them, so
/// the component can still tell a request that never left (connect errors) from one whose
/// answer was lost.
async fn send_pooled(
    client: reqwest::Client,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    use http_body_util::BodyExt;

    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let response = match tokio::time::timeout(first_byte, client.execute(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(sorted(&e)),
        Err(_) => return Err(HttpError::ConnectionReadTimeout),
    };
    let response =
        http::Response::from(response).map(|body| body.map_err(|e| sorted(&e)).boxed_unsync());
    Ok((response, Box::new(async { Ok(()) })))
}

fn sorted(error: &reqwest::Error) -> HttpError {
    if error.is_connect() && error.is_timeout() {
        HttpError::ConnectionTimeout
    } else if error.is_connect() {
        connect_failure(error)
    } else if error.is_timeout() {
        HttpError::ConnectionReadTimeout
    } else {
        HttpError::ConnectionTerminated
    }
}

/// Why a connection could not be made, read from the error's causes: a refused or
/// unreachable address, a failed name lookup, or (once TCP connected) a failed TLS handshake.
fn connect_failure(error: &(dyn std::error::Error + 'static)) -> HttpError {
    use std::io::ErrorKind;

    // The outermost error's text ends with the request URL, which may contain any word;
    // only its causes are read.
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string().to_ascii_lowercase();
        // hyper-util reports a failed lookup as "dns error: ..." with no typed cause.
        if text.starts_with("dns error") {
            return HttpError::DnsError {
                rcode: None,
                info_code: None,
            };
        }
        if text.contains("certificate") {
            return HttpError::TlsCertificateError;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return HttpError::ConnectionRefused,
                ErrorKind::TimedOut => return HttpError::ConnectionTimeout,
                ErrorKind::HostUnreachable => return HttpError::DestinationUnavailable,
                ErrorKind::NetworkUnreachable => return HttpError::DestinationIpUnroutable,
                // The TCP connection was made, but what came back was not a TLS handshake.
                ErrorKind::InvalidData => return HttpError::TlsProtocolError,
                _ => {}
            }
            // An io::Error's `source` skips the error it wraps; look inside it instead.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = current.source();
    }
    HttpError::ConnectionRefused
}

fn shorter(guest: Option<Duration>, host: Duration) -> Duration {
    guest.map_or(host, |g| g.min(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_every_call_would_refuse_are_refused_at_once() {
        for (url, named) in [
            ("http://127.0.0.1:8080?x=1", "query"),
            ("http://127.0.0.1:8080/#top", "fragment"),
            ("http://user:pw@127.0.0.1:8080", "user info"),
            ("http://127.0.0.1:99999", "`99999`"),
            ("http://127.0.0.1:0", "`0`"),
            ("https://gw.example.com/runflow/v1/", "version path"),
            ("ftp://127.0.0.1", "http or https"),
        ] {
            let refused = Origin::parse(url).map(|o| o.to_string());
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains(named)),
                "{url}: {refused:?}"
            );
        }
        for (url, origin) in [
            ("https://api.runflow.io/", "https://api.runflow.io:443"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            (
                "https://gw.example.com/v1/proxy",
                "https://gw.example.com:443",
            ),
        ] {
            assert_eq!(Origin::parse(url).unwrap().to_string(), origin);
        }
    }

    #[test]
    fn origins_match_on_scheme_host_and_port() {
        let origin = Origin::parse("http://127.0.0.1:8080/base").unwrap();

        assert!(origin.allows(&"http://127.0.0.1:8080/v1/runs/x".parse().unwrap()));
        assert!(!origin.allows(&"http://127.0.0.1:8081/v1/runs/x".parse().unwrap()));
        assert!(!origin.allows(&"https://127.0.0.1:8080/".parse().unwrap()));
        assert!(!origin.allows(&"http://169.254.169.254/latest".parse().unwrap()));
        assert_eq!(Origin::parse("https://api.runflow.io").unwrap().port, 443);
    }
}
