//! The main job end to end: the real component in the real host against the emulator.

mod common;

use common::{no_options, prompt, runtime_for, setup, wait_until_terminal, with_ref};
use host_test::runtime::{CallError, Orientation, RunError, RunOptions, Status, VideoRequest};
use serde_json::json;

const CREATE_PATH: &str = "/v1/models/heygen/v3/video-agent/runs";

#[tokio::test]
async fn a_run_goes_from_queued_to_succeeded_with_a_video() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;

    let created = runtime
        .create_run(
            &prompt("A 30-second explainer about rooftop solar"),
            &no_options(),
        )
        .await?;
    let done = wait_until_terminal(&runtime, &created.id).await;

    assert!(matches!(created.status, Status::Queued));
    assert!(!created.terminal);
    assert!(matches!(done.status, Status::Succeeded));
    let video = done
        .outputs
        .iter()
        .find(|o| o.media_type.as_deref() == Some("video"))
        .expect("a video output");
    assert!(video.url.starts_with(emulator.base_url()));
    assert!(video.url.contains(".mp4"));
    assert!(done.cost.is_some());
    assert!(done.video_seconds.is_some());
    assert_eq!(emulator.run_count(), 1);
    Ok(())
}

#[tokio::test]
async fn the_create_request_carries_exactly_the_documented_body_and_headers() -> anyhow::Result<()>
{
    let (emulator, runtime) = setup().await;
    let request = VideoRequest {
        orientation: Some(Orientation::Portrait),
        avatar: Some("auto".into()),
        voice: Some("Aria".into()),
        style_id: Some("style_noir_detective".into()),
        file_urls: vec!["https://example.com/logo.png".into()],
        incognito_mode: Some(false),
        ..prompt("Our espresso machine in 20 seconds")
    };
    let options = RunOptions {
        callback_url: Some("https://hooks.example.com/runflow".into()),
        metadata: Some(r#"{"campaign": "spring"}"#.into()),
        client_ref: Some("order-4711".into()),
    };

    runtime.create_run(&request, &options).await?;

    let post = emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a create request");
    assert_eq!(post.path, CREATE_PATH);
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {}", emulator.api_key()).as_str())
    );
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(
        post.header("content-length"),
        Some(post.body.len().to_string().as_str())
    );
    assert_eq!(post.header("transfer-encoding"), None);
    assert_eq!(
        post.json(),
        Some(json!({
            "input": {
                "prompt": "Our espresso machine in 20 seconds",
                "orientation": "portrait",
                "avatar": "auto",
                "voice": "Aria",
                "style_id": "style_noir_detective",
                "file_urls": ["https://example.com/logo.png"],
                "incognito_mode": false
            },
            "callback_url": "https://hooks.example.com/runflow",
            "metadata": {"campaign": "spring"},
            "client_ref": "order-4711"
        }))
    );
    Ok(())
}

#[tokio::test]
async fn absent_options_are_left_out_of_the_body() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;

    runtime
        .create_run(&prompt("A cat explains taxes"), &no_options())
        .await?;

    let post = &emulator.requests()[0];
    assert_eq!(post.body, br#"{"input":{"prompt":"A cat explains taxes"}}"#);
    Ok(())
}

#[tokio::test]
async fn a_missing_key_fails_before_anything_is_sent() {
    let (emulator, _) = setup().await;
    let runtime = runtime_for(&emulator, "");

    let error = runtime
        .create_run(&prompt("A cat explains taxes"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentBadConfiguration(m)) if m.contains("RUNFLOW_API_KEY")),
        "{error:?}"
    );
    assert!(emulator.requests().is_empty());
}

#[tokio::test]
async fn a_wrong_key_is_permanent_unauthorized() {
    let (emulator, _) = setup().await;
    let runtime = runtime_for(&emulator, "not-the-key");

    let error = runtime.poll_run("01936f0e").await.unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentUnauthorized(e))
            if e.http_status == 401 && e.code.as_deref() == Some("UNAUTHORIZED")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unknown_run_id_is_permanent_not_found() {
    let (emulator, runtime) = setup().await;

    let error = runtime
        .poll_run("01936f0e-0000-7000-8000-000000000000")
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentNotFound(e))
            if e.http_status == 404 && e.code.as_deref() == Some("RUN_NOT_FOUND")),
        "{error:?}"
    );
    assert_eq!(emulator.requests().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_create_with_a_client_ref_looks_first_and_echoes_it() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;

    let first = runtime
        .create_run(&prompt("A tour of our office"), &with_ref("tour-1"))
        .await?;
    let again = runtime
        .create_run(&prompt("A tour of our office"), &with_ref("tour-1"))
        .await?;

    assert_eq!(first.client_ref.as_deref(), Some("tour-1"));
    assert_eq!(again.id, first.id, "the second create found the first run");
    assert_eq!(emulator.run_count(), 1);
    let paths: Vec<_> = emulator
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "GET".to_string(),
                "/v1/runs?q=client_ref:tour-1&limit=20".to_string()
            ),
            ("POST".to_string(), CREATE_PATH.to_string()),
            (
                "GET".to_string(),
                "/v1/runs?q=client_ref:tour-1&limit=20".to_string()
            ),
        ]
    );
    Ok(())
}
