//! The command-line tool, driven as a user would drive it.

use std::process::{Command, Output};

use serde_json::Value;

fn heygen_agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_heygen-agent"));
    command
        .args(args)
        .env_remove("RUNFLOW_API_KEY")
        .env_remove("RUNFLOW_BASE_URL")
        .env("HEYGEN_EMULATOR_STEP_MS", "40");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running heygen-agent")
}

#[test]
fn run_with_the_emulator_ends_succeeded_with_a_video_url() {
    let out = heygen_agent(
        &[
            "run",
            "--emulator",
            "--json",
            "--poll-interval",
            "0.05",
            "A 30-second explainer about rooftop solar",
        ],
        &[],
    );

    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["terminal"], true);
    let url = run["outputs"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("video.mp4"),
        "{url}"
    );
}

#[test]
fn without_a_key_or_the_emulator_it_names_both_ways_forward() {
    let out = heygen_agent(&["run", "A cat explains taxes"], &[]);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("RUNFLOW_API_KEY"), "{stderr}");
    assert!(stderr.contains("--emulator"), "{stderr}");
}

#[test]
fn json_errors_name_the_wit_case() {
    let out = heygen_agent(&["create", "--emulator", "--json", "   "], &[]);

    let body: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(body["error"]["kind"], "permanent-invalid-request");
    assert_eq!(body["error"]["field"], "request.prompt");
    assert_eq!(body["error"]["retryable"], false);
}
