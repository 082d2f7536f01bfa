//! Property tests: no answer, however malformed, makes the component panic. In the
//! component a panic is a trap, which would fail the caller's whole activity instead of
//! returning an error it can act on.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

use crate::client::{create_run, poll_run};
use crate::config::{Settings, API_KEY_VAR};
use crate::io::{BodyError, HttpResponse, Method, SendError};
use crate::response::{error_for_status, is_terminal, parse_api_error, parse_run, parse_run_list};
use crate::testing::FakeIo;
use crate::wit::{RunOptions, VideoRequest};

/// Field names Runflow uses, so generated objects hit the parsing paths, plus noise.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "status_code",
            "status",
            "output",
            "outputs",
            "url",
            "type",
            "cost",
            "cost_breakdown",
            "unit",
            "quantity",
            "duration",
            "duration_ms",
            "created_at",
            "client_ref",
            "metadata",
            "failure_code",
            "failure_message",
            "image_urls",
            "video",
            "items",
            "data",
            "code",
            "message",
            "error",
            "errors",
            "detail",
            "loc",
            "field",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "queued",
            "running",
            "succeeded",
            "partial_succeeded",
            "cancelled",
            "errored",
            "second",
            "https://x/v.mp4",
            "",
        ])
        .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: arbitrary JSON, or arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json().prop_map(|v| v.to_string().into_bytes()),
        vec(any::<u8>(), 0..300),
    ]
}

fn answer() -> impl Strategy<Value = Result<HttpResponse, SendError>> {
    let status = prop_oneof![
        prop::sample::select(vec![
            200u16, 201, 202, 400, 401, 404, 409, 422, 429, 500, 503
        ]),
        any::<u16>(),
    ];
    let body = prop_oneof![
        4 => body().prop_map(Ok),
        1 => Just(Err(BodyError::TooLarge)),
        1 => ".{0,20}".prop_map(|m| Err(BodyError::Broken(m))),
    ];
    prop_oneof![
        6 => (status, proptest::option::of(".{0,12}"), body).prop_map(|(status, retry_after, body)| {
            Ok(HttpResponse { status, retry_after, body })
        }),
        1 => ".{0,20}".prop_map(|m| Err(SendError::NotSent(m))),
        1 => ".{0,20}".prop_map(|m| Err(SendError::Unknown(m))),
        1 => ".{0,20}".prop_map(|m| Err(SendError::Denied(m))),
    ]
}

fn settings() -> Settings {
    Settings::from_lookup(|name| (name == API_KEY_VAR).then(|| "sk_prop".to_string()))
        .expect("valid settings")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_or_bytes_reads_as_a_run_or_an_error(bytes in body()) {
        if let Ok(run) = parse_run(&bytes) {
            prop_assert_eq!(run.terminal, is_terminal(&run.status));
        }
        let _ = parse_run_list(&bytes);
    }

    #[test]
    fn any_error_answer_maps_to_a_case(status in any::<u16>(), bytes in body(), secret in ".{0,8}") {
        let error = parse_api_error(status, &bytes, None, &secret);

        if let Some(excerpt) = &error.body_excerpt {
            prop_assert!(excerpt.chars().count() <= crate::response::EXCERPT_CHARS + 3);
            if secret.chars().count() >= 4 {
                prop_assert!(!excerpt.contains(&secret) || "[redacted]".contains(&secret));
            }
        }
        let _ = error_for_status(error);
    }

    #[test]
    fn poll_survives_any_sequence_of_answers(answers in vec(answer(), 16)) {
        let mut io = FakeIo::new(answers);

        let _ = poll_run(&mut io, &settings(), "r-1");

        prop_assert!(io.sent.iter().all(|r| r.method == Method::Get));
    }

    #[test]
    fn create_never_resends_a_post_that_may_have_landed(
        answers in vec(answer(), 16),
        client_ref in proptest::option::of("[a-z0-9-]{1,12}"),
    ) {
        let mut io = FakeIo::new(answers.clone());
        let video = VideoRequest {
            prompt: "p".into(), orientation: None, avatar: None, voice: None, style_id: None,
            file_urls: vec![], incognito_mode: None,
        };
        let options = RunOptions { callback_url: None, metadata: None, client_ref };

        let _ = create_run(&mut io, &settings(), &video, &options);

        // Every POST but the last must have met an answer that proves it did not land.
        let posts: Vec<usize> = io.sent.iter().enumerate()
            .filter(|(_, r)| r.method == Method::Post)
            .map(|(i, _)| i)
            .collect();
        for &i in posts.iter().rev().skip(1) {
            let surely_not_landed = match &answers[i] {
                Err(SendError::NotSent(_)) => true,
                Ok(a) => a.status == 429,
                _ => false,
            };
            prop_assert!(surely_not_landed, "POST {} was re-sent after {:?}", i, answers[i]);
        }
    }
}
