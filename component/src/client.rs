//! The requests behind `create-run` and `poll-run`, with their retry and idempotency rules.
//!
//! | request | retried inside one call on | when the outcome is unknown |
//! |---|---|---|
//! | `GET` a run or a listing | transport failures, 408, 429, 5xx, a cut-off body | it is a read: retried |
//! | `POST` a run | 429, and connections that failed before the request was sent | never re-sent; settled by looking the run up by its `client-ref` |
//!
//! Waits use exponential backoff with full jitter (a random wait up to `base * 2^n`, capped),
//! or the server's numeric `Retry-After` (capped the same way), and stop at the attempt limit
//! or when the next wait would overrun the call's time budget.

use std::time::Duration;

use crate::config::{RetryPolicy, Settings};
use crate::io::{BodyError, HttpRequest, HttpResponse, Io, Method, SendError, MAX_BODY_BYTES};
use crate::request;
use crate::response::{self, parse_api_error, parse_retry_after};
use crate::wit::{Run, RunError, RunOptions, TransportError, UnknownOutcome, VideoRequest};

/// The path that creates a HeyGen Video Agent run.
pub const CREATE_PATH: &str = "/v1/models/heygen/v3/video-agent/runs";
/// Identifies the component in the `User-Agent` header.
pub const USER_AGENT: &str = concat!("runflow-heygen-video-agent/", env!("CARGO_PKG_VERSION"));

/// Reads one run as it is now.
pub fn poll_run(io: &mut impl Io, settings: &Settings, run_id: &str) -> Result<Run, RunError> {
    request::check_run_id(run_id)?;

    let url = format!("{}/v1/runs/{run_id}", settings.base_url);
    let body = get_with_retries(io, settings, &url)?;

    let run = response::parse_run(&body).map_err(RunError::InvalidResponse)?;
    // Ids are ASCII (check_run_id); a server may look them up and answer in another case.
    if !run.id.eq_ignore_ascii_case(run_id) {
        // A cache or proxy that mixes up answers must not make the caller follow, bill-check
        // or download another run.
        return Err(RunError::InvalidResponse(format!(
            "asked for run {run_id}, but the answer is about run {}",
            response::excerpt(run.id.as_bytes(), &settings.api_key)
        )));
    }
    Ok(run)
}

/// Creates a run, at most once per `client-ref`.
pub fn create_run(
    io: &mut impl Io,
    settings: &Settings,
    video: &VideoRequest,
    options: &RunOptions,
) -> Result<Run, RunError> {
    let body = request::create_body(video, options)?;
    let body = serde_json::to_vec(&body).map_err(|_| RunError::ExecutionFailed)?;

    // An earlier attempt (this engine's previous try) may already have made the run.
    if let Some(client_ref) = &options.client_ref {
        if let Some(run) = find_by_client_ref(io, settings, client_ref)? {
            return pollable(run);
        }
    }

    match post_create(io, settings, body) {
        Created::Run(run) => pollable(*run),
        Created::Refused(error) => Err(error),
        Created::Unknown { message, error } => {
            settle_unknown(io, settings, options.client_ref.as_deref(), message, error)
                .and_then(pollable)
        }
    }
}

/// A created run whose id `poll-run` would refuse cannot be followed: that is the answer's
/// fault, not the caller's, so it is an invalid response rather than invalid input.
fn pollable(run: Run) -> Result<Run, RunError> {
    match request::check_run_id(&run.id) {
        Ok(()) => Ok(run),
        Err(RunError::PermanentInvalidRequest(problem)) => Err(RunError::InvalidResponse(format!(
            "Runflow answered the create with a run id that cannot be polled: it {}",
            problem.problem
        ))),
        Err(other) => Err(other),
    }
}

/// Looks for runs carrying `client_ref`, trusting only entries whose `client_ref` really
/// matches (a listing that ignored the filter must not pass off another run as ours). When
/// several match, the oldest is the one the first attempt made.
pub fn find_by_client_ref(
    io: &mut impl Io,
    settings: &Settings,
    client_ref: &str,
) -> Result<Option<Run>, RunError> {
    request::check_client_ref(client_ref)?;

    let url = format!(
        "{}/v1/runs?q=client_ref:{client_ref}&limit=20",
        settings.base_url
    );
    let body = get_with_retries(io, settings, &url)?;
    let runs = response::parse_run_list(&body)
        .map_err(|e| RunError::InvalidResponse(format!("looking up client-ref: {e}")))?;

    Ok(runs
        .into_iter()
        .filter(|run| run.client_ref.as_deref() == Some(client_ref))
        .min_by(|a, b| a.created_at.cmp(&b.created_at)))
}

/// What became of a create request.
enum Created {
    /// Runflow answered with the new run.
    Run(Box<Run>),
    /// Runflow surely did not make a run.
    Refused(RunError),
    /// Runflow may have made a run: `message` says why we cannot tell, `error` is the
    /// retryable error to report if a lookup finds nothing.
    Unknown {
        message: String,
        error: Option<RunError>,
    },
}

fn post_create(io: &mut impl Io, settings: &Settings, body: Vec<u8>) -> Created {
    let mut request = base_request(
        settings,
        Method::Post,
        format!("{}{CREATE_PATH}", settings.base_url),
    );
    request
        .headers
        .push(("content-type", "application/json".into()));
    request
        .headers
        .push(("content-length", body.len().to_string()));
    request.body = Some(body);

    let mut backoff = Backoff::new(&settings.retry);
    loop {
        let (error, retry_after) = match io.send(&request) {
            Err(SendError::Denied(m)) => return Created::Refused(denied(settings, m)),
            Err(SendError::Unknown(m)) => {
                return Created::Unknown {
                    message: format!("the connection failed after the create was sent ({m})"),
                    error: None,
                }
            }
            Err(SendError::NotSent(m)) => (transport(m, true), None),
            Ok(answer) if (200..300).contains(&answer.status) => {
                return match answer.body.as_deref().map(response::parse_run) {
                    Ok(Ok(run)) => Created::Run(Box::new(run)),
                    Ok(Err(problem)) => Created::Unknown {
                        message: format!(
                            "Runflow accepted the create (HTTP {}) but its answer is not a run: {problem}",
                            answer.status
                        ),
                        error: None,
                    },
                    Err(problem) => Created::Unknown {
                        message: format!(
                            "Runflow accepted the create (HTTP {}) but its answer could not be read: {}",
                            answer.status,
                            body_problem(problem)
                        ),
                        error: None,
                    },
                };
            }
            Ok(answer) => {
                let error = api_error(settings, &answer);
                match error {
                    RunError::RateLimited(ref e) => {
                        let wait = e.retry_after_seconds;
                        (error, wait)
                    }
                    RunError::Conflict(_) | RunError::ServerError(_) => {
                        return Created::Unknown {
                            message: format!(
                                "Runflow answered the create with HTTP {}, which does not say \
                                 whether the run was made",
                                answer.status
                            ),
                            error: Some(error),
                        }
                    }
                    refused => return Created::Refused(refused),
                }
            }
        };
        match backoff.next_wait(io, retry_after) {
            Some(wait) => io.sleep(wait),
            None => return Created::Refused(error),
        }
    }
}

/// Decides what a create with an unknown outcome returns. With a `client-ref` the run is
/// looked up again; without one nothing can find it, so the error is permanent: an engine
/// must not retry it blindly and pay for a second video.
fn settle_unknown(
    io: &mut impl Io,
    settings: &Settings,
    client_ref: Option<&str>,
    message: String,
    error: Option<RunError>,
) -> Result<Run, RunError> {
    let Some(client_ref) = client_ref else {
        return Err(RunError::PermanentOutcomeUnknown(UnknownOutcome {
            client_ref: None,
            message: format!(
                "{message}; the run may exist and be billed. Look for it in Runflow's run list \
                 before creating it again, and pass a client-ref next time so that retries \
                 can find it"
            ),
        }));
    };
    match find_by_client_ref(io, settings, client_ref) {
        Ok(Some(run)) => Ok(run),
        Ok(None) => Err(error.unwrap_or_else(|| {
            RunError::OutcomeUnknown(UnknownOutcome {
                client_ref: Some(client_ref.to_string()),
                message: format!(
                    "{message}, and no run with this client-ref is listed yet. Retry with the \
                     same client-ref: the retry looks the run up before creating one"
                ),
            })
        })),
        Err(lookup) => Err(RunError::OutcomeUnknown(UnknownOutcome {
            client_ref: Some(client_ref.to_string()),
            message: format!(
                "{message}, and looking it up by client-ref failed ({}). Retry with the same \
                 client-ref: the retry looks the run up before creating one",
                short_error(&lookup)
            ),
        })),
    }
}

/// GETs `url`, retrying whatever a read may safely retry, and returns the 2xx body.
fn get_with_retries(io: &mut impl Io, settings: &Settings, url: &str) -> Result<Vec<u8>, RunError> {
    let request = base_request(settings, Method::Get, url.to_string());

    let mut backoff = Backoff::new(&settings.retry);
    loop {
        let (error, retry_after) = match io.send(&request) {
            Err(SendError::Denied(m)) => return Err(denied(settings, m)),
            Err(SendError::NotSent(m)) => (transport(m, true), None),
            Err(SendError::Unknown(m)) => (transport(m, false), None),
            Ok(HttpResponse {
                status: 200..=299,
                body,
                ..
            }) => match body {
                Ok(body) => return Ok(body),
                Err(BodyError::TooLarge) => {
                    return Err(RunError::InvalidResponse(body_problem(
                        &BodyError::TooLarge,
                    )))
                }
                Err(broken) => (transport(body_problem(&broken), false), None),
            },
            Ok(answer) => match api_error(settings, &answer) {
                error @ (RunError::RateLimited(_)
                | RunError::ServerError(_)
                | RunError::ModelUnavailable(_)) => {
                    let wait = parse_retry_after(answer.retry_after.as_deref());
                    (error, wait)
                }
                permanent => return Err(permanent),
            },
        };
        match backoff.next_wait(io, retry_after) {
            Some(wait) => io.sleep(wait),
            None => return Err(error),
        }
    }
}

fn base_request(settings: &Settings, method: Method, url: String) -> HttpRequest {
    HttpRequest {
        method,
        url,
        headers: vec![
            ("authorization", format!("Bearer {}", settings.api_key)),
            ("accept", "application/json".into()),
            ("user-agent", USER_AGENT.into()),
        ],
        body: None,
    }
}

fn api_error(settings: &Settings, answer: &HttpResponse) -> RunError {
    let retry_after = parse_retry_after(answer.retry_after.as_deref());
    let body = match &answer.body {
        Ok(body) => body.as_slice(),
        Err(_) => &[],
    };
    let mut error = parse_api_error(answer.status, body, retry_after, &settings.api_key);
    if let Err(problem) = &answer.body {
        // Say why there is no body to show, rather than calling it empty.
        error.body_excerpt = Some(format!("({})", body_problem(problem)));
    }
    response::error_for_status(error)
}

fn transport(message: String, not_sent: bool) -> RunError {
    RunError::TransportFailed(TransportError { message, not_sent })
}

fn denied(settings: &Settings, message: String) -> RunError {
    RunError::PermanentRequestDenied(format!(
        "the host refused the request to {} ({message}): allow this origin in the host's \
         outgoing-HTTP settings",
        settings.base_url
    ))
}

fn body_problem(problem: &BodyError) -> String {
    match problem {
        BodyError::TooLarge => format!(
            "the answer is larger than {} MiB, far more than any run; it was not read",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
        BodyError::Broken(m) => format!("the answer was cut off ({m})"),
    }
}

fn short_error(error: &RunError) -> String {
    match error {
        RunError::TransportFailed(t) => t.message.clone(),
        RunError::InvalidResponse(m) => m.clone(),
        other => match other {
            RunError::ServerError(e)
            | RunError::RateLimited(e)
            | RunError::ModelUnavailable(e)
            | RunError::Conflict(e)
            | RunError::PermanentBadRequest(e)
            | RunError::PermanentUnauthorized(e)
            | RunError::PermanentForbidden(e)
            | RunError::PermanentNotFound(e)
            | RunError::PermanentInsufficientCredit(e)
            | RunError::PermanentValidationFailed(e)
            | RunError::PermanentRejected(e) => format!("HTTP {}", e.http_status),
            _ => "no answer".into(),
        },
    }
}

/// Masks `secret` in every piece of text an error carries. Servers and gateways sometimes
/// echo the request (its `Authorization` header included) in a code, a message, a field
/// name or a body, and none of that may reach a log or a screen.
pub fn redacted(error: RunError, secret: &str) -> RunError {
    use crate::response::redact;
    let r = |text: String| redact(&text, secret);
    let api = |mut e: crate::wit::ApiError| {
        e.code = e.code.map(r);
        e.message = e.message.map(r);
        e.body_excerpt = e.body_excerpt.map(r);
        for p in &mut e.field_problems {
            p.field = r(std::mem::take(&mut p.field));
            p.problem = r(std::mem::take(&mut p.problem));
        }
        e
    };
    match error {
        RunError::PermanentInvalidRequest(mut p) => {
            p.problem = r(p.problem);
            RunError::PermanentInvalidRequest(p)
        }
        RunError::PermanentBadConfiguration(m) => RunError::PermanentBadConfiguration(r(m)),
        RunError::PermanentRequestDenied(m) => RunError::PermanentRequestDenied(r(m)),
        RunError::PermanentBadRequest(e) => RunError::PermanentBadRequest(api(e)),
        RunError::PermanentUnauthorized(e) => RunError::PermanentUnauthorized(api(e)),
        RunError::PermanentInsufficientCredit(e) => RunError::PermanentInsufficientCredit(api(e)),
        RunError::PermanentForbidden(e) => RunError::PermanentForbidden(api(e)),
        RunError::PermanentNotFound(e) => RunError::PermanentNotFound(api(e)),
        RunError::PermanentValidationFailed(e) => RunError::PermanentValidationFailed(api(e)),
        RunError::PermanentRejected(e) => RunError::PermanentRejected(api(e)),
        RunError::Conflict(e) => RunError::Conflict(api(e)),
        RunError::RateLimited(e) => RunError::RateLimited(api(e)),
        RunError::ModelUnavailable(e) => RunError::ModelUnavailable(api(e)),
        RunError::ServerError(e) => RunError::ServerError(api(e)),
        RunError::TransportFailed(mut t) => {
            t.message = r(t.message);
            RunError::TransportFailed(t)
        }
        RunError::InvalidResponse(m) => RunError::InvalidResponse(r(m)),
        RunError::OutcomeUnknown(mut u) => {
            u.message = r(u.message);
            RunError::OutcomeUnknown(u)
        }
        RunError::PermanentOutcomeUnknown(mut u) => {
            u.message = r(u.message);
            RunError::PermanentOutcomeUnknown(u)
        }
        RunError::ExecutionFailed => RunError::ExecutionFailed,
    }
}

/// Counts attempts and picks the wait before the next one.
struct Backoff<'a> {
    policy: &'a RetryPolicy,
    attempts: u32,
}

impl<'a> Backoff<'a> {
    fn new(policy: &'a RetryPolicy) -> Self {
        Self {
            policy,
            attempts: 1,
        }
    }

    /// The wait before the next attempt, or `None` when attempts or time have run out.
    fn next_wait(&mut self, io: &mut impl Io, retry_after_secs: Option<u32>) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let wait = match retry_after_secs {
            Some(secs) => Duration::from_secs(secs.into()).min(self.policy.max_delay),
            None => {
                let exp = self.attempts.saturating_sub(1).min(30);
                let ceiling = self
                    .policy
                    .base_delay
                    .saturating_mul(1 << exp)
                    .min(self.policy.max_delay);
                // Full jitter: anywhere from zero up to the ceiling, uniformly.
                let ceiling_ms = ceiling.as_millis().min(u64::MAX.into());
                let fraction = u128::from(io.random());
                let ms = ceiling_ms * fraction / u128::from(u64::MAX);
                Duration::from_millis(ms as u64)
            }
        };
        if io.elapsed() + wait > self.policy.budget {
            return None;
        }
        self.attempts += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeIo;
    use crate::wit::{Status, VideoRequest};

    fn answer(status: u16, body: &str) -> Result<HttpResponse, SendError> {
        Ok(HttpResponse {
            status,
            retry_after: None,
            body: Ok(body.as_bytes().to_vec()),
        })
    }

    fn run_json(id: &str, client_ref: Option<&str>) -> String {
        serde_json::json!({"id": id, "status_code": "queued", "client_ref": client_ref,
            "created_at": "2026-12-04T10:00:00+00:00"})
        .to_string()
    }

    fn listing(runs: &[String]) -> String {
        format!("{{\"items\": [{}]}}", runs.join(","))
    }

    fn settings() -> Settings {
        let mut s = Settings::from_lookup(|name| {
            (name == crate::config::API_KEY_VAR).then(|| "sk_test_secret".to_string())
        })
        .unwrap();
        s.base_url = "http://127.0.0.1:1".into();
        s
    }

    fn video() -> VideoRequest {
        VideoRequest {
            prompt: "A short film about tea".into(),
            orientation: None,
            avatar: None,
            voice: None,
            style_id: None,
            file_urls: vec![],
            incognito_mode: None,
        }
    }

    fn with_ref(client_ref: Option<&str>) -> RunOptions {
        RunOptions {
            callback_url: None,
            metadata: None,
            client_ref: client_ref.map(Into::into),
        }
    }

    #[test]
    fn create_sends_exact_headers_and_body() {
        let mut io = FakeIo::new(vec![answer(201, &run_json("r1", None))]);

        let run = create_run(&mut io, &settings(), &video(), &with_ref(None)).unwrap();

        let sent = &io.sent[0];
        let body = sent.body.as_ref().unwrap();
        assert_eq!(run.id, "r1");
        assert_eq!(sent.url, format!("http://127.0.0.1:1{CREATE_PATH}"));
        assert!(sent
            .headers
            .contains(&("authorization", "Bearer sk_test_secret".into())));
        assert!(sent
            .headers
            .contains(&("content-length", body.len().to_string())));
        assert_eq!(
            body.as_slice(),
            br#"{"input":{"prompt":"A short film about tea"}}"#
        );
    }

    #[test]
    fn invalid_input_sends_nothing() {
        let mut io = FakeIo::new(vec![]);
        let blank = VideoRequest {
            prompt: "  ".into(),
            ..video()
        };

        let err = create_run(&mut io, &settings(), &blank, &with_ref(None)).unwrap_err();

        assert!(matches!(err, RunError::PermanentInvalidRequest(_)));
        assert!(io.sent.is_empty());
    }

    #[test]
    fn poll_retries_server_errors_then_succeeds() {
        let mut io = FakeIo::new(vec![
            answer(502, "<html>bad gateway</html>"),
            Err(SendError::Unknown("ConnectionTerminated".into())),
            answer(200, &run_json("r1", None)),
        ]);

        let run = poll_run(&mut io, &settings(), "r1").unwrap();

        assert_eq!(run.id, "r1");
        assert_eq!(io.sent.len(), 3);
        assert_eq!(io.slept, [Duration::from_secs(1), Duration::from_secs(2)]);
    }

    #[test]
    fn a_poll_answered_with_the_same_id_in_another_case_is_accepted() {
        let mut io = FakeIo::new(vec![answer(200, &run_json("01936f0e-abcd", None))]);

        let run = poll_run(&mut io, &settings(), "01936F0E-ABCD").unwrap();

        assert_eq!(run.id, "01936f0e-abcd");
    }

    #[test]
    fn a_poll_answered_with_another_run_is_an_invalid_response() {
        let mut io = FakeIo::new(vec![answer(200, &run_json("someone-elses", None))]);

        let err = poll_run(&mut io, &settings(), "mine").unwrap_err();

        assert!(
            matches!(&err, RunError::InvalidResponse(m) if m.contains("mine") && m.contains("someone-elses")),
            "{err:?}"
        );
    }

    #[test]
    fn a_created_run_with_an_unpollable_id_is_an_invalid_response() {
        let mut io = FakeIo::new(vec![answer(200, &run_json("bad\u{1b}[2Jid", None))]);

        let err = create_run(&mut io, &settings(), &video(), &with_ref(None)).unwrap_err();

        assert!(
            matches!(&err, RunError::InvalidResponse(m) if m.contains("cannot be polled")),
            "{err:?}"
        );
    }

    #[test]
    fn an_error_answer_too_large_to_read_says_so_instead_of_empty() {
        let huge = HttpResponse {
            status: 400,
            retry_after: None,
            body: Err(BodyError::TooLarge),
        };
        let mut io = FakeIo::new(vec![Ok(huge)]);

        let err = poll_run(&mut io, &settings(), "r").unwrap_err();

        let RunError::PermanentBadRequest(api) = err else {
            panic!("expected the 400 to stay a refusal, got {err:?}");
        };
        let excerpt = api.body_excerpt.unwrap_or_default();
        assert!(excerpt.contains("larger than 1 MiB"), "{excerpt}");
    }

    #[test]
    fn poll_honours_a_capped_retry_after() {
        let mut limited = answer(429, r#"{"code":"RATE_LIMITED","message":"slow down"}"#).unwrap();
        limited.retry_after = Some("3".into());
        let mut huge = limited.clone();
        huge.retry_after = Some("100000".into());
        let mut io = FakeIo::new(vec![
            Ok(limited),
            Ok(huge),
            answer(200, &run_json("r", None)),
        ]);

        poll_run(&mut io, &settings(), "r").unwrap();

        assert_eq!(io.slept, [Duration::from_secs(3), Duration::from_secs(32)]);
    }

    #[test]
    fn poll_gives_up_after_the_attempt_limit() {
        let mut io = FakeIo::new((0..5).map(|_| answer(500, "")).collect());

        let err = poll_run(&mut io, &settings(), "r").unwrap_err();

        assert!(matches!(err, RunError::ServerError(e) if e.http_status == 500));
        assert_eq!(io.sent.len(), 5);
    }

    #[test]
    fn poll_stops_when_the_time_budget_would_be_overrun() {
        let mut s = settings();
        s.retry.budget = Duration::from_millis(2500);
        let mut io = FakeIo::new((0..5).map(|_| answer(503, "")).collect());

        poll_run(&mut io, &s, "r").unwrap_err();

        assert_eq!(io.slept, [Duration::from_secs(1)]);
    }

    #[test]
    fn poll_does_not_retry_permanent_answers() {
        let mut io = FakeIo::new(vec![answer(
            404,
            r#"{"code":"RUN_NOT_FOUND","message":"no"}"#,
        )]);

        let err = poll_run(&mut io, &settings(), "missing").unwrap_err();

        assert!(
            matches!(err, RunError::PermanentNotFound(e) if e.code.as_deref() == Some("RUN_NOT_FOUND"))
        );
        assert_eq!(io.sent.len(), 1);
    }

    #[test]
    fn create_retries_only_what_surely_did_not_land() {
        let mut io = FakeIo::new(vec![
            answer(429, ""),
            Err(SendError::NotSent("ConnectionRefused".into())),
            answer(201, &run_json("r1", None)),
        ]);

        create_run(&mut io, &settings(), &video(), &with_ref(None)).unwrap();

        assert_eq!(io.methods(), [Method::Post, Method::Post, Method::Post]);
    }

    #[test]
    fn a_lost_create_without_client_ref_is_never_resent() {
        for first in [
            Err(SendError::Unknown("ConnectionTerminated".into())),
            answer(502, ""),
            answer(201, "{\"trunc"),
        ] {
            let mut io = FakeIo::new(vec![first]);

            let err = create_run(&mut io, &settings(), &video(), &with_ref(None)).unwrap_err();

            assert!(
                matches!(err, RunError::PermanentOutcomeUnknown(_)),
                "{err:?}"
            );
            assert_eq!(io.sent.len(), 1);
        }
    }

    #[test]
    fn an_existing_run_with_the_client_ref_is_returned_without_creating() {
        let others = run_json("someone-else", Some("other"));
        let ours = run_json("r-ours", Some("order-1"));
        let mut io = FakeIo::new(vec![answer(200, &listing(&[others, ours]))]);

        let run = create_run(&mut io, &settings(), &video(), &with_ref(Some("order-1"))).unwrap();

        assert_eq!(run.id, "r-ours");
        assert_eq!(io.methods(), [Method::Get]);
        assert!(io.sent[0]
            .url
            .ends_with("/v1/runs?q=client_ref:order-1&limit=20"));
    }

    #[test]
    fn a_lost_create_is_found_by_its_client_ref() {
        let mut io = FakeIo::new(vec![
            answer(200, &listing(&[])),
            Err(SendError::Unknown("ConnectionTerminated".into())),
            answer(200, &listing(&[run_json("r-landed", Some("order-1"))])),
        ]);

        let run = create_run(&mut io, &settings(), &video(), &with_ref(Some("order-1"))).unwrap();

        assert_eq!(run.id, "r-landed");
        assert!(matches!(run.status, Status::Queued));
        assert_eq!(io.methods(), [Method::Get, Method::Post, Method::Get]);
    }

    #[test]
    fn a_lost_create_that_cannot_be_found_is_retryable_with_its_client_ref() {
        let mut io = FakeIo::new(vec![
            answer(200, &listing(&[])),
            Err(SendError::Unknown("HttpResponseTimeout".into())),
            answer(200, &listing(&[])),
        ]);

        let err =
            create_run(&mut io, &settings(), &video(), &with_ref(Some("order-1"))).unwrap_err();

        assert!(
            matches!(&err, RunError::OutcomeUnknown(u) if u.client_ref.as_deref() == Some("order-1")),
            "{err:?}"
        );
    }

    #[test]
    fn a_server_error_on_create_with_client_ref_is_checked_then_retryable() {
        let mut io = FakeIo::new(vec![
            answer(200, &listing(&[])),
            answer(500, r#"{"code":"INTERNAL","message":"oops"}"#),
            answer(200, &listing(&[])),
        ]);

        let err =
            create_run(&mut io, &settings(), &video(), &with_ref(Some("order-1"))).unwrap_err();

        assert!(matches!(err, RunError::ServerError(e) if e.http_status == 500));
        assert_eq!(io.methods(), [Method::Get, Method::Post, Method::Get]);
    }

    #[test]
    fn runs_listed_under_another_client_ref_are_not_trusted() {
        let mut io = FakeIo::new(vec![
            answer(200, &listing(&[run_json("wrong", Some("order-10"))])),
            answer(201, &run_json("new", Some("order-1"))),
        ]);

        let run = create_run(&mut io, &settings(), &video(), &with_ref(Some("order-1"))).unwrap();

        assert_eq!(run.id, "new");
    }

    #[test]
    fn an_echoed_key_is_masked_everywhere_in_errors_in_any_case() {
        let echo = r#"{"code":"SK_TEST_SECRET","message":"m",
            "errors":[{"field":"sk_test_secret","message":"bad Bearer Sk_Test_Secret"}]}"#;
        for answer_body in [echo, "garbage Bearer sk_test_secret"] {
            let status = if answer_body == echo { 400 } else { 200 };
            let mut io = FakeIo::new(vec![answer(status, answer_body)]);

            let err = poll_run(&mut io, &settings(), "r").unwrap_err();
            let text = format!("{:?}", redacted(err, "sk_test_secret"));

            assert!(
                !text.to_ascii_lowercase().contains("sk_test_secret"),
                "{text}"
            );
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn a_denied_request_is_permanent_and_names_the_origin() {
        let mut io = FakeIo::new(vec![Err(SendError::Denied("HttpRequestDenied".into()))]);

        let err = poll_run(&mut io, &settings(), "r").unwrap_err();

        assert!(matches!(err, RunError::PermanentRequestDenied(m) if m.contains("127.0.0.1:1")));
    }
}
