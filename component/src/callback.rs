//! Checking and reading the callbacks Runflow POSTs when a run ends.
//!
//! The signature is the lowercase hex HMAC-SHA256 of the raw body, keyed with the secret
//! string exactly as issued (its `whsec_` prefix is part of the key, and nothing is
//! base64-decoded). Comparison goes through `hmac`'s constant-time check, so the time taken
//! says nothing about how many leading bytes matched.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::bindings::exports::runflow::heygen_video_agent::callbacks::{
    CallbackError, CallbackEvent, EventKind,
};
use crate::response::{outputs_of, parse_status, text, whole_number};
use crate::wit::{Failure, Status};

/// The length of a hex-encoded SHA-256 digest.
const SIGNATURE_HEX_LEN: usize = 64;

/// Returns the index of the first secret whose signature of `body` equals `header`.
pub fn verify_signature(
    body: &[u8],
    header: &str,
    secrets: &[String],
) -> Result<u32, CallbackError> {
    if secrets.iter().all(|s| s.is_empty()) {
        return Err(CallbackError::PermanentNoSecret);
    }
    let expected = decode_signature(header.trim())?;

    for (index, secret) in secrets.iter().enumerate() {
        if secret.is_empty() {
            continue;
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(index as u32);
        }
    }
    Err(CallbackError::PermanentSignatureMismatch)
}

/// Reads a `Runflow-Signature` value: exactly 64 lowercase hex digits.
fn decode_signature(header: &str) -> Result<[u8; 32], CallbackError> {
    let malformed = |why: String| CallbackError::PermanentMalformedSignature(why);
    if header.is_empty() {
        return Err(malformed("the signature is empty".into()));
    }
    if header.len() != SIGNATURE_HEX_LEN {
        return Err(malformed(format!(
            "the signature has {} characters; a Runflow signature has {SIGNATURE_HEX_LEN} hex digits",
            header.chars().count()
        )));
    }
    let mut digest = [0u8; 32];
    for (i, pair) in header.as_bytes().chunks(2).enumerate() {
        let (Some(high), Some(low)) = (lower_hex(pair[0]), lower_hex(pair[1])) else {
            return Err(malformed(
                "the signature must be lowercase hex digits (0-9, a-f) only".into(),
            ));
        };
        digest[i] = high << 4 | low;
    }
    Ok(digest)
}

fn lower_hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Reads a callback body into an event.
pub fn parse_event(body: &[u8]) -> Result<CallbackEvent, CallbackError> {
    let invalid = |why: String| CallbackError::PermanentInvalidBody(why);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not JSON ({e})")))?;
    let Some(obj) = value.as_object() else {
        return Err(invalid("the body is not a JSON object".into()));
    };
    let Some(run_id) = text(obj, &["run_id", "id"]).filter(|id| !id.is_empty()) else {
        return Err(invalid("the body has no `run_id`".into()));
    };

    let event = text(obj, &["event", "type"]);
    let status = text(obj, &["status", "status_code"]).map(|s| parse_status(Some(&s)));
    // Either one implies the other when only one was sent.
    let kind = match event {
        Some(event) => kind_of(event),
        None => FINAL
            .iter()
            .find(|(_, final_status)| status.as_ref() == Some(final_status))
            .map_or(EventKind::Other(String::new()), |(kind, _)| kind.clone()),
    };
    let status = status.unwrap_or_else(|| {
        FINAL
            .iter()
            .find(|(final_kind, _)| *final_kind == kind)
            .map_or(Status::Other(String::new()), |(_, status)| status.clone())
    });
    let output = obj.get("output").filter(|v| !v.is_null());
    let envelope = output
        .and_then(|o| o.get("error"))
        .and_then(Value::as_object);

    Ok(CallbackEvent {
        kind,
        run_id,
        status,
        outputs: output.map(outputs_of).unwrap_or_default(),
        output_json: output.map(Value::to_string),
        failure: envelope.map(|e| Failure {
            code: text(e, &["code"]),
            message: text(e, &["message"]),
            stage: text(e, &["stage", "stage_code"]),
        }),
        duration_ms: obj.get("duration_ms").and_then(whole_number),
        created_at: text(obj, &["created_at"]),
        completed_at: text(obj, &["completed_at"]),
        metadata: obj
            .get("metadata")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
    })
}

/// Each final event and the status a run has when it is sent.
const FINAL: [(EventKind, Status); 4] = [
    (EventKind::RunCompleted, Status::Succeeded),
    (EventKind::RunFailed, Status::Failed),
    (EventKind::RunCancelled, Status::Canceled),
    (EventKind::RunPartialSucceeded, Status::PartialSucceeded),
];

fn kind_of(event: String) -> EventKind {
    match event.as_str() {
        "run.completed" | "run.succeeded" => EventKind::RunCompleted,
        "run.failed" => EventKind::RunFailed,
        "run.cancelled" | "run.canceled" => EventKind::RunCancelled,
        "run.partial_succeeded" => EventKind::RunPartialSucceeded,
        _ => EventKind::Other(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::Status;

    const BODY: &[u8] = include_bytes!("../tests/fixtures/callback-succeeded.json");
    const SIG_FILE: &str = include_str!("../tests/fixtures/callback-succeeded.sig");

    fn fixture(label: &str) -> String {
        SIG_FILE
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .expect("the fixture names it")
    }

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_documented_vector_verifies() {
        let signature = fixture("Runflow-Signature:");
        let secret = fixture("secret:");

        assert_eq!(
            verify_signature(BODY, &signature, &secrets(&[&secret])),
            Ok(0)
        );
        assert_eq!(
            verify_signature(BODY, &signature, &secrets(&["whsec_new", &secret])),
            Ok(1),
            "the previous secret still verifies during rotation"
        );
    }

    #[test]
    fn tampering_and_wrong_secrets_are_mismatches() {
        let signature = fixture("Runflow-Signature:");
        let secret = fixture("secret:");
        let mut changed = BODY.to_vec();
        changed[10] ^= 1;
        let stripped = secret.trim_start_matches("whsec_").to_string();

        for (body, key) in [
            (&changed[..], secret.clone()),
            (BODY, "whsec_other".into()),
            (BODY, stripped),
        ] {
            assert_eq!(
                verify_signature(body, &signature, &[key]),
                Err(CallbackError::PermanentSignatureMismatch)
            );
        }
    }

    #[test]
    fn malformed_headers_are_their_own_error() {
        let signature = fixture("Runflow-Signature:");
        let secret = secrets(&[&fixture("secret:")]);

        for bad in [
            signature.to_uppercase(),
            signature[..63].to_string(),
            format!("sha256={signature}"),
            String::new(),
            "zz".repeat(32),
        ] {
            assert!(
                matches!(
                    verify_signature(BODY, &bad, &secret),
                    Err(CallbackError::PermanentMalformedSignature(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature(BODY, &signature, &[]),
            Err(CallbackError::PermanentNoSecret)
        );
    }

    #[test]
    fn the_documented_body_reads_as_a_completed_event() {
        let event = parse_event(BODY).unwrap();

        assert_eq!(event.kind, EventKind::RunCompleted);
        assert_eq!(event.run_id, "01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90");
        assert!(matches!(event.status, Status::Succeeded));
        assert_eq!(event.outputs.len(), 1);
        assert_eq!(event.duration_ms, Some(252310));
        assert_eq!(
            event.created_at.as_deref(),
            Some("2026-12-04T10:00:00.123456+00:00")
        );
        assert_eq!(event.metadata.as_deref(), Some(r#"{"campaign":"winter"}"#));
        assert!(event.failure.is_none());
    }

    #[test]
    fn failures_unknown_kinds_and_bad_bodies() {
        let failed = br#"{"event":"run.failed","run_id":"r","status":"failed",
            "output":{"error":{"code":"PROVIDER_ERROR","message":"no"}}}"#;
        let unknown = br#"{"event":"run.paused","run_id":"r","status":"paused"}"#;

        let failed = parse_event(failed).unwrap();
        let unknown = parse_event(unknown).unwrap();

        assert_eq!(
            failed.failure.unwrap().code.as_deref(),
            Some("PROVIDER_ERROR")
        );
        assert_eq!(unknown.kind, EventKind::Other("run.paused".into()));
        assert!(matches!(unknown.status, Status::Other(s) if s == "paused"));
        for bad in [&b"not json"[..], b"[1]", b"{\"event\":\"run.failed\"}"] {
            assert!(matches!(
                parse_event(bad),
                Err(CallbackError::PermanentInvalidBody(_))
            ));
        }
    }

    #[test]
    fn a_missing_event_or_status_is_implied_by_the_other() {
        let no_event = br#"{"run_id":"r","status":"succeeded"}"#;
        let no_status = br#"{"run_id":"r","event":"run.cancelled"}"#;
        let neither = br#"{"id":"r"}"#;

        let no_event = parse_event(no_event).unwrap();
        let no_status = parse_event(no_status).unwrap();
        let neither = parse_event(neither).unwrap();

        assert_eq!(no_event.kind, EventKind::RunCompleted);
        assert_eq!(no_status.status, Status::Canceled);
        assert_eq!(neither.kind, EventKind::Other(String::new()));
        assert_eq!(neither.status, Status::Other(String::new()));
    }
}
