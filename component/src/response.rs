//! Reading what Runflow answers, liberally.
//!
//! Runflow's docs disagree with themselves in places, and gateways in front of it answer in
//! their own ways. So nothing here fails on a missing optional field, a `null`, an unknown
//! field, a number where a string was expected or an unknown status: all of that is read as
//! well as it can be, and only a body that carries no run id at all is refused. Nothing here
//! can panic on any input.

use serde_json::{Map, Value};

use crate::wit::{ApiError, Failure, FieldProblem, Output, Run, RunError, Status};

/// The most characters of a body quoted in an error.
pub const EXCERPT_CHARS: usize = 200;

/// Reads a Run object. The run may also come wrapped as `{"data": {...}}` or `{"run": {...}}`.
pub fn parse_run(body: &[u8]) -> Result<Run, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}): {}", excerpt(body, "")))?;
    run_from_value(&value).ok_or_else(|| {
        format!(
            "the body is JSON but not a run (it has no `id`): {}",
            excerpt(body, "")
        )
    })
}

/// Reads the runs in a listing answer: an object with `items` or `data` (or `runs`, or
/// `results`), or a bare array. Entries that are not runs are skipped.
pub fn parse_run_list(body: &[u8]) -> Result<Vec<Run>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the listing is not JSON ({e}): {}", excerpt(body, "")))?;
    let entries = match &value {
        Value::Array(entries) => entries,
        Value::Object(obj) => ["items", "data", "runs", "results"]
            .iter()
            .find_map(|key| obj.get(*key).and_then(Value::as_array))
            .ok_or_else(|| {
                format!(
                    "the listing has no `items` or `data` array: {}",
                    excerpt(body, "")
                )
            })?,
        _ => {
            return Err(format!(
                "the listing is not an object: {}",
                excerpt(body, "")
            ))
        }
    };
    Ok(entries.iter().filter_map(run_from_value).collect())
}

fn run_from_value(value: &Value) -> Option<Run> {
    let obj = value.as_object()?;
    if text(obj, &["id"]).is_none() {
        for key in ["data", "run"] {
            if let Some(inner) = obj.get(key).filter(|v| v.is_object()) {
                return run_from_value(inner);
            }
        }
        return None;
    }
    Some(run_from_object(obj))
}

fn run_from_object(obj: &Map<String, Value>) -> Run {
    let status = parse_status(text(obj, &["status_code", "status"]).as_deref());
    let output = obj.get("output").filter(|v| !v.is_null());
    let outputs = output.map(outputs_of).unwrap_or_default();

    let failure = Failure {
        code: text(obj, &["failure_code"]),
        message: text(obj, &["failure_message"]),
        stage: text(obj, &["failure_stage_code", "failure_stage"]),
    };
    let has_failure = failure.code.is_some() || failure.message.is_some();
    let failure = (has_failure || matches!(status, Status::Failed)).then_some(failure);

    Run {
        id: text(obj, &["id"]).unwrap_or_default(),
        terminal: is_terminal(&status),
        status,
        video_seconds: video_seconds(&outputs, obj.get("cost_breakdown")),
        outputs,
        output_json: output.map(Value::to_string),
        failure,
        cost: text(obj, &["cost"]),
        duration_ms: obj.get("duration_ms").and_then(whole_number),
        created_at: text(obj, &["created_at"]),
        started_at: text(obj, &["started_at"]),
        completed_at: text(obj, &["completed_at"]),
        client_ref: text(obj, &["client_ref"]),
        metadata: obj
            .get("metadata")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
        model_id: text(obj, &["model_id"]),
    }
}

/// Maps a status string to its case; unknown strings are kept, never refused.
pub fn parse_status(raw: Option<&str>) -> Status {
    let Some(raw) = raw else {
        return Status::Other(String::new());
    };
    match raw.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "queued" => Status::Queued,
        "dispatching" => Status::Dispatching,
        "running" => Status::Running,
        "succeeded" => Status::Succeeded,
        "partial_succeeded" => Status::PartialSucceeded,
        "failed" | "errored" => Status::Failed,
        "canceled" | "cancelled" => Status::Canceled,
        _ => Status::Other(raw.to_string()),
    }
}

/// Whether polling can stop. Unknown statuses are not terminal.
pub fn is_terminal(status: &Status) -> bool {
    matches!(
        status,
        Status::Succeeded | Status::PartialSucceeded | Status::Failed | Status::Canceled
    )
}

/// Collects the files of an `output` object: the documented `outputs` array, and the older
/// `image_urls` and `video.url` shapes.
pub(crate) fn outputs_of(output: &Value) -> Vec<Output> {
    let mut found = collect_outputs(output);
    found.truncate(MAX_OUTPUTS);
    found
}

/// The most outputs read from one run; a video run has one or two.
pub const MAX_OUTPUTS: usize = 100;

fn collect_outputs(output: &Value) -> Vec<Output> {
    let mut found = Vec::new();
    let Some(obj) = output.as_object() else {
        return found;
    };

    for entry in obj
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match entry {
            Value::String(url) => found.push(Output {
                media_type: None,
                url: url.clone(),
                raw_json: entry.to_string(),
            }),
            Value::Object(fields) => {
                if let Some(url) = text(fields, &["url", "uri"]) {
                    found.push(Output {
                        media_type: text(fields, &["type", "media_type"]),
                        url,
                        raw_json: entry.to_string(),
                    });
                }
            }
            _ => {}
        }
    }

    for entry in obj
        .get("image_urls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(url) = entry.as_str() {
            found.push(Output {
                media_type: Some("image".into()),
                url: url.to_string(),
                raw_json: entry.to_string(),
            });
        }
    }

    if let Some(video) = obj.get("video") {
        let url = match video {
            Value::String(url) => Some(url.clone()),
            Value::Object(fields) => text(fields, &["url"]),
            _ => None,
        };
        if let Some(url) = url {
            found.push(Output {
                media_type: Some("video".into()),
                url,
                raw_json: video.to_string(),
            });
        }
    }

    found
}

/// The video's length: an output entry's `duration` (seconds), else a cost breakdown billed
/// per second.
fn video_seconds(outputs: &[Output], breakdown: Option<&Value>) -> Option<f64> {
    let from_outputs = outputs.iter().find_map(|o| {
        let entry: Value = serde_json::from_str(&o.raw_json).ok()?;
        entry
            .get("duration")
            .or_else(|| entry.get("duration_seconds"))
            .and_then(decimal)
    });
    from_outputs.or_else(|| {
        let breakdown = breakdown?.as_object()?;
        let unit = text(breakdown, &["unit"])?;
        if unit.starts_with("second") {
            breakdown.get("quantity").and_then(decimal)
        } else {
            None
        }
    })
}

/// The first of `keys` that holds a string, number or boolean, as text.
pub(crate) fn text(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| match obj.get(*key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn decimal(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n)
}

pub(crate) fn whole_number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Replaces every occurrence of `secret` in `text`, in any letter case, with `[redacted]`.
/// Secrets shorter than four characters are left alone: masking them would garble text and
/// protect nothing.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 || text.len() < secret.len() {
        return text.to_string();
    }
    let lower_text = text.to_ascii_lowercase();
    let lower_secret = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower_text[rest..].find(&lower_secret) {
        let start = rest + found;
        out.push_str(&text[rest..start]);
        out.push_str("[redacted]");
        rest = start + lower_secret.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// A short, printable excerpt of a body: control characters and runs of whitespace become
/// one space, it is cut at [`EXCERPT_CHARS`], and `secret` (when not empty) is masked, in
/// case a gateway echoes the request back.
pub fn excerpt(body: &[u8], secret: &str) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    let text = redact(&String::from_utf8_lossy(body), secret);
    let mut out = String::new();
    let mut chars = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if chars == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        chars += 1;
    }
    format!("`{}`", out.trim_end())
}

/// Reads an error answer in any of the shapes Runflow and gateways use:
/// `{"code", "message", "errors": [...]}`, `{"error": {"code", "message"}}`,
/// `{"error": "text"}`, `{"detail": ...}`, HTML, plain text or nothing.
pub fn parse_api_error(
    status: u16,
    body: &[u8],
    retry_after: Option<u32>,
    secret: &str,
) -> ApiError {
    let mut error = ApiError {
        http_status: status,
        code: None,
        message: None,
        field_problems: Vec::new(),
        retry_after_seconds: retry_after,
        body_excerpt: None,
    };

    let parsed = serde_json::from_slice::<Value>(body).ok();
    let obj = parsed.as_ref().and_then(Value::as_object);
    if let Some(obj) = obj {
        let nested = obj.get("error").and_then(Value::as_object);
        error.code =
            text(obj, &["code", "error_code"]).or_else(|| nested.and_then(|n| text(n, &["code"])));
        error.message = text(obj, &["message"])
            .or_else(|| nested.and_then(|n| text(n, &["message"])))
            .or_else(|| text(obj, &["error", "detail"]));
        for key in ["errors", "detail"] {
            for entry in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                error.field_problems.push(field_problem(entry));
            }
        }
    }

    let recognised = error.code.is_some() || error.message.is_some();
    if !recognised {
        error.body_excerpt = Some(excerpt(body, secret));
    }
    if let Some(message) = &mut error.message {
        if !secret.is_empty() && message.contains(secret) {
            *message = message.replace(secret, "[redacted]");
        }
    }
    error
}

/// One entry of an `errors` (or FastAPI-style `detail`) array.
fn field_problem(entry: &Value) -> FieldProblem {
    let Some(obj) = entry.as_object() else {
        return FieldProblem {
            field: String::new(),
            problem: match entry {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
    };
    let field = text(obj, &["field", "path", "param"]).or_else(|| {
        let loc = obj.get("loc")?.as_array()?;
        let parts: Vec<String> = loc
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        Some(parts.join("."))
    });
    FieldProblem {
        field: field.unwrap_or_default(),
        problem: text(obj, &["message", "msg", "detail", "code"]).unwrap_or_default(),
    }
}

/// Maps an error answer to its case, by HTTP status (and Runflow's code where the status
/// alone is ambiguous).
pub fn error_for_status(error: ApiError) -> RunError {
    match error.http_status {
        400 => RunError::PermanentBadRequest(error),
        401 => RunError::PermanentUnauthorized(error),
        402 => RunError::PermanentInsufficientCredit(error),
        403 => RunError::PermanentForbidden(error),
        404 => RunError::PermanentNotFound(error),
        409 => RunError::Conflict(error),
        422 => RunError::PermanentValidationFailed(error),
        429 => RunError::RateLimited(error),
        503 if error.code.as_deref() == Some("MODEL_UNAVAILABLE") => {
            RunError::ModelUnavailable(error)
        }
        // 408 (the server gave up waiting for the request) is transient like a 5xx.
        408 | 500..=599 => RunError::ServerError(error),
        _ => RunError::PermanentRejected(error),
    }
}

/// Reads a numeric `Retry-After` (in seconds); HTTP dates and junk are ignored.
pub fn parse_retry_after(value: Option<&str>) -> Option<u32> {
    let value = value?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUED: &str = include_str!("../tests/fixtures/run-queued.json");
    const SUCCEEDED: &str = include_str!("../tests/fixtures/run-succeeded.json");
    const FAILED: &str = include_str!("../tests/fixtures/run-failed.json");
    const ERROR_422: &str = include_str!("../tests/fixtures/error-422.json");

    #[test]
    fn a_queued_run_reads_as_not_terminal() {
        let run = parse_run(QUEUED.as_bytes()).unwrap();

        assert_eq!(run.id, "01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90");
        assert!(matches!(run.status, Status::Queued));
        assert!(!run.terminal);
        assert!(run.outputs.is_empty());
        assert_eq!(run.output_json, None);
        assert_eq!(run.client_ref.as_deref(), Some("order-4711"));
        assert_eq!(run.metadata.as_deref(), Some(r#"{"campaign":"winter"}"#));
        assert!(run.failure.is_none());
    }

    #[test]
    fn a_succeeded_run_has_its_video_cost_and_length() {
        let run = parse_run(SUCCEEDED.as_bytes()).unwrap();

        assert!(matches!(run.status, Status::Succeeded));
        assert!(run.terminal);
        assert_eq!(run.outputs.len(), 1);
        assert_eq!(run.outputs[0].media_type.as_deref(), Some("video"));
        assert!(run.outputs[0].url.ends_with("video.mp4?sig=abc"));
        assert_eq!(run.cost.as_deref(), Some("1.0200"));
        assert_eq!(run.video_seconds, Some(30.0));
        assert_eq!(run.duration_ms, Some(252310));
        assert!(run.output_json.unwrap().contains("inference_ms"));
    }

    #[test]
    fn a_failed_run_carries_its_failure() {
        let run = parse_run(FAILED.as_bytes()).unwrap();

        let failure = run.failure.unwrap();
        assert!(run.terminal);
        assert_eq!(failure.code.as_deref(), Some("INPUT_VALIDATION_FAILED"));
        assert_eq!(failure.stage.as_deref(), Some("preprocess"));
    }

    #[test]
    fn statuses_are_read_liberally() {
        assert!(matches!(parse_status(Some("cancelled")), Status::Canceled));
        assert!(matches!(parse_status(Some("CANCELED")), Status::Canceled));
        assert!(matches!(parse_status(Some("errored")), Status::Failed));
        assert!(matches!(
            parse_status(Some("partial_succeeded")),
            Status::PartialSucceeded
        ));
        let other = parse_status(Some("paused_for_review"));
        assert!(matches!(&other, Status::Other(s) if s == "paused_for_review"));
        assert!(!is_terminal(&other));
    }

    #[test]
    fn odd_field_types_never_fail_the_read() {
        let body = br#"{"id": 42, "status_code": null, "cost": 1.02, "duration_ms": "1500",
            "created_at": 1733306400, "output": {"outputs": [{"type":"video"}, "https://x/v.mp4",
            7, {"url": "https://x/a.mp3", "type": "audio", "bitrate": 128}]},
            "metadata": null, "surprise": {"deep": [1,2,3]}}"#;

        let run = parse_run(body).unwrap();

        assert_eq!(run.id, "42");
        assert!(matches!(&run.status, Status::Other(s) if s.is_empty()));
        assert_eq!(run.cost.as_deref(), Some("1.02"));
        assert_eq!(run.duration_ms, Some(1500));
        assert_eq!(run.created_at.as_deref(), Some("1733306400"));
        assert_eq!(run.outputs.len(), 2);
        assert!(run.outputs[1].raw_json.contains("bitrate"));
        assert_eq!(run.metadata, None);
    }

    #[test]
    fn older_output_shapes_become_outputs() {
        let body = br#"{"id": "r", "status_code": "succeeded",
            "output": {"image_urls": ["https://x/1.png"], "video": {"url": "https://x/v.mp4"}}}"#;

        let run = parse_run(body).unwrap();

        let urls: Vec<_> = run.outputs.iter().map(|o| o.url.as_str()).collect();
        assert_eq!(urls, ["https://x/1.png", "https://x/v.mp4"]);
        assert_eq!(run.outputs[1].media_type.as_deref(), Some("video"));
    }

    #[test]
    fn wrapped_runs_and_listings_are_found() {
        let wrapped = br#"{"data": {"id": "r1", "status_code": "running"}}"#;
        let listing = br#"{"items": [{"id": "r1"}, {"nope": 1}, {"id": "r2"}], "next_pq": null}"#;
        let data_listing = br#"{"data": [{"id": "r3"}]}"#;

        assert_eq!(parse_run(wrapped).unwrap().id, "r1");
        assert_eq!(parse_run_list(listing).unwrap().len(), 2);
        assert_eq!(parse_run_list(data_listing).unwrap()[0].id, "r3");
        assert!(parse_run_list(b"{}").is_err());
    }

    #[test]
    fn bodies_that_are_not_runs_are_refused_with_an_excerpt() {
        let err = parse_run(b"<html><body>Bad gateway</body></html>").unwrap_err();

        assert!(err.contains("not JSON"));
        assert!(err.contains("Bad gateway"));
        assert!(parse_run(b"{\"status_code\": \"queued\"}").is_err());
        assert!(parse_run(b"").is_err());
    }

    #[test]
    fn runflow_error_bodies_keep_code_message_and_fields() {
        let error = parse_api_error(422, ERROR_422.as_bytes(), None, "");

        assert_eq!(error.code.as_deref(), Some("VALIDATION_ERROR"));
        assert_eq!(error.message.as_deref(), Some("Request validation failed"));
        assert_eq!(error.field_problems.len(), 1);
        assert_eq!(error.field_problems[0].field, "input.prompt");
        assert_eq!(error.field_problems[0].problem, "must not be empty");
        assert_eq!(error.body_excerpt, None);
        assert!(matches!(
            error_for_status(error),
            RunError::PermanentValidationFailed(_)
        ));
    }

    #[test]
    fn other_error_shapes_still_say_something() {
        let nested = parse_api_error(
            403,
            br#"{"error": {"code": "PERMISSION_DENIED", "message": "no"}}"#,
            None,
            "",
        );
        let plain = parse_api_error(400, br#"{"error": "bad shape"}"#, None, "");
        let html = parse_api_error(
            502,
            b"<html>\n\n<h1>502   Bad Gateway</h1></html>",
            None,
            "",
        );
        let empty = parse_api_error(500, b"", None, "");

        assert_eq!(nested.code.as_deref(), Some("PERMISSION_DENIED"));
        assert_eq!(plain.message.as_deref(), Some("bad shape"));
        assert_eq!(
            html.body_excerpt.as_deref(),
            Some("`<html> <h1>502 Bad Gateway</h1></html>`")
        );
        assert_eq!(empty.body_excerpt.as_deref(), Some("(empty body)"));
    }

    #[test]
    fn excerpts_are_short_and_mask_the_secret() {
        let long = format!("key=sk_live_123 {}", "x".repeat(1000));

        let cut = excerpt(long.as_bytes(), "sk_live_123");

        assert!(cut.contains("[redacted]"));
        assert!(!cut.contains("sk_live_123"));
        assert!(cut.chars().count() <= EXCERPT_CHARS + 3);
    }

    #[test]
    fn statuses_map_to_their_cases() {
        let case = |status: u16, code: Option<&str>| {
            let mut e = parse_api_error(status, b"", None, "");
            e.code = code.map(Into::into);
            error_for_status(e)
        };

        assert!(matches!(
            case(401, None),
            RunError::PermanentUnauthorized(_)
        ));
        assert!(matches!(
            case(402, None),
            RunError::PermanentInsufficientCredit(_)
        ));
        assert!(matches!(case(404, None), RunError::PermanentNotFound(_)));
        assert!(matches!(case(409, None), RunError::Conflict(_)));
        assert!(matches!(case(429, None), RunError::RateLimited(_)));
        assert!(matches!(
            case(503, Some("MODEL_UNAVAILABLE")),
            RunError::ModelUnavailable(_)
        ));
        assert!(matches!(case(503, None), RunError::ServerError(_)));
        assert!(matches!(case(418, None), RunError::PermanentRejected(_)));
        assert!(matches!(case(301, None), RunError::PermanentRejected(_)));
    }

    #[test]
    fn retry_after_is_numeric_seconds_only() {
        assert_eq!(parse_retry_after(Some(" 7 ")), Some(7));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(parse_retry_after(Some("99999999999999")), Some(u32::MAX));
        assert_eq!(parse_retry_after(None), None);
    }
}
