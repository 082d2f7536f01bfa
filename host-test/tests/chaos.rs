//! Hundreds of creates with client refs while the emulator injects random faults, each
//! retried the way a workflow engine retries: no client ref may ever end up with two runs.

mod common;

use std::time::Duration;

use common::{prompt, setup, with_ref};
use host_test::emulator::Fault;
use host_test::json::error_kind;
use host_test::runtime::CallError;

const CALLS: usize = 300;
const ENGINE_ATTEMPTS: usize = 12;

/// A small deterministic generator, so a failing seed can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_fault(rng: &mut XorShift) -> Fault {
    let status = |status: u16, body: &str| Fault::answer_after(status, body, "0");
    match rng.below(11) {
        0 => status(500, r#"{"code":"INTERNAL","message":"oops"}"#),
        1 => status(502, "<html>Bad Gateway</html>"),
        2 => status(503, r#"{"code":"MODEL_UNAVAILABLE","message":"busy"}"#),
        3 => status(429, r#"{"code":"RATE_LIMITED","message":"slow down"}"#),
        4 => status(409, r#"{"code":"CONFLICT","message":"in flight"}"#),
        5 => Fault::DropBeforeHandling,
        6 => Fault::DropAfterHandling,
        7 => Fault::Truncate,
        8 => Fault::Malformed,
        9 => Fault::Delay(Duration::from_millis(5)),
        _ => status(504, ""),
    }
}

#[tokio::test]
async fn every_client_ref_ends_with_at_most_one_run_and_usually_its_run() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    println!("chaos seed {seed} (set CHAOS_SEED to replay)");
    let mut rng = XorShift(seed);
    let (emulator, runtime) = setup().await;
    let mut created = 0;
    let mut engine_retries = 0;

    for call in 0..CALLS {
        let client_ref = format!("chaos-{call}");
        let mut outcome = None;
        for _ in 0..ENGINE_ATTEMPTS {
            for _ in 0..rng.below(3) {
                let (method, path) = if rng.below(2) == 0 {
                    ("POST", "/v1/models/")
                } else {
                    ("GET", "/v1/runs?")
                };
                emulator.script(method, path, random_fault(&mut rng));
            }

            match runtime
                .create_run(&prompt("A chaos monkey"), &with_ref(&client_ref))
                .await
            {
                Ok(run) => {
                    assert_eq!(run.client_ref.as_deref(), Some(client_ref.as_str()));
                    outcome = Some(run.id);
                    break;
                }
                Err(CallError::Run(e)) if !error_kind(&e).starts_with("permanent-") => {
                    engine_retries += 1;
                }
                Err(e) => panic!("{client_ref}: a call ended in a non-retryable error: {e:?}"),
            }
        }
        emulator.clear_faults();
        if outcome.is_some() {
            created += 1;
        }
    }

    let refs = emulator.client_refs();
    let mut counts = std::collections::BTreeMap::new();
    for client_ref in refs.iter().flatten() {
        *counts.entry(client_ref.clone()).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "runs made twice: {duplicated:?}");
    assert_eq!(refs.len(), counts.len(), "every run carries its client ref");
    assert!(
        created >= CALLS * 9 / 10,
        "only {created} of {CALLS} calls got their run"
    );
    println!(
        "{created} of {CALLS} creates returned their run after {engine_retries} engine retries; \
         {} runs in the ledger",
        refs.len()
    );
    assert!(
        engine_retries > 0,
        "the faults never reached the caller: the test proves nothing"
    );
}
