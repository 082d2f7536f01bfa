//! The real guest, fed arbitrary answers by the emulator, returns an error case and never
//! traps.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;

use host_test::emulator::Fault;
use host_test::runtime::CallError;

#[test]
fn arbitrary_answers_never_trap_the_guest() {
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (emulator, runtime) = tokio.block_on(common::setup());
    let bodies = prop_oneof![
        vec(any::<u8>(), 0..2048),
        "\\PC{0,200}".prop_map(String::into_bytes),
        Just(br#"{"id": null, "status_code": {"x": 1}, "output": [1, "a"]}"#.to_vec()),
    ];
    let statuses = prop_oneof![Just(200u16), Just(201), 100u16..600];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let case = std::sync::atomic::AtomicUsize::new(0);

    let sent_before = emulator.requests().len();
    runner
        .run(
            &(statuses, bodies, any::<bool>()),
            |(status, body, create)| {
                emulator.clear_faults();
                // A fresh reference each time, so the lookup finds nothing and the create is sent.
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let client_ref = format!("prop-{n}");
                let fault = Fault::answer(status, body);
                let result = tokio.block_on(async {
                    if create {
                        emulator.script_create(fault);
                        runtime
                            .create_run(&common::prompt("x"), &common::with_ref(&client_ref))
                            .await
                    } else {
                        emulator.script("GET", "/v1/runs/", fault);
                        runtime.poll_run("r-1").await
                    }
                });
                prop_assert!(
                    !matches!(result, Err(CallError::Trapped(_))),
                    "{:?}",
                    result
                );
                Ok(())
            },
        )
        .unwrap();

    assert!(
        emulator.requests().len() > sent_before + 64,
        "the faults were not exercised"
    );
}
