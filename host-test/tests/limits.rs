//! The host's limits: memory, CPU and wall clock per call, the origin allow-list, the
//! pre-compiled cache and many calls at once. A call that breaks a limit fails alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{no_options, prompt, runtime_with, setup};
use host_test::cache::Loaded;
use host_test::emulator::Fault;
use host_test::runtime::{CallError, Run, RunError, Runtime, RuntimeConfig};
use host_test::wait::{PollSchedule, WaitError};

fn offline(adjust: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::new("", "https://api.runflow.io");
    adjust(&mut config);
    Runtime::embedded(config).expect("loading the component")
}

fn is_trap(result: &Result<impl std::fmt::Debug, CallError>, needle: &str) -> bool {
    matches!(result, Err(CallError::Trapped(why)) if why.contains(needle))
}

#[tokio::test]
async fn a_guest_over_its_memory_cap_fails_alone() -> anyhow::Result<()> {
    let runtime = offline(|c| c.memory_limit = 8 * 1024 * 1024);
    let huge = vec![b'a'; 16 * 1024 * 1024];

    let over = runtime.parse_event(&huge).await;
    let after = runtime
        .parse_event(br#"{"run_id": "r", "status": "succeeded"}"#)
        .await?;

    assert!(is_trap(&over, "memory"), "{over:?}");
    assert!(after.is_ok());
    Ok(())
}

/// One pool slot serves every call here, so each call starts in the memory the last one
/// left, with written pages reset in place (the default) or returned to the kernel. After a
/// call that wrote a few MiB, and after one that trapped mid-parse at its memory cap, the
/// slot still gives the answer a fresh runtime gives. (That nothing written survives is
/// checked byte for byte in tests/isolation.rs.)
#[tokio::test]
async fn a_reused_pool_slot_starts_clean_after_heavy_use_and_after_a_trap() -> anyhow::Result<()> {
    let event =
        br#"{"run_id": "r", "status": "succeeded", "outputs": {"video_url": "https://v/x.mp4"}}"#;
    let fresh = format!("{:?}", offline(|_| {}).parse_event(event).await?);
    for keep_resident in [1024 * 1024, 0] {
        let runtime = offline(|c| {
            c.keep_resident = keep_resident;
            c.max_concurrent_calls = 1;
            c.memory_limit = 8 * 1024 * 1024;
        });
        let big = format!(
            r#"{{"run_id": "{}", "status": "running"}}"#,
            "b".repeat(1_500_000)
        );

        let heavy = runtime.parse_event(big.as_bytes()).await?;
        let again = format!("{:?}", runtime.parse_event(event).await?);
        let too_big = format!(r#"{{"run_id": "{}"}}"#, "t".repeat(3_000_000));
        let over = runtime.parse_event(too_big.as_bytes()).await;
        let after_trap = format!("{:?}", runtime.parse_event(event).await?);

        assert!(heavy.is_ok(), "{keep_resident}: {heavy:?}");
        assert!(is_trap(&over, "memory"), "{keep_resident}: {over:?}");
        assert_eq!(
            again, fresh,
            "after a heavy call, keep_resident {keep_resident}"
        );
        assert_eq!(
            after_trap, fresh,
            "after a trap, keep_resident {keep_resident}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_guest_over_its_cpu_cap_is_interrupted_while_others_carry_on() -> anyhow::Result<()> {
    let runtime = Arc::new(offline(|c| {
        c.cpu_limit = Duration::from_millis(20);
        c.memory_limit = 512 * 1024 * 1024;
    }));
    let huge = vec![b'a'; 128 * 1024 * 1024];
    let secrets = vec!["whsec_x".to_string()];
    let signature = "0".repeat(64);

    let busy = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.verify_signature(&huge, &signature, &secrets).await })
    };
    let mut quick = Vec::new();
    for _ in 0..20 {
        quick.push(runtime.parse_event(br#"{"run_id": "r"}"#).await);
    }
    let busy = busy.await?;

    assert!(is_trap(&busy, "CPU"), "{busy:?}");
    assert!(quick.iter().all(|r| matches!(r, Ok(Ok(_)))));
    Ok(())
}

#[tokio::test]
async fn a_call_past_its_wall_clock_limit_is_stopped_alone() -> anyhow::Result<()> {
    let (emulator, _) = setup().await;
    let runtime = runtime_with(&emulator, |c| c.call_timeout = Duration::from_millis(300));
    let run = runtime.create_run(&prompt("x"), &no_options()).await?;
    emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_secs(3)));

    let slow = {
        let (runtime, id) = (Arc::new(runtime), run.id.clone());
        let task = {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.poll_run(&id).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let meanwhile = runtime.poll_run(&run.id).await;
        (task.await?, meanwhile)
    };

    assert!(
        matches!(slow.0, Err(CallError::TimedOut(_))),
        "{:?}",
        slow.0
    );
    assert!(slow.1.is_ok(), "{:?}", slow.1);
    Ok(())
}

#[tokio::test]
async fn requests_to_any_other_origin_are_denied_and_logged() {
    let logs = common::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (emulator, _) = setup().await;
    // Same server, another host name: the origin differs, so the host must refuse.
    let elsewhere = emulator.base_url().replace("127.0.0.1", "localhost");
    let runtime = runtime_with(&emulator, |c| {
        c.env.push(("RUNFLOW_BASE_URL".into(), elsewhere))
    });

    let error = runtime.poll_run("r-1").await.unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentRequestDenied(m)) if m.contains("localhost")),
        "{error:?}"
    );
    assert!(emulator.requests().is_empty());
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("denied an outgoing request") && logs.contains("localhost"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_compiled_component_is_cached_checked_and_rebuilt_when_corrupt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let with_cache = |pooling: bool| {
        offline(|c| {
            c.cache_dir = Some(dir.path().to_path_buf());
            c.pooling = pooling;
        })
    };

    let first = with_cache(true);
    let second = with_cache(true);
    let entry = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("a cache entry");
    let mut bytes = std::fs::read(&entry)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, bytes)?;
    let after_corruption = with_cache(true);
    let other_engine = with_cache(false);

    assert_eq!(first.loaded(), Loaded::Rebuilt);
    assert_eq!(second.loaded(), Loaded::FromCache);
    assert_eq!(after_corruption.loaded(), Loaded::Rebuilt);
    assert_eq!(
        other_engine.loaded(),
        Loaded::Rebuilt,
        "engine settings are part of the key"
    );
    let event = after_corruption.parse_event(br#"{"run_id": "r"}"#).await?;
    assert!(event.is_ok());

    // A cache folder that is really a file: the component still loads, uncached.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder")?;
    let unwritable = offline(|c| c.cache_dir = Some(file.clone()));
    assert_eq!(unwritable.loaded(), Loaded::NotStored);
    assert!(unwritable.parse_event(br#"{"run_id": "r"}"#).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn many_tasks_share_one_runtime_and_wait_for_their_runs() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    let runtime = Arc::new(runtime);

    let mut tasks = Vec::new();
    for i in 0..32 {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let run = runtime
                .create_run(
                    &prompt(&format!("Video {i}")),
                    &common::with_ref(&format!("task-{i}")),
                )
                .await?;
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let done = runtime
                .wait(
                    &run.id,
                    deadline,
                    PollSchedule::fixed(Duration::from_millis(20)),
                    std::future::pending(),
                    |r| seen.push(host_test::json::status_name(&r.status).to_string()),
                )
                .await?;
            anyhow::Ok((done, seen))
        }));
    }

    for task in tasks {
        let (done, seen) = task.await??;
        assert!(done.terminal);
        assert_eq!(seen.last().map(String::as_str), Some("succeeded"));
    }
    assert_eq!(emulator.run_count(), 32);
    Ok(())
}

/// Waits for a run twice, polling every 10 ms: once until a deadline 200 ms away, then once
/// until a cancellation 100 ms away (with a deadline a minute off).
async fn wait_briefly(
    runtime: &Runtime,
    run_id: &str,
) -> (Result<Run, WaitError>, Result<Run, WaitError>) {
    let every_10ms = PollSchedule::fixed(Duration::from_millis(10));
    let timed_out = runtime
        .wait(
            run_id,
            tokio::time::Instant::now() + Duration::from_millis(200),
            every_10ms.clone(),
            std::future::pending(),
            |_| {},
        )
        .await;
    let cancelled = runtime
        .wait(
            run_id,
            tokio::time::Instant::now() + Duration::from_secs(60),
            every_10ms,
            tokio::time::sleep(Duration::from_millis(100)),
            |_| {},
        )
        .await;
    (timed_out, cancelled)
}

#[tokio::test]
async fn waiting_stops_at_the_deadline_or_on_cancel_and_keeps_the_run() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::End(host_test::emulator::Ending::Unknown(
        "paused".into(),
    )));
    let run = runtime.create_run(&prompt("x"), &no_options()).await?;

    let (timed_out, cancelled) = wait_briefly(&runtime, &run.id).await;

    assert!(
        matches!(&timed_out, Err(WaitError::DeadlinePassed { last: Some(r) }) if r.id == run.id),
        "{timed_out:?}"
    );
    assert!(
        matches!(&cancelled, Err(WaitError::Cancelled { last: Some(r) }) if r.id == run.id),
        "{cancelled:?}"
    );
    Ok(())
}

/// A slow answer does not hold a wait past its cancellation or its deadline.
#[tokio::test]
async fn waiting_stops_on_cancel_or_deadline_even_while_a_poll_is_in_flight() -> anyhow::Result<()>
{
    let (emulator, runtime) = setup().await;
    let run = runtime.create_run(&prompt("x"), &no_options()).await?;
    emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_secs(20)));
    emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_secs(20)));
    let started = std::time::Instant::now();

    let (timed_out, cancelled) = wait_briefly(&runtime, &run.id).await;

    assert!(
        matches!(cancelled, Err(WaitError::Cancelled { last: None })),
        "{cancelled:?}"
    );
    assert!(
        matches!(timed_out, Err(WaitError::DeadlinePassed { last: None })),
        "{timed_out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// The component's connect timeout holds through the shared keep-alive client. The server
/// here never accepts and its accept queue is full, so a connection is never completed; the
/// call gives up at the component's 300 ms, not at a limit of the host's own.
#[tokio::test]
async fn the_components_connect_timeout_holds_with_the_shared_client() -> anyhow::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(1)?;
    let addr = listener.local_addr()?;
    let mut queued = Vec::new();
    for _ in 0..8 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            queued.push(stream);
        }
    }
    let runtime = Runtime::embedded({
        let mut config = RuntimeConfig::new("key", format!("http://{addr}"));
        config.env = vec![
            ("RUNFLOW_CONNECT_TIMEOUT_MS".into(), "300".into()),
            ("RUNFLOW_RETRY_MAX_ATTEMPTS".into(), "1".into()),
        ];
        config
    })?;

    let started = std::time::Instant::now();
    let answer = runtime
        .poll_run("01936f0e-7a3c-7c2e-9d41-000000000000")
        .await;
    let took = started.elapsed();

    assert!(matches!(answer, Err(CallError::Run(_))), "{answer:?}");
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?}, not 300 ms"
    );
    drop((listener, queued));
    Ok(())
}

/// Callers beyond `max_concurrent_calls` wait for a slot without that wait counting against
/// their call timeout, and a live instance holds a slot like a call does.
#[tokio::test]
async fn waiting_for_a_slot_is_not_part_of_the_call_and_live_instances_hold_one(
) -> anyhow::Result<()> {
    let emulator = host_test::emulator::Emulator::start(Default::default()).await?;
    let runtime = Arc::new(runtime_with(&emulator, |c| {
        c.max_concurrent_calls = 1;
        c.call_timeout = Duration::from_secs(1);
    }));
    let id = emulator.seed_runs(1).remove(0);
    for _ in 0..5 {
        emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_millis(400)));
    }

    let callers: Vec<_> = (0..5)
        .map(|_| {
            let (runtime, id) = (runtime.clone(), id.clone());
            tokio::spawn(async move { runtime.poll_run(&id).await })
        })
        .collect();
    let mut answers = Vec::new();
    for caller in callers {
        answers.push(caller.await?);
    }
    let held = runtime.live_instance().await?;
    let queued = {
        let (runtime, id) = (runtime.clone(), id.clone());
        tokio::spawn(async move { runtime.poll_run(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = !queued.is_finished();
    drop(held);
    let after = queued.await?;

    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert!(
        waited,
        "a call ran while a live instance held the only slot"
    );
    assert!(after.is_ok(), "{after:?}");
    Ok(())
}

/// Settings no call could work with are refused when the Runtime is made, by field name.
#[test]
fn impossible_settings_are_refused_by_name() {
    type Adjust = fn(&mut RuntimeConfig);
    let cases: [(&str, Adjust); 6] = [
        ("memory_limit", |c| c.memory_limit = 0),
        ("memory_limit", |c| c.memory_limit = usize::MAX),
        ("max_concurrent_calls", |c| c.max_concurrent_calls = 0),
        ("max_concurrent_calls", |c| {
            c.max_concurrent_calls = usize::MAX
        }),
        ("cpu_limit", |c| c.cpu_limit = Duration::ZERO),
        ("call_timeout", |c| c.call_timeout = Duration::ZERO),
    ];
    for (field, adjust) in cases {
        let mut config = RuntimeConfig::new("key", "https://api.runflow.io");
        adjust(&mut config);
        let error = Runtime::embedded(config)
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"));
        let text = format!("{error:#}");
        assert!(text.contains(&format!("RuntimeConfig.{field}")), "{text}");
        assert!(text.contains("give"), "{field}: no remedy in {text}");
    }
}
