//! Every documented error answer, and the undocumented shapes gateways send, reach the caller
//! as their own `run-error` case with the status, Runflow's code and message kept.

mod common;

use common::{no_options, prompt, runtime_with, setup, with_ref};
use host_test::emulator::Fault;
use host_test::runtime::{ApiError, CallError, RunError};

const CREATE_PATH: &str = "/v1/models/heygen/v3/video-agent/runs";

fn runflow_body(code: &str, message: &str) -> String {
    serde_json::json!({"code": code, "message": message, "errors": null}).to_string()
}

/// Polls once against a scripted answer and returns the error.
async fn poll_error(fault: Fault) -> (RunError, usize) {
    let (emulator, runtime) = setup().await;
    emulator.script("GET", "/v1/runs/", fault);

    let error = runtime.poll_run("01936f0e-7a3c").await.unwrap_err();

    let CallError::Run(error) = error else {
        panic!("expected a run error, got {error:?}");
    };
    (error, emulator.requests().len())
}

fn api(error: &RunError) -> &ApiError {
    host_test::json::api_error(error).expect("an error that carries the API's answer")
}

#[tokio::test]
async fn each_permanent_status_has_its_own_case_and_is_not_retried() {
    type IsCase = fn(&RunError) -> bool;
    let cases: [(u16, &str, IsCase); 6] = [
        (400, "BAD_REQUEST", |e| {
            matches!(e, RunError::PermanentBadRequest(_))
        }),
        (401, "UNAUTHORIZED", |e| {
            matches!(e, RunError::PermanentUnauthorized(_))
        }),
        (402, "INSUFFICIENT_CREDIT", |e| {
            matches!(e, RunError::PermanentInsufficientCredit(_))
        }),
        (403, "EMAIL_NOT_VERIFIED", |e| {
            matches!(e, RunError::PermanentForbidden(_))
        }),
        (404, "RUN_NOT_FOUND", |e| {
            matches!(e, RunError::PermanentNotFound(_))
        }),
        (410, "GONE", |e| matches!(e, RunError::PermanentRejected(_))),
    ];
    for (code, name, is_case) in cases {
        let (error, requests) =
            poll_error(Fault::answer(code, runflow_body(name, "explained"))).await;

        assert!(is_case(&error), "{code}: {error:?}");
        assert_eq!(api(&error).http_status, code);
        assert_eq!(api(&error).code.as_deref(), Some(name));
        assert_eq!(api(&error).message.as_deref(), Some("explained"));
        assert_eq!(requests, 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn validation_failures_keep_runflows_field_details() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer(
        422,
        include_str!("../../component/tests/fixtures/error-422.json"),
    ));

    let error = runtime
        .create_run(&prompt("x"), &no_options())
        .await
        .unwrap_err();

    let CallError::Run(RunError::PermanentValidationFailed(e)) = error else {
        panic!("expected permanent-validation-failed, got {error:?}");
    };
    assert_eq!(e.code.as_deref(), Some("VALIDATION_ERROR"));
    assert_eq!(e.field_problems.len(), 1);
    assert_eq!(e.field_problems[0].field, "input.prompt");
    assert_eq!(e.field_problems[0].problem, "must not be empty");
}

#[tokio::test]
async fn a_poll_rides_out_server_errors_and_rate_limits() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    let run = runtime.create_run(&prompt("A tour"), &no_options()).await?;
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(502, "<html>Bad Gateway</html>"),
    );
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer_after(429, runflow_body("RATE_LIMITED", "slow down"), "0"),
    );
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(503, runflow_body("MODEL_UNAVAILABLE", "busy")),
    );

    let polled = runtime.poll_run(&run.id).await?;

    assert_eq!(polled.id, run.id);
    assert_eq!(emulator.requests().len(), 1 + 4);
    Ok(())
}

#[tokio::test]
async fn persistent_failures_end_in_a_retryable_case_after_the_attempt_limit() {
    let (emulator, _) = setup().await;
    let runtime = runtime_with(&emulator, |c| {
        c.env
            .push(("RUNFLOW_RETRY_MAX_ATTEMPTS".into(), "3".into()));
    });
    for _ in 0..3 {
        emulator.script(
            "GET",
            "/v1/runs/",
            Fault::answer_after(429, runflow_body("RATE_LIMITED", "slow down"), "1"),
        );
    }
    let started = std::time::Instant::now();

    let error = runtime.poll_run("r-1").await.unwrap_err();

    let CallError::Run(RunError::RateLimited(e)) = error else {
        panic!("expected rate-limited, got {error:?}");
    };
    assert_eq!(e.retry_after_seconds, Some(1));
    assert_eq!(emulator.requests().len(), 3);
    // Retry-After (1 s) is capped by RUNFLOW_RETRY_MAX_DELAY_MS (50 ms in tests).
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn insufficient_credit_on_create_is_permanent_and_sent_once() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer(
        402,
        runflow_body("INSUFFICIENT_CREDIT", "Top up"),
    ));

    let error = runtime
        .create_run(&prompt("x"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentInsufficientCredit(e)) if e.code.as_deref() == Some("INSUFFICIENT_CREDIT")),
        "{error:?}"
    );
    assert_eq!(emulator.requests().len(), 1);
    assert_eq!(emulator.run_count(), 0);
}

#[tokio::test]
async fn model_unavailable_on_create_is_retryable_but_not_resent() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer(
        503,
        runflow_body("MODEL_UNAVAILABLE", "busy"),
    ));

    let error = runtime
        .create_run(&prompt("x"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::ModelUnavailable(e)) if e.http_status == 503),
        "{error:?}"
    );
    assert_eq!(emulator.requests().len(), 1);
}

#[tokio::test]
async fn a_rate_limited_create_is_retried_because_it_surely_did_not_land() -> anyhow::Result<()> {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer_after(
        429,
        runflow_body("RATE_LIMITED", "slow down"),
        "0",
    ));

    let run = runtime.create_run(&prompt("x"), &no_options()).await?;

    let posts = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2);
    assert_eq!(emulator.run_count(), 1);
    assert!(!run.id.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_conflict_on_create_is_looked_up_then_reported_as_retryable() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer(409, runflow_body("CONFLICT", "in flight")));

    let error = runtime
        .create_run(&prompt("x"), &with_ref("order-9"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::Conflict(e)) if e.http_status == 409),
        "{error:?}"
    );
    let methods: Vec<_> = emulator.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "POST", "GET"]);
}

#[tokio::test]
async fn a_server_error_on_create_without_client_ref_is_permanent_outcome_unknown() {
    let (emulator, runtime) = setup().await;
    emulator.script_create(Fault::answer(500, runflow_body("INTERNAL", "oops")));

    let error = runtime
        .create_run(&prompt("x"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentOutcomeUnknown(u)) if u.message.contains("500")),
        "{error:?}"
    );
    assert_eq!(emulator.requests().len(), 1, "the create is never re-sent");
}

#[tokio::test]
async fn other_body_shapes_still_give_status_code_and_a_safe_excerpt() {
    let (nested, _) = poll_error(Fault::answer(
        403,
        r#"{"error": {"code": "PERMISSION_DENIED", "message": "no access"}}"#,
    ))
    .await;
    let (text, _) = poll_error(Fault::answer(400, r#"{"error": "bad shape"}"#)).await;
    let (html, _) = poll_error(Fault::answer(
        404,
        "<html>\n<body><h1>404 Not Found</h1>\n</body></html>",
    ))
    .await;
    let (empty, _) = poll_error(Fault::answer(401, "")).await;
    let (broken, _) = poll_error(Fault::answer(400, "{\"code\": \"BAD")).await;

    assert_eq!(api(&nested).code.as_deref(), Some("PERMISSION_DENIED"));
    assert_eq!(api(&nested).message.as_deref(), Some("no access"));
    assert_eq!(api(&text).message.as_deref(), Some("bad shape"));
    assert_eq!(
        api(&html).body_excerpt.as_deref(),
        Some("`<html> <body><h1>404 Not Found</h1> </body></html>`")
    );
    assert_eq!(api(&empty).body_excerpt.as_deref(), Some("(empty body)"));
    assert_eq!(api(&broken).http_status, 400);
    assert_eq!(
        api(&broken).body_excerpt.as_deref(),
        Some("`{\"code\": \"BAD`")
    );
}

#[tokio::test]
async fn a_gateway_that_echoes_the_key_has_it_masked() {
    let (error, _) = poll_error(Fault::answer(
        400,
        "Authorization: Bearer emulator-key was rejected",
    ))
    .await;

    let excerpt = api(&error).body_excerpt.clone().unwrap();
    assert!(!excerpt.contains("emulator-key"), "{excerpt}");
    assert!(excerpt.contains("[redacted]"));
}

#[tokio::test]
async fn requests_to_an_unknown_path_get_runflows_404() {
    let (emulator, _) = setup().await;
    let runtime = runtime_with(&emulator, |c| c.base_url = format!("{}/nested", c.base_url));

    let error = runtime
        .create_run(&prompt("x"), &no_options())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CallError::Run(RunError::PermanentNotFound(e)) if e.code.as_deref() == Some("NOT_FOUND")),
        "{error:?}"
    );
    assert_eq!(emulator.requests()[0].path, format!("/nested{CREATE_PATH}"));
}
