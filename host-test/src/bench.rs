//! Benchmarks of the host, printed as a Markdown report: the component's calls against a
//! native Rust client making the same requests, instantiation, loading, throughput,
//! memory and size. Every figure comes from one run against one emulator on loopback.
//! Figures are printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::emulator::{Emulator, EmulatorConfig};
use crate::runtime::{Runtime, RuntimeConfig, COMPONENT_WASM};

/// Latency figures of one series of calls.
struct Series {
    median: Duration,
    p99: Duration,
}

impl Series {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The same GET the component makes, through a keep-alive client, parsed the same way.
struct Native {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Native {
    fn new(emulator: &Emulator) -> Self {
        Self {
            // Like the host's client for the component: no proxy variables read.
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a client with default settings builds"),
            base: emulator.base_url().into(),
            key: emulator.api_key().into(),
        }
    }

    async fn poll(&self, id: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .get(format!("{}/v1/runs/{id}", self.base))
            .header("authorization", format!("Bearer {}", self.key))
            .header("accept", "application/json")
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
        anyhow::ensure!(status.is_success(), "HTTP {status}");
        Ok(body["status_code"].as_str().unwrap_or_default().to_string())
    }
}

fn config(emulator: &Emulator, pooling: bool, cache: Option<&std::path::Path>) -> RuntimeConfig {
    let mut config = RuntimeConfig::new(emulator.api_key(), emulator.base_url());
    config.pooling = pooling;
    config.cache_dir = cache.map(Into::into);
    config
}

/// Polls one run `calls` times through each runtime and through the native client, taking
/// turns call by call so that all meet the same conditions, after a warm-up that leaves
/// connection set-up and lazy initialisation out of the figures.
async fn alternate(
    runtimes: &[&Runtime],
    native: &Native,
    id: &str,
    calls: usize,
) -> anyhow::Result<(Vec<Series>, Series)> {
    for _ in 0..50 {
        for runtime in runtimes {
            runtime.poll_run(id).await?;
        }
        native.poll(id).await?;
    }
    let mut components = vec![Vec::with_capacity(calls); runtimes.len()];
    let mut baseline = Vec::with_capacity(calls);
    for _ in 0..calls {
        for (runtime, samples) in runtimes.iter().zip(&mut components) {
            let started = Instant::now();
            runtime.poll_run(id).await?;
            samples.push(started.elapsed());
        }
        let started = Instant::now();
        native.poll(id).await?;
        baseline.push(started.elapsed());
    }
    Ok((
        components.into_iter().map(Series::of).collect(),
        Series::of(baseline),
    ))
}

/// The same comparison with the caller, both clients and the emulator on one thread (a
/// tokio current-thread runtime), where no step of a call waits for another thread to wake.
fn alternate_on_one_thread(
    calls: usize,
    cache: std::path::PathBuf,
) -> anyhow::Result<(Series, Series)> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let emulator = Emulator::start(EmulatorConfig::default()).await?;
                    let component = Runtime::embedded(config(&emulator, true, Some(&cache)))?;
                    let id = emulator.seed_runs(1).remove(0);
                    let (mut components, native) =
                        alternate(&[&component], &Native::new(&emulator), &id, calls).await?;
                    Ok((components.remove(0), native))
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the one-thread benchmark panicked"))?
    })
}

/// A table of poll latencies, each component row with its ratio to the native client.
fn print_polls(components: &[(&str, &Series)], native: &Series) {
    println!("| client | median | p99 | ratio to native, median | p99 |");
    println!("|---|---|---|---|---|");
    for (label, series) in components {
        println!(
            "| {label} | {} | {} | {:.2}x | {:.2}x |",
            us(series.median),
            us(series.p99),
            series.median.as_secs_f64() / native.median.as_secs_f64(),
            series.p99.as_secs_f64() / native.p99.as_secs_f64()
        );
    }
    println!(
        "| native Rust (reqwest, keep-alive) | {} | {} | | |\n",
        us(native.median),
        us(native.p99)
    );
}

/// One `parse-event` of a finished run's callback: a call that needs no network.
async fn parse_callback(runtime: &Runtime) -> anyhow::Result<()> {
    let callback = include_bytes!("../../component/tests/fixtures/callback-succeeded.json");
    runtime
        .parse_event(callback)
        .await?
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Runs every benchmark and prints the report to stdout.
pub async fn run(calls: usize) -> anyhow::Result<()> {
    let calls = calls.max(10);
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let cache = std::env::temp_dir().join(format!("heygen-bench-cache-{}", std::process::id()));
    let pooled = Arc::new(Runtime::embedded(config(&emulator, true, Some(&cache)))?);
    let mut returning = config(&emulator, true, Some(&cache));
    returning.keep_resident = 0;
    let returning = Arc::new(Runtime::embedded(returning)?);
    let unpooled = Runtime::embedded(config(&emulator, false, None))?;
    let native = Arc::new(Native::new(&emulator));
    let id = emulator.seed_runs(1).remove(0);
    let in_force = if pooled.keeps_pages_resident() {
        "in force on this machine"
    } else {
        "not in force on this machine, which lacks `PAGEMAP_SCAN` or has swap: both settings \
         below are then the same"
    };

    println!("# Benchmarks\n");
    println!("{}\n", machine());
    println!("Command: `cargo run --release -p host-test -- bench --calls {calls}`\n");
    println!(
        "Two settings of the component's runtime are compared throughout: pool slots that keep \
         the pages their guest wrote and reset them in place (\"pages kept\", the default, \
         {in_force}), and slots that return every page to the kernel after each call \
         (\"pages returned\", `keep_resident = 0`).\n"
    );

    let (components, baseline) = alternate(&[&pooled, &returning], &native, &id, calls).await?;
    println!("## One poll, end to end ({calls} sequential calls each)\n");
    println!(
        "The caller is the main thread, blocked on tokio's multi-thread runtime, where the \
         clients' connection tasks and the emulator run. The three clients take turns call by \
         call.\n"
    );
    print_polls(
        &[
            (
                "component (instantiate + `poll-run`), pages kept",
                &components[0],
            ),
            ("component, pages returned", &components[1]),
        ],
        &baseline,
    );

    let (one_component, one_native) = alternate_on_one_thread(calls, cache.clone())?;
    println!("## One poll, everything on one thread ({calls} sequential calls each)\n");
    println!("A tokio current-thread runtime runs the caller, both clients and the emulator.\n");
    print_polls(
        &[("component (instantiate + `poll-run`)", &one_component)],
        &one_native,
    );

    // A call that needs no network splits the component's own cost from the network's.
    let allocators = [
        ("pooling, pages kept (the default)", &*pooled),
        ("pooling, pages returned", &*returning),
        ("on demand", &unpooled),
    ];
    for _ in 0..50 {
        for (_, runtime) in &allocators {
            parse_callback(runtime).await?;
        }
    }
    // Each allocator takes its turn call by call, so all share the same conditions.
    let mut instantiated = vec![Vec::with_capacity(calls); allocators.len()];
    let mut called = vec![Vec::with_capacity(calls); allocators.len()];
    for _ in 0..calls {
        for (i, (_, runtime)) in allocators.iter().enumerate() {
            let started = Instant::now();
            runtime.instantiate_only().await?;
            instantiated[i].push(started.elapsed());
            let started = Instant::now();
            parse_callback(runtime).await?;
            called[i].push(started.elapsed());
        }
    }
    println!("## Instantiation alone, and with a call that needs no network\n");
    println!(
        "| allocator | instantiate: median | p99 | instantiate + `parse-event`: median | p99 |"
    );
    println!("|---|---|---|---|---|");
    for ((label, _), (instantiated, called)) in
        allocators.iter().zip(instantiated.into_iter().zip(called))
    {
        let (instantiated, called) = (Series::of(instantiated), Series::of(called));
        println!(
            "| {label} | {} | {} | {} | {} |",
            us(instantiated.median),
            us(instantiated.p99),
            us(called.median),
            us(called.p99)
        );
    }
    println!();

    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        drop(Runtime::embedded(config(&emulator, true, None))?);
        compiled.push(started.elapsed());
        let started = Instant::now();
        let runtime = Runtime::embedded(config(&emulator, true, Some(&cache)))?;
        cached.push(started.elapsed());
        anyhow::ensure!(
            runtime.loaded() == crate::cache::Loaded::FromCache,
            "the cache was not used"
        );
    }
    let (compiled, cached) = (Series::of(compiled), Series::of(cached));
    println!("## Loading the component (median of 5)\n");
    println!("| from | time |");
    println!("|---|---|");
    println!(
        "| `.wasm`, compiled with Cranelift | {} |",
        ms(compiled.median)
    );
    println!(
        "| disk cache (checked, deserialised) | {} |\n",
        ms(cached.median)
    );

    println!("## Throughput ({calls} polls per row)\n");
    println!(
        "| concurrent callers | component calls/s, pages kept | pages returned | native calls/s \
         | native / component (kept) |"
    );
    println!("|---|---|---|---|---|");
    let through_component = |runtime: &Arc<Runtime>, callers| {
        let (runtime, id) = (runtime.clone(), id.clone());
        throughput(callers, calls, move || {
            let (runtime, id) = (runtime.clone(), id.clone());
            async move {
                runtime
                    .poll_run(&id)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from)
            }
        })
    };
    for callers in [1usize, 16, 256] {
        let kept = through_component(&pooled, callers).await?;
        let returned = through_component(&returning, callers).await?;
        let baseline = throughput(callers, calls, {
            let (native, id) = (native.clone(), id.clone());
            move || {
                let (native, id) = (native.clone(), id.clone());
                async move { native.poll(&id).await.map(drop) }
            }
        })
        .await?;
        println!(
            "| {callers} | {kept:.0} | {returned:.0} | {baseline:.0} | {:.2}x |",
            baseline / kept
        );
    }
    println!();

    let ids = Arc::new(emulator.seed_runs(10_000));
    println!("## 10,000 runs polled by 1,000 concurrent callers\n");
    println!("| setting | polls succeeded | time | memory idle pool slots keep afterwards |");
    println!("|---|---|---|---|");
    for (label, runtime) in [("pages kept", &pooled), ("pages returned", &returning)] {
        let started = Instant::now();
        let failures = crowd(runtime, &ids).await?;
        let elapsed = started.elapsed();
        let resident = runtime.pool_resident_bytes().map_or("unknown".into(), |b| {
            format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0)
        });
        println!(
            "| {label} | {} of 10000 | {:.2} s | {resident} |",
            10_000 - failures,
            elapsed.as_secs_f64()
        );
    }
    println!();

    let before = resident_bytes();
    let mut live = Vec::new();
    for _ in 0..200 {
        live.push(pooled.live_instance().await?);
    }
    let after = resident_bytes();
    drop(live);
    println!("## Size\n");
    println!("| what | figure |");
    println!("|---|---|");
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "| resident memory per live instance (200 held) | {:.0} KiB |",
            after.saturating_sub(before) as f64 / 200.0 / 1024.0
        );
    }
    println!(
        "| component (`component` profile) | {:.1} KiB |",
        COMPONENT_WASM.len() as f64 / 1024.0
    );

    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

/// Polls 10,000 runs from 1,000 concurrent tasks, ten each; returns how many polls failed.
async fn crowd(runtime: &Arc<Runtime>, ids: &Arc<Vec<String>>) -> anyhow::Result<usize> {
    let mut tasks = Vec::new();
    for caller in 0..1000 {
        let (runtime, ids) = (runtime.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for id in &ids[caller * 10..caller * 10 + 10] {
                if runtime.poll_run(id).await.is_err() {
                    failures += 1;
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await?;
    }
    Ok(failures)
}

/// Calls per second with `callers` tasks sharing `total` calls.
async fn throughput<F, Fut>(callers: usize, total: usize, call: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let per_caller = (total / callers).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_caller {
                call().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((per_caller * callers) as f64 / started.elapsed().as_secs_f64())
}

/// Resident set size from /proc (Linux only).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// What the figures were measured on.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Machine: {cpu}, {cores} cores available, {} {}.",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
