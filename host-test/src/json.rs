//! The JSON and text forms of runs and errors that the command-line tool prints.
//!
//! Field names follow the WIT contract with `_` for `-`; error kinds are the WIT case names
//! exactly (`permanent-not-found`), so a script can tell retryable errors by the prefix.

use serde_json::{json, Value};

use crate::runtime::{
    ApiError, CallbackError, CallbackEvent, EventKind, Output, Run, RunError, Status,
};

/// The WIT name of a status.
pub fn status_name(status: &Status) -> &str {
    match status {
        Status::Queued => "queued",
        Status::Dispatching => "dispatching",
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::PartialSucceeded => "partial-succeeded",
        Status::Failed => "failed",
        Status::Canceled => "canceled",
        Status::Other(raw) => raw,
    }
}

/// JSON text from the component, parsed back (kept as a string if it does not parse).
fn parse(text: &Option<String>) -> Option<Value> {
    text.as_deref()
        .map(|t| serde_json::from_str::<Value>(t).unwrap_or_else(|_| json!(t)))
}

fn outputs_json(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .map(|o| {
            json!({
                "media_type": o.media_type,
                "url": o.url,
                "raw": serde_json::from_str::<Value>(&o.raw_json).unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// A run as one JSON object.
pub fn run_json(run: &Run) -> Value {
    json!({
        "id": run.id,
        "status": status_name(&run.status),
        "status_known": !matches!(run.status, Status::Other(_)),
        "terminal": run.terminal,
        "outputs": outputs_json(&run.outputs),
        "output": parse(&run.output_json),
        "failure": run.failure.as_ref().map(|f| json!({
            "code": f.code, "message": f.message, "stage": f.stage,
        })),
        "cost": run.cost,
        "video_seconds": run.video_seconds,
        "duration_ms": run.duration_ms,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "client_ref": run.client_ref,
        "metadata": parse(&run.metadata),
        "model_id": run.model_id,
    })
}

/// The WIT case name of an error.
pub fn error_kind(error: &RunError) -> &'static str {
    match error {
        RunError::ExecutionFailed => "execution-failed",
        RunError::PermanentInvalidRequest(_) => "permanent-invalid-request",
        RunError::PermanentBadConfiguration(_) => "permanent-bad-configuration",
        RunError::PermanentRequestDenied(_) => "permanent-request-denied",
        RunError::PermanentBadRequest(_) => "permanent-bad-request",
        RunError::PermanentUnauthorized(_) => "permanent-unauthorized",
        RunError::PermanentInsufficientCredit(_) => "permanent-insufficient-credit",
        RunError::PermanentForbidden(_) => "permanent-forbidden",
        RunError::PermanentNotFound(_) => "permanent-not-found",
        RunError::PermanentValidationFailed(_) => "permanent-validation-failed",
        RunError::PermanentRejected(_) => "permanent-rejected",
        RunError::Conflict(_) => "conflict",
        RunError::RateLimited(_) => "rate-limited",
        RunError::ModelUnavailable(_) => "model-unavailable",
        RunError::ServerError(_) => "server-error",
        RunError::TransportFailed(_) => "transport-failed",
        RunError::InvalidResponse(_) => "invalid-response",
        RunError::OutcomeUnknown(_) => "outcome-unknown",
        RunError::PermanentOutcomeUnknown(_) => "permanent-outcome-unknown",
    }
}

/// The API error an error case carries, if it carries one.
pub fn api_error(error: &RunError) -> Option<&ApiError> {
    match error {
        RunError::PermanentBadRequest(e)
        | RunError::PermanentUnauthorized(e)
        | RunError::PermanentInsufficientCredit(e)
        | RunError::PermanentForbidden(e)
        | RunError::PermanentNotFound(e)
        | RunError::PermanentValidationFailed(e)
        | RunError::PermanentRejected(e)
        | RunError::Conflict(e)
        | RunError::RateLimited(e)
        | RunError::ModelUnavailable(e)
        | RunError::ServerError(e) => Some(e),
        _ => None,
    }
}

/// Whether calling again may succeed: every case whose name does not say `permanent`.
pub fn is_retryable(error: &RunError) -> bool {
    !error_kind(error).starts_with("permanent-")
}

/// An error as `{"kind": ..., "retryable": ..., "message": ..., details}`.
pub fn error_json(error: &RunError) -> Value {
    let mut out = json!({
        "kind": error_kind(error),
        "retryable": is_retryable(error),
        "message": error_message(error),
    });
    let details = match error {
        RunError::PermanentInvalidRequest(p) => json!({"field": p.field, "problem": p.problem}),
        RunError::TransportFailed(t) => json!({"not_sent": t.not_sent}),
        RunError::OutcomeUnknown(u) | RunError::PermanentOutcomeUnknown(u) => {
            json!({"client_ref": u.client_ref})
        }
        other => match api_error(other) {
            Some(e) => json!({
                "http_status": e.http_status,
                "code": e.code,
                "api_message": e.message,
                "field_problems": e.field_problems.iter()
                    .map(|p| json!({"field": p.field, "problem": p.problem}))
                    .collect::<Vec<_>>(),
                "retry_after_seconds": e.retry_after_seconds,
                "body_excerpt": e.body_excerpt,
            }),
            None => json!({}),
        },
    };
    if let (Some(out), Value::Object(details)) = (out.as_object_mut(), details) {
        out.extend(details);
    }
    out
}

/// One or two lines that say what went wrong and what to do.
pub fn error_message(error: &RunError) -> String {
    match error {
        RunError::ExecutionFailed => "the component failed unexpectedly; try again".into(),
        RunError::PermanentInvalidRequest(p) => format!("{} {}", p.field, p.problem),
        RunError::PermanentBadConfiguration(m) | RunError::PermanentRequestDenied(m) => m.clone(),
        RunError::TransportFailed(t) => format!(
            "no answer from Runflow ({}){}",
            t.message,
            if t.not_sent {
                "; the request was never sent. Check the network and the base URL, then retry"
            } else {
                "; retry in a moment"
            }
        ),
        RunError::InvalidResponse(m) => format!("Runflow's answer could not be read: {m}"),
        RunError::OutcomeUnknown(u) | RunError::PermanentOutcomeUnknown(u) => u.message.clone(),
        other => {
            let e = api_error(other).expect("every other case carries an API error");
            let remedy = match other {
                RunError::PermanentBadRequest(_) => "fix the request",
                RunError::PermanentUnauthorized(_) => {
                    "check RUNFLOW_API_KEY: it is missing, wrong or revoked"
                }
                RunError::PermanentInsufficientCredit(_) => {
                    "top up your Runflow credit, then run again"
                }
                RunError::PermanentForbidden(_) => "this key may not do that",
                RunError::PermanentNotFound(_) => {
                    "check the run id (runs of other organisations are not visible)"
                }
                RunError::PermanentValidationFailed(_) => "fix the fields listed",
                RunError::PermanentRejected(_) => "check RUNFLOW_BASE_URL and the request",
                RunError::Conflict(_) => {
                    "retry: the run is looked up before anything is created again"
                }
                RunError::RateLimited(_) => "too many requests; retry after a pause",
                RunError::ModelUnavailable(_) => "the model is unavailable; retry later",
                _ => "Runflow failed; retry with backoff",
            };
            let mut text = format!("Runflow answered HTTP {}", e.http_status);
            if let Some(code) = &e.code {
                text.push_str(&format!(" {code}"));
            }
            if let Some(message) = &e.message {
                text.push_str(&format!(": {}", message.trim_end_matches('.')));
            }
            for p in &e.field_problems {
                text.push_str(&format!("; {} {}", p.field, p.problem));
            }
            if let Some(excerpt) = &e.body_excerpt {
                text.push_str(&format!(": {excerpt}"));
            }
            format!("{text}. {remedy}")
        }
    }
}

/// The event name Runflow uses for a kind.
pub fn event_name(kind: &EventKind) -> &str {
    match kind {
        EventKind::RunCompleted => "run.completed",
        EventKind::RunFailed => "run.failed",
        EventKind::RunCancelled => "run.cancelled",
        EventKind::RunPartialSucceeded => "run.partial_succeeded",
        EventKind::Other(raw) => raw,
    }
}

/// A callback event as one JSON object, with the same field names as [`run_json`].
pub fn event_json(event: &CallbackEvent) -> Value {
    json!({
        "event": event_name(&event.kind),
        "run_id": event.run_id,
        "status": status_name(&event.status),
        "outputs": outputs_json(&event.outputs),
        "output": parse(&event.output_json),
        "failure": event.failure.as_ref().map(|f| json!({
            "code": f.code, "message": f.message, "stage": f.stage,
        })),
        "duration_ms": event.duration_ms,
        "created_at": event.created_at,
        "completed_at": event.completed_at,
        "metadata": parse(&event.metadata),
    })
}

/// The WIT case name of a callback error.
pub fn callback_error_kind(error: &CallbackError) -> &'static str {
    match error {
        CallbackError::ExecutionFailed => "execution-failed",
        CallbackError::PermanentNoSecret => "permanent-no-secret",
        CallbackError::PermanentMalformedSignature(_) => "permanent-malformed-signature",
        CallbackError::PermanentSignatureMismatch => "permanent-signature-mismatch",
        CallbackError::PermanentInvalidBody(_) => "permanent-invalid-body",
    }
}

/// What went wrong with a callback and what to do, in a line.
pub fn callback_error_message(error: &CallbackError) -> String {
    match error {
        CallbackError::ExecutionFailed => "the component failed unexpectedly; try again".into(),
        CallbackError::PermanentNoSecret => {
            "no callback secret: set RUNFLOW_CALLBACK_SECRET to the secret Runflow issued".into()
        }
        CallbackError::PermanentMalformedSignature(why) => {
            format!("the Runflow-Signature header is malformed: {why}")
        }
        CallbackError::PermanentSignatureMismatch => "the signature matches none of the secrets: \
             the body was changed or signed with another secret"
            .into(),
        CallbackError::PermanentInvalidBody(why) => format!("the body is not a callback: {why}"),
    }
}
