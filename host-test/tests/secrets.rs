//! The API key lives in the host's memory and the component's environment only: no log line,
//! error, JSON output or message of the tool may contain it, whatever goes wrong.

mod common;

use std::time::Duration;

use common::{no_options, prompt, with_ref};
use host_test::emulator::{Emulator, EmulatorConfig, Fault};
use host_test::json::error_json;
use host_test::runtime::{CallError, Runtime, RuntimeConfig};

const KEY: &str = "sk_live_SCAN_me_7d1e0f3b";
const WRONG_KEY: &str = "sk_live_WRONG_9a8b7c6d";

fn describe(result: Result<impl std::fmt::Debug, CallError>) -> String {
    match result {
        Ok(v) => format!("{v:?}"),
        Err(e) => {
            let json = match &e {
                CallError::Run(run_error) => error_json(run_error).to_string(),
                _ => String::new(),
            };
            format!("{e} | {e:?} | {json}")
        }
    }
}

#[tokio::test]
async fn no_log_line_or_error_ever_contains_the_key() -> anyhow::Result<()> {
    let logs = common::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let emulator = Emulator::start(EmulatorConfig {
        api_key: KEY.into(),
        step: common::STEP,
        ..EmulatorConfig::default()
    })
    .await?;
    let config = |key: &str| {
        let mut config = RuntimeConfig::new(key, emulator.base_url());
        config.env = common::fast_retries();
        config
    };
    let runtime = Runtime::embedded(config(KEY))?;
    let wrong = Runtime::embedded(config(WRONG_KEY))?;
    let echo = |status: u16| {
        Fault::answer(
            status,
            format!(r#"{{"code":"ECHO","message":"you sent Bearer {KEY}"}}"#).into_bytes(),
        )
    };
    let mut seen = vec![format!("{:?}", config(KEY))];

    let run = runtime
        .create_run(&prompt("x"), &with_ref("scan-1"))
        .await?;
    seen.push(describe(runtime.poll_run(&run.id).await));
    seen.push(describe(wrong.poll_run(&run.id).await));
    seen.push(describe(
        wrong.create_run(&prompt("x"), &no_options()).await,
    ));
    for status in [400, 401, 422, 500] {
        emulator.script("GET", "/v1/runs/", echo(status));
        seen.push(describe(runtime.poll_run(&run.id).await));
    }
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(
            502,
            format!("<html>Authorization: Bearer {KEY}</html>").into_bytes(),
        ),
    );
    seen.push(describe(runtime.poll_run(&run.id).await));
    // A 2xx that is not a run, and an error whose code and field details echo the key in
    // another letter case.
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(200, format!("garbage Bearer {KEY}").into_bytes()),
    );
    seen.push(describe(runtime.poll_run(&run.id).await));
    let upper = KEY.to_uppercase();
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(
            422,
            format!(r#"{{"code":"{upper}","errors":[{{"field":"{KEY}","message":"{upper}"}}]}}"#)
                .into_bytes(),
        ),
    );
    seen.push(describe(runtime.poll_run(&run.id).await));
    emulator.script_create(Fault::DropAfterHandling);
    seen.push(describe(
        runtime.create_run(&prompt("x"), &no_options()).await,
    ));
    let elsewhere = Runtime::embedded({
        let mut c = config(KEY);
        c.env
            .push(("RUNFLOW_BASE_URL".into(), "http://localhost:9".into()));
        c
    })?;
    seen.push(describe(elsewhere.poll_run("r").await));
    let slow = Runtime::embedded({
        let mut c = config(KEY);
        c.call_timeout = Duration::from_millis(100);
        c
    })?;
    emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_secs(1)));
    seen.push(describe(slow.poll_run(&run.id).await));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone())?;
    for text in seen.iter().chain([&logs]) {
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains(&KEY.to_ascii_lowercase()),
            "the key leaked: {text}"
        );
        assert!(!text.contains(WRONG_KEY), "the wrong key leaked: {text}");
    }
    assert!(seen.len() > 10);
    Ok(())
}

#[tokio::test]
async fn the_tool_never_prints_the_key() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig {
        api_key: KEY.into(),
        step: common::STEP,
        ..EmulatorConfig::default()
    })
    .await?;
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(400, format!("echo: Bearer {KEY}").into_bytes()),
    );
    let base = emulator.base_url().to_string();
    let tool = |args: &'static [&'static str], key: &'static str| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_heygen-agent"))
                .args(args)
                .env("RUNFLOW_API_KEY", key)
                .env("RUNFLOW_BASE_URL", base)
                .env("RUST_LOG", "trace")
                .output()
                .expect("running heygen-agent")
        })
    };

    let outputs = [
        tool(&["--json", "poll", "r-1"], KEY).await?,
        tool(&["poll", "r-1"], KEY).await?,
        tool(&["--json", "create", "A video"], WRONG_KEY).await?,
        tool(&["create", "A video"], WRONG_KEY).await?,
        tool(&["run", "--timeout", "5", "A video"], KEY).await?,
    ];

    for out in outputs {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(KEY) && !text.contains(WRONG_KEY),
            "the key leaked: {text}"
        );
    }
    Ok(())
}
