//! Lost connections, slow, cut-off, malformed and oversized answers, and runs that end
//! badly: the component never traps, never creates a run twice, and says what happened.

mod common;

use std::time::Duration;

use common::{no_options, prompt, runtime_with, setup, wait_until_terminal, with_ref};
use host_test::emulator::{Ending, Fault};
use host_test::runtime::{CallError, RunError, Status, VideoRequest};

fn posts(emulator: &host_test::emulator::Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_by_its_client_ref() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::DropAfterHandling);

    let run = runtime
        .create_run(&prompt("A tour"), &with_ref("order-1"))
        .await?;

    assert_eq!(run.client_ref.as_deref(), Some("order-1"));
    assert_eq!(emulator.run_count(), 1);
    assert_eq!(posts(&emulator), 1);
    Ok(())
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_without_client_ref_is_never_resent() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::DropAfterHandling);

    let error = runtime
        .create_run(&prompt("A tour"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentOutcomeUnknown(u)) if u.client_ref.is_none()),
        "{error:?}"
    );
    assert_eq!(
        emulator.run_count(),
        1,
        "the run was made: it must not be made twice"
    );
    assert_eq!(posts(&emulator), 1);
}

#[tokio::test]
async fn a_lost_create_that_is_not_listed_is_retryable_with_its_client_ref() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::DropBeforeHandling);

    let error = runtime
        .create_run(&prompt("A tour"), &with_ref("order-2"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::OutcomeUnknown(u)) if u.client_ref.as_deref() == Some("order-2")),
        "{error:?}"
    );
    assert_eq!(posts(&emulator), 1);
    assert_eq!(emulator.run_count(), 0);
}

#[tokio::test]
async fn a_cut_off_create_answer_is_settled_by_the_lookup() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::Truncate);

    let run = runtime
        .create_run(&prompt("A tour"), &with_ref("order-3"))
        .await?;

    assert_eq!(run.client_ref.as_deref(), Some("order-3"));
    assert_eq!(emulator.run_count(), 1);
    Ok(())
}

#[tokio::test]
async fn an_unreadable_create_answer_without_client_ref_is_permanent_outcome_unknown() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::Malformed);

    let error = runtime
        .create_run(&prompt("A tour"), &no_options())
        .await
        .unwrap_err();

    assert!(matches!(
        error,
        CallError::Run(RunError::PermanentOutcomeUnknown(_))
    ));
    assert_eq!(posts(&emulator), 1);
}

#[tokio::test]
async fn when_the_listing_is_down_nothing_is_created() {
    let (emulator, runtime) = setup().await;
    for _ in 0..5 {
        emulator.script("GET", "/v1/runs?", Fault::answer(503, Vec::new()));
    }

    let error = runtime
        .create_run(&prompt("A tour"), &with_ref("order-4"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::ServerError(e)) if e.http_status == 503),
        "{error:?}"
    );
    assert_eq!(posts(&emulator), 0);
}

#[tokio::test]
async fn polls_survive_dropped_and_cut_off_answers() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    let run = runtime.create_run(&prompt("A tour"), &no_options()).await?;
    emulator.script("GET", "/v1/runs/", Fault::DropBeforeHandling);
    emulator.script("GET", "/v1/runs/", Fault::Truncate);

    let polled = runtime.poll_run(&run.id).await?;

    assert_eq!(polled.id, run.id);
    Ok(())
}

#[tokio::test]
async fn a_slow_answer_hits_the_first_byte_timeout_and_is_retried() -> anyhow::Result<()> {
    let (emulator, _) = setup().await;
    let runtime = runtime_with(&emulator, |c| {
        c.first_byte_timeout = Duration::from_millis(200)
    });
    let run = runtime.create_run(&prompt("A tour"), &no_options()).await?;
    emulator.script("GET", "/v1/runs/", Fault::Delay(Duration::from_secs(2)));
    let started = std::time::Instant::now();

    let polled = runtime.poll_run(&run.id).await?;

    assert_eq!(polled.id, run.id);
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn a_malformed_answer_is_an_invalid_response_not_a_trap() {
    let (emulator, runtime) = setup().await;
    emulator.script("GET", "/v1/runs/", Fault::Malformed);

    let error = runtime.poll_run("r-1").await.unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::InvalidResponse(m)) if m.contains("not JSON")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused_without_reading_it_all() {
    let (emulator, runtime) = setup().await;
    emulator.script("GET", "/v1/runs/", Fault::Oversized(32 * 1024 * 1024));

    let error = runtime.poll_run("r-1").await.unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::InvalidResponse(m)) if m.contains("larger than 1 MiB")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_oversized_error_page_is_described_not_called_empty() {
    let (emulator, runtime) = setup().await;
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::OversizedError(404, 6 * 1024 * 1024),
    );

    let error = runtime.poll_run("r-1").await.unwrap_err();

    let CallError::Run(RunError::PermanentNotFound(api)) = &error else {
        panic!("expected the 404 to be kept, got {error:?}");
    };
    let excerpt = api.body_excerpt.as_deref().unwrap_or_default();
    assert!(excerpt.contains("larger than 1 MiB"), "{excerpt}");
}

#[tokio::test]
async fn runs_that_fail_partially_succeed_or_go_unknown_read_as_such() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    let mut ids = Vec::new();
    for ending in [
        Ending::Fail,
        Ending::PartialSucceed,
        Ending::Unknown("paused_for_review".into()),
    ] {
        emulator.script_create(Fault::End(ending));
        ids.push(
            runtime
                .create_run(&prompt("A tour"), &no_options())
                .await?
                .id,
        );
    }

    let failed = wait_until_terminal(&runtime, &ids[0]).await;
    let partial = wait_until_terminal(&runtime, &ids[1]).await;
    tokio::time::sleep(common::STEP * 4).await;
    let unknown = runtime.poll_run(&ids[2]).await?;

    assert!(matches!(failed.status, Status::Failed));
    assert_eq!(
        failed.failure.unwrap().code.as_deref(),
        Some("PROVIDER_ERROR")
    );
    assert!(matches!(partial.status, Status::PartialSucceeded));
    assert!(partial.terminal);
    assert_eq!(partial.outputs.len(), 1);
    assert!(matches!(&unknown.status, Status::Other(s) if s == "paused_for_review"));
    assert!(!unknown.terminal);
    Ok(())
}

#[tokio::test]
async fn invalid_input_is_refused_before_anything_is_sent() {
    let (emulator, runtime) = setup().await;
    let too_many_files = VideoRequest {
        file_urls: vec!["https://example.com/a.png".into(); 21],
        ..prompt("x")
    };
    let long_prompt = prompt(&"é".repeat(10_001));
    let cases = [
        (prompt(" "), no_options(), "request.prompt"),
        (long_prompt, no_options(), "request.prompt"),
        (too_many_files, no_options(), "request.file-urls"),
        (
            VideoRequest {
                file_urls: vec!["file:///etc/passwd".into()],
                ..prompt("x")
            },
            no_options(),
            "request.file-urls[0]",
        ),
        (
            prompt("x"),
            host_test::runtime::RunOptions {
                callback_url: Some("http://hooks.example.com/cb".into()),
                ..no_options()
            },
            "options.callback-url",
        ),
        (
            prompt("x"),
            host_test::runtime::RunOptions {
                metadata: Some("[1]".into()),
                ..no_options()
            },
            "options.metadata",
        ),
        (prompt("x"), with_ref("has space"), "options.client-ref"),
    ];

    for (request, options, field) in cases {
        let error = runtime.create_run(&request, &options).await.unwrap_err();

        assert!(
            matches!(&error, CallError::Run(RunError::PermanentInvalidRequest(p)) if p.field == field),
            "{field}: {error:?}"
        );
    }
    for bad_id in ["", "../admin", "a/b", "a b", "\u{7}"] {
        let error = runtime.poll_run(bad_id).await.unwrap_err();

        assert!(
            matches!(&error, CallError::Run(RunError::PermanentInvalidRequest(p)) if p.field == "run-id"),
            "{bad_id:?}: {error:?}"
        );
    }
    assert!(emulator.requests().is_empty());
}

/// A failed connection is reported in words, and as never sent, so a create may be retried.
#[tokio::test]
async fn failed_connections_say_why_and_that_nothing_was_sent() -> anyhow::Result<()> {
    let (emulator, _) = setup().await;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let refused = runtime_with(&emulator, |c| c.base_url = format!("http://{closed}"));
    // TLS spoken to the emulator's plain-HTTP port: the handshake fails.
    let https = emulator.base_url().replace("http://", "https://");
    let no_tls = runtime_with(&emulator, |c| c.base_url = https);

    for (runtime, words) in [
        (&refused, "the connection was refused"),
        (&no_tls, "the TLS handshake failed"),
    ] {
        let error = runtime
            .create_run(&prompt("A tour"), &no_options())
            .await
            .expect_err("no connection can be made");
        let CallError::Run(RunError::TransportFailed(transport)) = &error else {
            panic!("expected a transport failure, got {error:?}");
        };
        assert!(transport.not_sent, "{transport:?}");
        assert!(transport.message.contains(words), "{transport:?}");
        assert!(!transport.message.contains("ErrorCode"), "{transport:?}");
    }
    // The request URL (here with a client-ref that names a TLS word) does not sway the reading.
    let error = refused
        .create_run(&prompt("A tour"), &with_ref("certificate-order-1"))
        .await
        .expect_err("no connection can be made");
    assert!(
        format!("{error:?}").contains("the connection was refused"),
        "{error:?}"
    );
    assert_eq!(emulator.run_count(), 0);
    Ok(())
}

#[tokio::test]
async fn a_poll_answered_with_another_run_is_refused() {
    let (emulator, runtime) = setup().await;
    let other = br#"{"id":"someone-elses-run","status_code":"succeeded","output":{"outputs":[{"url":"https://example.com/v.mp4"}]}}"#;
    emulator.script("GET", "/v1/runs/", Fault::answer(200, other));

    let error = runtime.poll_run("my-run").await.unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::InvalidResponse(m)) if m.contains("someone-elses-run")),
        "{error:?}"
    );
}
