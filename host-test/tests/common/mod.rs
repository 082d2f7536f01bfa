//! Helpers shared by the integration tests: an emulator on a free loopback port and a
//! runtime pointed at it, running the real component.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::Duration;

use host_test::emulator::{Emulator, EmulatorConfig};
use host_test::runtime::{Run, RunOptions, Runtime, RuntimeConfig, VideoRequest};

/// A short step so a run ends in well under a second.
pub const STEP: Duration = Duration::from_millis(40);

/// Starts an emulator and a runtime that talks to it with the right key and fast retries.
pub async fn setup() -> (Emulator, Runtime) {
    let emulator = Emulator::start(EmulatorConfig {
        step: STEP,
        ..EmulatorConfig::default()
    })
    .await
    .expect("starting the emulator");
    let runtime = runtime_for(&emulator, emulator.api_key());
    (emulator, runtime)
}

/// A runtime for `emulator` that sends `key`, with retries shortened for tests.
pub fn runtime_for(emulator: &Emulator, key: &str) -> Runtime {
    runtime_with(emulator, |config| config.api_key = key.into())
}

/// A runtime for `emulator` with fast retries and whatever `adjust` changes.
pub fn runtime_with(emulator: &Emulator, adjust: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::new(emulator.api_key(), emulator.base_url());
    config.env = fast_retries();
    adjust(&mut config);
    Runtime::embedded(config).expect("loading the component")
}

/// Retry settings that keep the same rules but wait milliseconds instead of seconds.
pub fn fast_retries() -> Vec<(String, String)> {
    vec![
        ("RUNFLOW_RETRY_BASE_DELAY_MS".into(), "5".into()),
        ("RUNFLOW_RETRY_MAX_DELAY_MS".into(), "50".into()),
    ]
}

/// A request with only a prompt.
pub fn prompt(text: &str) -> VideoRequest {
    VideoRequest {
        prompt: text.into(),
        orientation: None,
        avatar: None,
        voice: None,
        style_id: None,
        file_urls: vec![],
        incognito_mode: None,
    }
}

/// Options with nothing set.
pub fn no_options() -> RunOptions {
    RunOptions {
        callback_url: None,
        metadata: None,
        client_ref: None,
    }
}

/// Options with only a client reference.
pub fn with_ref(client_ref: &str) -> RunOptions {
    RunOptions {
        client_ref: Some(client_ref.into()),
        ..no_options()
    }
}

/// Polls until the run is terminal, failing the test after a few seconds.
pub async fn wait_until_terminal(runtime: &Runtime, id: &str) -> Run {
    for _ in 0..200 {
        let run = runtime.poll_run(id).await.expect("polling the run");
        if run.terminal {
            return run;
        }
        tokio::time::sleep(STEP / 2).await;
    }
    panic!("run {id} did not end");
}

/// Collects every log line the host writes while a test runs.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
