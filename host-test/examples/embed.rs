//! Embedding the host: load the component once, then create and wait for many runs from
//! concurrent tasks on one tokio runtime.
//!
//! Against the built-in emulator (no key needed):
//!
//! ```sh
//! cargo run --release -p host-test --example embed
//! ```
//!
//! Against Runflow, set `RUNFLOW_API_KEY` (and optionally `RUNFLOW_BASE_URL`) and pass
//! `--real`; each run is billed at $0.034 per second of video.

use std::sync::Arc;
use std::time::Duration;

use host_test::emulator::{Emulator, EmulatorConfig};
use host_test::json::status_name;
use host_test::runtime::{RunOptions, Runtime, RuntimeConfig, VideoRequest};
use host_test::wait::PollSchedule;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let real = std::env::args().any(|a| a == "--real");

    // Without --real, a local emulator plays Runflow and runs end in a few seconds.
    let (config, _emulator, schedule) = if real {
        let key = std::env::var("RUNFLOW_API_KEY")
            .map_err(|_| anyhow::anyhow!("--real needs RUNFLOW_API_KEY"))?;
        let base = std::env::var("RUNFLOW_BASE_URL").unwrap_or("https://api.runflow.io".into());
        (RuntimeConfig::new(key, base), None, PollSchedule::default())
    } else {
        let emulator = Emulator::start(EmulatorConfig::default()).await?;
        let config = RuntimeConfig::new(emulator.api_key(), emulator.base_url());
        (
            config,
            Some(emulator),
            PollSchedule::fixed(Duration::from_millis(300)),
        )
    };
    let config = RuntimeConfig {
        cache_dir: RuntimeConfig::default_cache_dir(),
        ..config
    };

    // Load (or fetch from the cache) once; every call after this only instantiates.
    let runtime = Arc::new(Runtime::embedded(config)?);

    let prompts = [
        "A 20-second welcome video for new customers of a bakery",
        "A 30-second explainer about how rooftop solar panels pay for themselves",
        "A 15-second teaser for a winter sale on hiking boots",
    ];
    let mut tasks = Vec::new();
    for (i, prompt) in prompts.into_iter().enumerate() {
        let (runtime, schedule) = (runtime.clone(), schedule.clone());
        tasks.push(tokio::spawn(async move {
            let request = VideoRequest {
                prompt: prompt.into(),
                orientation: None,
                avatar: None,
                voice: None,
                style_id: None,
                file_urls: vec![],
                incognito_mode: None,
            };
            // One client reference per intended video makes a retried create safe.
            let options = RunOptions {
                callback_url: None,
                metadata: None,
                client_ref: Some(format!("embed-example-{i}-{}", std::process::id())),
            };
            let run = runtime.create_run(&request, &options).await?;

            let deadline = tokio::time::Instant::now() + Duration::from_secs(30 * 60);
            let cancel = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let done = runtime
                .wait(&run.id, deadline, schedule, cancel, |now| {
                    println!("video {i}: {} is {}", now.id, status_name(&now.status));
                })
                .await?;
            anyhow::Ok(done)
        }));
    }

    for task in tasks {
        let run = task.await??;
        let video = run
            .outputs
            .first()
            .map_or("(no output)", |o| o.url.as_str());
        println!(
            "{} {}: {video} (cost ${})",
            run.id,
            status_name(&run.status),
            run.cost.unwrap_or_default()
        );
    }
    Ok(())
}
