//! Callbacks: signatures checked by the component, events read with the run's own types, and
//! the `listen` receiver keeping exactly one line per run however often Runflow delivers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{prompt, STEP};
use host_test::emulator::{sign, DeliveryFailure, Emulator, EmulatorConfig};
use host_test::json::run_json;
use host_test::receiver::{Receiver, ReceiverConfig};
use host_test::runtime::{CallbackError, RunOptions, Runtime, RuntimeConfig};
use serde_json::Value;

const BODY: &[u8] = include_bytes!("../../component/tests/fixtures/callback-succeeded.json");
const SIG_FILE: &str = include_str!("../../component/tests/fixtures/callback-succeeded.sig");

fn fixture(label: &str) -> String {
    SIG_FILE
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .expect("the fixture names it")
}

fn offline_runtime() -> Runtime {
    Runtime::embedded(RuntimeConfig::new("", "https://api.runflow.io")).expect("loading")
}

#[tokio::test]
async fn the_documented_vector_verifies_and_every_forgery_fails() -> anyhow::Result<()> {
    let runtime = offline_runtime();
    let secret = fixture("secret:");
    let secrets = vec![secret.clone()];
    let signature = fixture("Runflow-Signature:");
    let mut changed = BODY.to_vec();
    changed[BODY.len() / 2] ^= 0x20;
    let stripped = secret.trim_start_matches("whsec_").to_string();

    let valid = runtime.verify_signature(BODY, &signature, &secrets).await?;
    let rotated = runtime
        .verify_signature(BODY, &signature, &["whsec_new".into(), secret.clone()])
        .await?;
    let tampered = runtime
        .verify_signature(&changed, &signature, &secrets)
        .await?;
    let wrong = runtime
        .verify_signature(BODY, &signature, &["whsec_other".into()])
        .await?;
    let no_prefix = runtime
        .verify_signature(BODY, &signature, &[stripped])
        .await?;
    let upper = runtime
        .verify_signature(BODY, &signature.to_uppercase(), &secrets)
        .await?;
    let short = runtime
        .verify_signature(BODY, &signature[..40], &[secret])
        .await?;

    assert!(matches!(valid, Ok(0)));
    assert!(matches!(rotated, Ok(1)));
    for mismatch in [tampered, wrong, no_prefix] {
        assert!(matches!(
            mismatch,
            Err(CallbackError::PermanentSignatureMismatch)
        ));
    }
    for malformed in [upper, short] {
        assert!(matches!(
            malformed,
            Err(CallbackError::PermanentMalformedSignature(_))
        ));
    }
    Ok(())
}

#[tokio::test]
async fn the_emulator_signs_exactly_as_the_documented_vector() {
    assert_eq!(
        sign(&fixture("secret:"), BODY),
        fixture("Runflow-Signature:")
    );
}

fn heygen_agent(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_heygen-agent"));
    command
        .args(args)
        .env_remove("RUNFLOW_CALLBACK_SECRET")
        .env_remove("RUNFLOW_CALLBACK_SECRET_PREVIOUS");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running heygen-agent")
}

#[test]
fn verify_callback_prints_the_event_or_says_why_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("body.json");
    std::fs::write(&body, BODY)?;
    let body = body.to_str().unwrap();
    let signature = fixture("Runflow-Signature:");
    let secret = fixture("secret:");

    let ok = heygen_agent(
        &[
            "verify-callback",
            "--json",
            "--body-file",
            body,
            "--signature",
            &signature,
        ],
        &[
            ("RUNFLOW_CALLBACK_SECRET", "whsec_rotated"),
            ("RUNFLOW_CALLBACK_SECRET_PREVIOUS", &secret),
        ],
    );
    let bad = heygen_agent(
        &[
            "verify-callback",
            "--body-file",
            body,
            "--signature",
            &signature,
        ],
        &[("RUNFLOW_CALLBACK_SECRET", "whsec_other")],
    );
    let no_secret = heygen_agent(
        &[
            "verify-callback",
            "--body-file",
            body,
            "--signature",
            &signature,
        ],
        &[],
    );

    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let event: Value = serde_json::from_slice(&ok.stdout)?;
    assert_eq!(event["event"], "run.completed");
    assert_eq!(event["run_id"], "01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90");
    assert_eq!(event["status"], "succeeded");
    assert_eq!(bad.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("matches none of the secrets"));
    assert_eq!(no_secret.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("RUNFLOW_CALLBACK_SECRET"));
    Ok(())
}

async fn start_receiver(out: &std::path::Path, secret: &str) -> Receiver {
    let config = ReceiverConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        out: out.to_path_buf(),
        secrets: vec![secret.into()],
        max_body: 64 * 1024,
    };
    Receiver::start(Arc::new(offline_runtime()), config)
        .await
        .expect("starting the receiver")
}

#[tokio::test]
async fn a_retried_and_duplicated_callback_lands_once_as_poll_run_reports_it() -> anyhow::Result<()>
{
    let secret = "whsec_end_to_end";
    let emulator = Emulator::start(EmulatorConfig {
        step: STEP,
        callback_secret: Some(secret.into()),
        callback_backoff: Duration::from_millis(50),
        ..EmulatorConfig::default()
    })
    .await?;
    emulator.corrupt_first_callback(true);
    emulator.deliver_callbacks_twice(true);
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl");
    let receiver = start_receiver(&events, secret).await;
    let runtime = common::runtime_for(&emulator, emulator.api_key());
    let options = RunOptions {
        callback_url: Some(receiver.url()),
        metadata: Some(r#"{"campaign":"winter"}"#.into()),
        client_ref: Some("cb-1".into()),
    };

    let run = runtime
        .create_run(&prompt("A winter sale teaser"), &options)
        .await?;
    assert!(emulator.settle_callbacks(Duration::from_secs(10)).await);
    let polled = run_json(&runtime.poll_run(&run.id).await?);

    let outcomes: Vec<_> = emulator
        .deliveries()
        .into_iter()
        .map(|d| (d.attempt, d.outcome))
        .collect();
    assert_eq!(outcomes, [(1, Ok(401)), (2, Ok(200)), (4, Ok(200))]);
    let text = std::fs::read_to_string(&events)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let event: Value = serde_json::from_str(lines[0])?;
    assert_eq!(event["event"], "run.completed");
    for (event_field, run_field) in [
        ("run_id", "id"),
        ("status", "status"),
        ("outputs", "outputs"),
        ("output", "output"),
        ("duration_ms", "duration_ms"),
        ("created_at", "created_at"),
        ("completed_at", "completed_at"),
        ("metadata", "metadata"),
    ] {
        assert_eq!(event[event_field], polled[run_field], "{event_field}");
    }
    assert!(event["runflow_request_id"].is_string());
    Ok(())
}

#[tokio::test]
async fn the_receiver_refuses_what_it_must_and_remembers_across_restarts() -> anyhow::Result<()> {
    let secret = fixture("secret:");
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl");
    let client = |url: String, body: Vec<u8>, signature: Option<String>| async move {
        post(&url, body, signature).await
    };

    let receiver = start_receiver(&events, &secret).await;
    let url = receiver.url();
    let unsigned = client(url.clone(), BODY.to_vec(), None).await?;
    let forged = client(url.clone(), BODY.to_vec(), Some(sign("whsec_x", BODY))).await?;
    let huge = vec![b' '; 100 * 1024];
    let too_big = client(url.clone(), huge.clone(), Some(sign(&secret, &huge))).await?;
    let stored = client(
        url.clone(),
        BODY.to_vec(),
        Some(fixture("Runflow-Signature:")),
    )
    .await?;
    let started = br#"{"event":"run.started","run_id":"R2","status":"running"}"#.to_vec();
    let completed = br#"{"event":"run.completed","run_id":"R2","status":"succeeded"}"#.to_vec();
    let other_kind = client(url.clone(), started.clone(), Some(sign(&secret, &started))).await?;
    let final_kind = client(
        url.clone(),
        completed.clone(),
        Some(sign(&secret, &completed)),
    )
    .await?;
    drop(receiver);
    let restarted = start_receiver(&events, &secret).await;
    let again = client(
        restarted.url(),
        BODY.to_vec(),
        Some(fixture("Runflow-Signature:")),
    )
    .await?;

    assert_eq!((other_kind, final_kind), (200, 200));
    assert_eq!(unsigned, 401);
    assert_eq!(forged, 401);
    assert_eq!(too_big, 413);
    assert_eq!(stored, 200);
    assert_eq!(again, 200);
    let lines = std::fs::read_to_string(&events)?;
    assert_eq!(
        lines.lines().count(),
        3,
        "one line per run and kind: {lines}"
    );
    assert!(lines.contains("run.completed") && lines.contains("run.started"));
    Ok(())
}

/// POSTs a body to the receiver and returns the status.
async fn post(url: &str, body: Vec<u8>, signature: Option<String>) -> anyhow::Result<u16> {
    let uri: hyper::Uri = url.parse()?;
    let stream =
        tokio::net::TcpStream::connect((uri.host().unwrap(), uri.port_u16().unwrap())).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::post(uri.path())
        .header("host", uri.authority().unwrap().as_str())
        .header("content-length", body.len());
    if let Some(signature) = signature {
        request = request.header("runflow-signature", signature);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    Ok(sender.send_request(request).await?.status().as_u16())
}

#[test]
fn verify_callback_refuses_a_body_file_larger_than_any_callback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("video.mp4");
    std::fs::write(&big, vec![b'x'; host_test::receiver::DEFAULT_MAX_BODY + 1])?;

    let out = heygen_agent(
        &[
            "verify-callback",
            "--body-file",
            big.to_str().unwrap(),
            "--signature",
            "00",
        ],
        &[("RUNFLOW_CALLBACK_SECRET", "whsec_any")],
    );

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("larger than"), "{stderr}");
    assert!(stderr.contains("video.mp4"), "{stderr}");
    Ok(())
}

#[test]
fn listen_on_a_busy_port_or_with_a_zero_body_limit_is_a_usage_error() -> anyhow::Result<()> {
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let dir = tempfile::tempdir()?;
    let out_file = dir.path().join("events.jsonl");
    let out_file = out_file.to_str().unwrap();
    let secret = [("RUNFLOW_CALLBACK_SECRET", "whsec_any")];

    let taken = heygen_agent(&["listen", "--addr", &addr, "--out", out_file], &secret);
    let zero = heygen_agent(
        &["listen", "--out", out_file, "--max-body-bytes", "0"],
        &secret,
    );

    assert_eq!(taken.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("--addr"),
        "{stderr}"
    );
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--max-body-bytes"));
    Ok(())
}

#[tokio::test]
async fn a_callback_without_an_event_name_takes_the_kind_its_status_implies() -> anyhow::Result<()>
{
    let runtime = offline_runtime();

    let event = runtime
        .parse_event(br#"{"run_id":"r-9","status":"failed"}"#)
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;

    assert_eq!(event.kind, host_test::runtime::EventKind::RunFailed);
    assert_eq!(event.run_id, "r-9");
    Ok(())
}

#[tokio::test]
async fn the_emulator_refuses_once_to_call_back_off_this_machine() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig {
        step: STEP,
        callback_secret: Some("whsec_x".into()),
        callback_backoff: Duration::from_millis(10),
        ..EmulatorConfig::default()
    })
    .await?;
    let runtime = common::runtime_for(&emulator, emulator.api_key());
    let options = RunOptions {
        // Never contacted: the emulator refuses before connecting anywhere.
        callback_url: Some("https://hooks.example.com/runflow".into()),
        metadata: None,
        client_ref: None,
    };

    let run = runtime.create_run(&prompt("A tour"), &options).await?;
    common::wait_until_terminal(&runtime, &run.id).await;
    assert!(emulator.settle_callbacks(Duration::from_secs(10)).await);

    let deliveries = emulator.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert!(
        deliveries[0].outcome == Err(DeliveryFailure::Refused),
        "{deliveries:?}"
    );
    Ok(())
}
