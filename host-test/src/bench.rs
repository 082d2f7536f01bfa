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
            client: reqwest::Client::new(),
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

/// Polls one run `calls` times through the component and through the native client,
/// alternating call by call so both meet the same conditions, after a warm-up that leaves
/// connection set-up and lazy initialisation out of the figures.
async fn alternate(
    runtime: &Runtime,
    native: &Native,
    id: &str,
    calls: usize,
) -> anyhow::Result<(Series, Series)> {
    for _ in 0..50 {
        runtime.poll_run(id).await?;
        native.poll(id).await?;
    }
    let mut component = Vec::with_capacity(calls);
    let mut baseline = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        runtime.poll_run(id).await?;
        component.push(started.elapsed());
        let started = Instant::now();
        native.poll(id).await?;
        baseline.push(started.elapsed());
    }
    Ok((Series::of(component), Series::of(baseline)))
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
                    alternate(&component, &Native::new(&emulator), &id, calls).await
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the one-thread benchmark panicked"))?
    })
}

/// Runs every benchmark and prints the report to stdout.
pub async fn run(calls: usize) -> anyhow::Result<()> {
    let calls = calls.max(10);
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let cache = std::env::temp_dir().join(format!("heygen-bench-cache-{}", std::process::id()));
    let pooled = Arc::new(Runtime::embedded(config(&emulator, true, Some(&cache)))?);
    let unpooled = Runtime::embedded(config(&emulator, false, None))?;
    let native = Arc::new(Native::new(&emulator));
    let id = emulator.seed_runs(1).remove(0);

    println!("# Benchmarks\n");
    println!("{}\n", machine());
    println!("Command: `cargo run --release -p host-test -- bench --calls {calls}`\n");

    let (component, baseline) = alternate(&pooled, &native, &id, calls).await?;
    // The same instantiate-and-call path with no network, to split the component's cost.
    let callback = include_bytes!("../../component/tests/fixtures/callback-succeeded.json");
    let mut offline = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        pooled
            .parse_event(callback)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        offline.push(started.elapsed());
    }
    let offline = Series::of(offline);
    println!("## One poll, end to end ({calls} sequential calls each)\n");
    println!(
        "The caller is the main thread, blocked on tokio's multi-thread runtime, where the \
         clients' connection tasks and the emulator run.\n"
    );
    println!("| client | median | p99 |");
    println!("|---|---|---|");
    println!(
        "| component (instantiate + `poll-run`) | {} | {} |",
        us(component.median),
        us(component.p99)
    );
    println!(
        "| native Rust (reqwest, keep-alive) | {} | {} |",
        us(baseline.median),
        us(baseline.p99)
    );
    println!(
        "| component, no network (instantiate + `parse-event` of a callback) | {} | {} |",
        us(offline.median),
        us(offline.p99)
    );
    println!(
        "| ratio component / native | {:.2}x | {:.2}x |\n",
        component.median.as_secs_f64() / baseline.median.as_secs_f64(),
        component.p99.as_secs_f64() / baseline.p99.as_secs_f64()
    );

    // Each allocator alternates with the others call by call, so they share conditions.
    let (one_component, one_native) = alternate_on_one_thread(calls, cache.clone())?;
    println!("## One poll, everything on one thread ({calls} sequential calls each)\n");
    println!("A tokio current-thread runtime runs the caller, both clients and the emulator.\n");
    println!("| client | median | p99 |");
    println!("|---|---|---|");
    println!(
        "| component (instantiate + `poll-run`) | {} | {} |",
        us(one_component.median),
        us(one_component.p99)
    );
    println!(
        "| native Rust (reqwest, keep-alive) | {} | {} |",
        us(one_native.median),
        us(one_native.p99)
    );
    println!(
        "| ratio component / native | {:.2}x | {:.2}x |\n",
        one_component.median.as_secs_f64() / one_native.median.as_secs_f64(),
        one_component.p99.as_secs_f64() / one_native.p99.as_secs_f64()
    );

    let mut returned = config(&emulator, true, None);
    returned.keep_resident = 0;
    let allocators = [
        (
            "pooling, written pages reset in place (the default)",
            &*pooled,
        ),
        (
            "pooling, pages returned to the kernel",
            &Runtime::embedded(returned)?,
        ),
        ("on demand", &unpooled),
    ];
    let mut instantiated = vec![Vec::with_capacity(calls); allocators.len()];
    let mut called = vec![Vec::with_capacity(calls); allocators.len()];
    for _ in 0..calls {
        for (i, (_, runtime)) in allocators.iter().enumerate() {
            let started = Instant::now();
            runtime.instantiate_only().await?;
            instantiated[i].push(started.elapsed());
            let started = Instant::now();
            runtime
                .parse_event(callback)
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            called[i].push(started.elapsed());
        }
    }
    println!(
        "## Instantiation alone, and with a call that needs no network
"
    );
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
    if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        println!(
            "This kernel has no `PAGEMAP_SCAN` ioctl, so the first two rows are the same \
             setting.\n"
        );
    }

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
    println!("| concurrent callers | component calls/s | native calls/s | ratio |");
    println!("|---|---|---|---|");
    for callers in [1usize, 16, 256] {
        let component = throughput(callers, calls, {
            let (runtime, id) = (pooled.clone(), id.clone());
            move || {
                let (runtime, id) = (runtime.clone(), id.clone());
                async move {
                    runtime
                        .poll_run(&id)
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from)
                }
            }
        })
        .await?;
        let baseline = throughput(callers, calls, {
            let (native, id) = (native.clone(), id.clone());
            move || {
                let (native, id) = (native.clone(), id.clone());
                async move { native.poll(&id).await.map(drop) }
            }
        })
        .await?;
        println!(
            "| {callers} | {component:.0} | {baseline:.0} | {:.2}x |",
            baseline / component
        );
    }
    println!();

    let ids = Arc::new(emulator.seed_runs(10_000));
    let before_crowd = resident_bytes();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..1000 {
        let (runtime, ids) = (pooled.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..10 {
                if runtime.poll_run(&ids[caller * 10 + i]).await.is_err() {
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
    let after_crowd = resident_bytes();
    println!("## 10,000 runs polled by 1,000 concurrent callers\n");
    println!(
        "{} of 10000 polls succeeded ({failures} failed) in {:.2} s.\n",
        10_000 - failures,
        started.elapsed().as_secs_f64()
    );

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
    if let (Some(before), Some(after)) = (before_crowd, after_crowd) {
        println!(
            "| resident memory gained over the 1,000-caller run, measured after every call \
             ended (fiber stacks, pool slots' kept pages, buffers) | {:.1} MiB |",
            after.saturating_sub(before) as f64 / 1024.0 / 1024.0
        );
    }
    println!(
        "| component (`component` profile) | {:.1} KiB |",
        COMPONENT_WASM.len() as f64 / 1024.0
    );

    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
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
