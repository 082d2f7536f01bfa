//! The command-line tool, driven as a user would drive it: the built binary, its arguments,
//! environment, exit codes and output, against an emulator on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use host_test::emulator::{Emulator, EmulatorConfig, Ending, Fault};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-agent");

/// A short emulator step, so a run ends in well under a second.
const STEP_MS: &str = "40";

/// The tool with nothing from this environment that could reach a real API.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUNFLOW_API_KEY")
        .env_remove("RUNFLOW_BASE_URL")
        .env_remove("NO_COLOR")
        .env("HEYGEN_EMULATOR_STEP_MS", STEP_MS);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn heygen_agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("running heygen-agent")
}

/// The tool pointed at an emulator running in this test, without blocking its runtime.
async fn against(emulator: &Emulator, args: &[&str]) -> Output {
    async_command(emulator, args)
        .output()
        .await
        .expect("running heygen-agent")
}

fn async_command(emulator: &Emulator, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(command(
        args,
        &[
            ("RUNFLOW_BASE_URL", emulator.base_url()),
            ("RUNFLOW_API_KEY", emulator.api_key()),
        ],
    ));
    // Both streams are captured, for `output()` and for a spawned child alike.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        step: Duration::from_millis(40),
        ..EmulatorConfig::default()
    })
    .await
    .expect("starting the emulator")
}

/// `heygen-agent emulator` in its own process, as a user would start it; killed on drop.
struct EmulatorProcess {
    child: Child,
    base_url: String,
    api_key: String,
}

impl EmulatorProcess {
    fn start(step_ms: u64) -> Self {
        let mut child = command(
            &["emulator", "--json", "--addr", "127.0.0.1:0"],
            &[("HEYGEN_EMULATOR_STEP_MS", &step_ms.to_string())],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting heygen-agent emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading the emulator's first line");
        let first: Value = serde_json::from_str(&line).expect("a JSON first line");
        Self {
            child,
            base_url: first["base_url"].as_str().expect("base_url").into(),
            api_key: first["api_key"].as_str().expect("api_key").into(),
        }
    }

    fn env(&self) -> [(&str, &str); 2] {
        [
            ("RUNFLOW_BASE_URL", self.base_url.as_str()),
            ("RUNFLOW_API_KEY", self.api_key.as_str()),
        ]
    }

    fn run(&self, args: &[&str]) -> Output {
        heygen_agent(args, &self.env())
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON object on stdout ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The body of the one create request the emulator received.
fn create_body(emulator: &Emulator) -> Value {
    let creates: Vec<Value> = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/runs"))
        .filter_map(|r| r.json())
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    creates[0].clone()
}

/// Sends SIGINT to a child this test started, by its id.
fn interrupt(pid: u32) {
    signal(pid, "INT");
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
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

    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let run = stdout_json(&out);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["terminal"], true);
    let url = run["outputs"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("video.mp4"),
        "{url}"
    );

    // In text, the links come with the warning that they end with the command.
    let plain = heygen_agent(
        &[
            "run",
            "--emulator",
            "--poll-interval",
            "0.05",
            "A short tour",
        ],
        &[],
    );
    assert!(plain.status.success(), "stderr: {}", text(&plain.stderr));
    assert!(text(&plain.stdout).contains("video.mp4"));
    assert!(
        text(&plain.stderr).contains("only until this command ends; add --download DIR"),
        "{}",
        text(&plain.stderr)
    );
}

#[test]
fn without_a_key_or_the_emulator_it_names_both_ways_forward() {
    let out = heygen_agent(&["run", "A cat explains taxes"], &[]);

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("RUNFLOW_API_KEY"), "{stderr}");
    assert!(stderr.contains("--emulator"), "{stderr}");
}

#[test]
fn a_malformed_base_url_is_a_configuration_error() {
    for base in [
        "ftp://127.0.0.1:1",
        "127.0.0.1:8080",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
    ] {
        let out = heygen_agent(
            &["poll", "r-1"],
            &[("RUNFLOW_API_KEY", "k"), ("RUNFLOW_BASE_URL", base)],
        );

        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{base}: {stderr}");
        assert!(stderr.contains("RUNFLOW_BASE_URL"), "{stderr}");
    }
}

#[test]
fn json_errors_name_the_wit_case() {
    let out = heygen_agent(&["create", "--emulator", "--json", "   "], &[]);

    let body = stdout_json(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(body["error"]["kind"], "permanent-invalid-request");
    assert_eq!(body["error"]["field"], "request.prompt");
    assert_eq!(body["error"]["retryable"], false);
}

#[test]
fn invalid_input_is_named_by_the_option_that_carries_it() {
    let style = heygen_agent(&["create", "--emulator", "A tour", "--style", " "], &[]);
    let url = heygen_agent(
        &[
            "create",
            "--emulator",
            "--json",
            "A tour",
            "--file-url",
            "https://example.com/a.png",
            "--file-url",
            "ftp://example.com/b.png",
        ],
        &[],
    );
    let escape = heygen_agent(&["create", "--emulator", "red \u{1b}[31m alert"], &[]);

    assert_eq!(style.status.code(), Some(2));
    assert!(
        text(&style.stderr).contains("--style"),
        "{}",
        text(&style.stderr)
    );
    let body = stdout_json(&url);
    assert_eq!(url.status.code(), Some(2));
    assert_eq!(body["error"]["field"], "request.file-urls[1]");
    assert_eq!(body["error"]["option"], "--file-url (number 2)");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("--file-url (number 2)"));
    assert_eq!(escape.status.code(), Some(2));
    assert!(
        text(&escape.stderr).contains("U+001B"),
        "{}",
        text(&escape.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_reaches_the_request_body() {
    let emulator = emulator().await;
    let callback = format!("{}/hooks/runflow", emulator.base_url());

    let out = against(
        &emulator,
        &[
            "create",
            "--json",
            "--orientation",
            "portrait",
            "--avatar",
            "Daphne",
            "--voice",
            "Aria",
            "--style",
            "style_noir_detective",
            "--file-url",
            "https://assets.example.com/logo.png",
            "--file-url",
            "https://assets.example.com/brief.pdf",
            "--incognito",
            "--metadata",
            "campaign=winter",
            "--metadata",
            "team=growth=2",
            "--client-ref",
            "order-4711",
            "--callback-url",
            &callback,
            "A 20-second teaser for our winter sale",
        ],
    )
    .await;

    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let body = create_body(&emulator);
    assert_eq!(
        body["input"],
        json!({
            "prompt": "A 20-second teaser for our winter sale",
            "orientation": "portrait",
            "avatar": "Daphne",
            "voice": "Aria",
            "style_id": "style_noir_detective",
            "file_urls": [
                "https://assets.example.com/logo.png",
                "https://assets.example.com/brief.pdf"
            ],
            "incognito_mode": true,
        })
    );
    assert_eq!(
        body["metadata"],
        json!({"campaign": "winter", "team": "growth=2"})
    );
    assert_eq!(body["client_ref"], "order-4711");
    assert_eq!(body["callback_url"], callback.as_str());
    let run = stdout_json(&out);
    assert_eq!(run["client_ref"], "order-4711");
    assert_eq!(run["metadata"]["campaign"], "winter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_comes_from_a_file_or_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "A tour of our bakery\n").unwrap();

    let emulator = emulator().await;
    let out = against(
        &emulator,
        &["create", "--prompt-file", file.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        create_body(&emulator)["input"]["prompt"],
        "A tour of our bakery"
    );

    let emulator = self::emulator().await;
    let mut child = async_command(&emulator, &["create"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"A cat explains compound interest\n")
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        create_body(&emulator)["input"]["prompt"],
        "A cat explains compound interest"
    );
}

#[test]
fn empty_huge_or_binary_prompt_sources_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("clip.mp4");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let empty_stdin = command(&["create", "--emulator"], &[])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let endless = heygen_agent(&["create", "--emulator", "--prompt-file", "/dev/zero"], &[]);
    let not_text = heygen_agent(
        &[
            "create",
            "--emulator",
            "--prompt-file",
            binary.to_str().unwrap(),
        ],
        &[],
    );

    for (out, words) in [
        (&empty_stdin, "stdin was empty"),
        (&endless, "larger than any prompt"),
        (&not_text, "not UTF-8 text"),
    ] {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(words), "{stderr}");
    }
}

#[test]
fn usage_errors_exit_2_with_and_without_json() {
    let cases: [&[&str]; 7] = [
        &["run", "--emulator", "--timeout", "5x", "p"],
        &["run", "--emulator", "--poll-interval", "0", "p"],
        &["run", "--emulator", "--metadata", "novalue", "p"],
        &["run", "--emulator", "--no-wait", "--download", "out", "p"],
        &["poll", "--emulator", "--timeout", "3s", "some-run"],
        &["estimate", "--seconds", "0"],
        &["estimate", "--seconds", "thirty"],
    ];
    for args in cases {
        let out = heygen_agent(args, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty(), "{args:?}");

        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = heygen_agent(&with_json, &[]);
        assert_eq!(out.status.code(), Some(2), "{with_json:?}");
        let error = &stdout_json(&out)["error"];
        assert_eq!(error["kind"], "usage", "{with_json:?}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // A mistyped option keeps clap's suggestion in the JSON message.
    let out = heygen_agent(&["run", "--emulator", "--json", "--timout", "5", "p"], &[]);
    let message = stdout_json(&out)["error"]["message"].to_string();
    assert!(message.contains("'--timeout'"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_3_in_text_and_in_json() {
    let emulator = emulator().await;

    emulator.script_create(Fault::End(Ending::Fail));
    let out = against(
        &emulator,
        &["run", "--poll-interval", "20ms", "A doomed video"],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("failed"), "{stdout}");
    assert!(stdout.contains("PROVIDER_ERROR"), "{stdout}");

    emulator.script_create(Fault::End(Ending::Fail));
    let out = against(
        &emulator,
        &["run", "--json", "--poll-interval", "20ms", "A doomed video"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let run = stdout_json(&out);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["failure"]["code"], "PROVIDER_ERROR");
}

#[test]
fn a_refused_key_exits_5_and_is_never_printed() {
    let emulator = EmulatorProcess::start(40);
    let key = "rf_live_do_not_print_me_4711";
    let env = [
        ("RUNFLOW_BASE_URL", emulator.base_url.as_str()),
        ("RUNFLOW_API_KEY", key),
    ];

    for json in [false, true] {
        let mut args = vec!["run", "A cat explains taxes"];
        if json {
            args.push("--json");
        }
        let out = heygen_agent(&args, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
        assert!(
            !stdout.contains(key) && !stderr.contains(key),
            "{stdout}{stderr}"
        );
        assert!(stdout.contains("permanent-unauthorized") || stderr.contains("401"));
    }
}

#[test]
fn estimate_states_the_rule_and_the_price() {
    let out = heygen_agent(&["estimate", "--seconds", "30"], &[]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "30 s × $0.034/s = $1.02");

    let out = heygen_agent(&["estimate", "--json", "--seconds", "45"], &[]);
    assert!(out.status.success());
    let estimate = stdout_json(&out);
    assert_eq!(estimate["seconds"], 45);
    assert_eq!(estimate["price_per_second_usd"], 0.034);
    assert_eq!(estimate["estimate_usd"], 1.53);
    assert_eq!(estimate["rule"], "45 s × $0.034/s = $1.53");
}

#[test]
fn no_wait_returns_at_once_and_poll_follows_the_run() {
    let emulator = EmulatorProcess::start(300);

    let out = emulator.run(&["run", "--no-wait", "--json", "A product tour of our app"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let created = stdout_json(&out);
    assert_eq!(created["terminal"], false);
    let id = created["id"].as_str().expect("the run id").to_string();

    let out = emulator.run(&["poll", "--json", &id]);
    assert!(out.status.success());
    assert_eq!(stdout_json(&out)["id"], id.as_str());

    let out = emulator.run(&["poll", "--wait", "--poll-interval", "50ms", &id]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&id) && stdout.contains("succeeded"),
        "{stdout}"
    );
    assert!(stderr.contains("succeeded in"), "{stderr}");
}

#[test]
fn a_timeout_exits_4_and_keeps_the_run_id_in_text_and_json() {
    let emulator = EmulatorProcess::start(5000);

    let out = emulator.run(&["run", "--timeout", "300ms", "A slow video"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let id = created_id(&stderr);
    assert!(stderr.contains("did not finish within"), "{stderr}");
    assert!(
        stderr.contains(&format!("heygen-agent poll --wait {id}")),
        "{stderr}"
    );

    let out = emulator.run(&["run", "--json", "--timeout", "0.3", "A slow video"]);
    assert_eq!(out.status.code(), Some(4));
    let error = &stdout_json(&out)["error"];
    assert_eq!(error["kind"], "wait-timed-out");
    let id = error["run_id"].as_str().expect("the run id");
    assert!(emulator.run(&["poll", id]).status.success());
}

/// The id from the `created run <id> (...)` line.
fn created_id(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("created run "))
        .unwrap_or_else(|| panic!("no `created run` line: {stderr}"));
    line.split_whitespace().next().unwrap().to_string()
}

#[test]
fn ctrl_c_while_waiting_exits_130_and_says_how_to_follow_the_run() {
    stopped_while_waiting("INT");
}

#[test]
fn sigterm_while_waiting_is_handled_like_ctrl_c() {
    stopped_while_waiting("TERM");
}

fn stopped_while_waiting(signal_name: &str) {
    let emulator = EmulatorProcess::start(10_000);
    let mut child = command(&["run", "A long video"], &emulator.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("created run ") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    signal(child.id(), signal_name);
    let status = wait_at_most(&mut child, Duration::from_secs(20));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);

    assert_eq!(status.code(), Some(130), "{seen}");
    let id = created_id(&seen);
    assert!(seen.contains("goes on"), "{seen}");
    assert!(
        seen.contains(&format!("heygen-agent poll --wait {id}")),
        "{seen}"
    );
    assert!(seen.contains(&format!("heygen-agent poll {id}")), "{seen}");
}

/// Waits until `done` holds, checking every 20 ms; fails the test after `limit`.
async fn eventually(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "no {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("heygen-agent did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_with_json_prints_the_run_id() {
    let emulator = Emulator::start(EmulatorConfig {
        step: Duration::from_secs(10),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let child = async_command(
        &emulator,
        &["run", "--json", "--client-ref", "ctrl-c-1", "A long video"],
    )
    .spawn()
    .unwrap();

    eventually("a run made", Duration::from_secs(30), || {
        emulator.run_count() > 0
    })
    .await;
    interrupt(child.id().unwrap());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("heygen-agent stops after Ctrl-C")
        .unwrap();

    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let error = &stdout_json(&out)["error"];
    assert_eq!(error["kind"], "interrupted");
    let id = error["run_id"].as_str().expect("the run id");
    let run = get(
        &format!("{}/v1/runs/{id}", emulator.base_url()),
        Some(emulator.api_key()),
    )
    .await;
    let run: Value = serde_json::from_slice(&run).unwrap();
    assert_eq!(run["client_ref"], "ctrl-c-1");
}

/// A direct GET, as a browser would fetch the link.
async fn get(url: &str, key: Option<&str>) -> Vec<u8> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.unwrap().to_vec()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_saves_every_output_whole_under_the_run_id() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("videos");

    let out = against(
        &emulator,
        &[
            "run",
            "--json",
            "--poll-interval",
            "20ms",
            "--download",
            target.to_str().unwrap(),
            "A 30-second explainer about rooftop solar",
        ],
    )
    .await;

    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let run = stdout_json(&out);
    let id = run["id"].as_str().unwrap();
    let expected = [format!("{id}-1-video.mp4"), format!("{id}-2-image.jpg")];
    assert_eq!(file_names(&target), expected);

    let downloads = run["downloads"].as_array().expect("a downloads list");
    assert_eq!(downloads.len(), 2);
    for (download, name) in downloads.iter().zip(&expected) {
        let served = get(download["url"].as_str().unwrap(), None).await;
        let saved = std::fs::read(target.join(name)).unwrap();
        assert!(served.len() > 256 * 1024, "{}", served.len());
        assert_eq!(saved.len(), served.len(), "{name}");
        assert!(
            saved == served,
            "{name} differs from what the emulator serves"
        );
        assert_eq!(download["bytes"], served.len());
        assert_eq!(download["path"], target.join(name).to_str().unwrap());
    }
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let out = heygen_agent(
        &["create", "--emulator", "A tour"],
        &[("RUST_LOG", "debug")],
    );

    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "debug logs were expected: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn estimate_takes_seconds_or_a_length() {
    let plain = heygen_agent(&["estimate", "--json", "--seconds", "90"], &[]);
    let length = heygen_agent(&["estimate", "--json", "--seconds", "1m30s"], &[]);

    assert!(plain.status.success() && length.status.success());
    assert_eq!(stdout_json(&plain), stdout_json(&length));
}

#[test]
fn emulator_on_a_command_that_cannot_use_it_is_refused() {
    let poll = heygen_agent(
        &["poll", "--emulator", "01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90"],
        &[],
    );
    let estimate = heygen_agent(&["estimate", "--emulator", "--json"], &[]);

    assert_eq!(poll.status.code(), Some(2));
    let stderr = text(&poll.stderr);
    assert!(stderr.contains("only to run and create"), "{stderr}");
    assert!(stderr.contains("heygen-agent emulator"), "{stderr}");
    assert_eq!(estimate.status.code(), Some(2));
    assert_eq!(stdout_json(&estimate)["error"]["kind"], "usage");
}

#[test]
fn refused_input_leaves_no_download_folder_behind() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new").join("videos");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();

    let blank = heygen_agent(
        &[
            "run",
            "--emulator",
            "--download",
            target.to_str().unwrap(),
            "   ",
        ],
        &[],
    );
    let under_a_file = heygen_agent(
        &[
            "run",
            "--emulator",
            "--download",
            file.join("videos").to_str().unwrap(),
            "A tour",
        ],
        &[],
    );

    let dangling = dir.path().join("gone");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let refused_links: Vec<_> = [dangling.clone(), dangling.join("videos")]
        .iter()
        .map(|folder| {
            let args = [
                "run",
                "--emulator",
                "--download",
                folder.to_str().unwrap(),
                "A tour",
            ];
            heygen_agent(&args, &[])
        })
        .collect();

    assert_eq!(blank.status.code(), Some(2));
    assert!(!dir.path().join("new").exists());
    assert_eq!(under_a_file.status.code(), Some(2));
    let stderr = text(&under_a_file.stderr);
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");
    for refused in refused_links {
        let stderr = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is a link to"), "{stderr}");
        assert!(stderr.contains("which does not exist"), "{stderr}");
    }
    assert!(!dir.path().join("nowhere").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_leaves_no_file_keeps_the_others_and_exits_7() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();

    emulator.script("GET", "/files/", Fault::Truncate);
    let out = against(
        &emulator,
        &[
            "run",
            "--json",
            "--poll-interval",
            "20ms",
            "--download",
            dir_arg,
            "A cut-off video",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    let error = &stdout_json(&out)["error"];
    assert_eq!(error["kind"], "download-failed");
    assert_eq!(error["run"]["status"], "succeeded");
    assert!(error["run_id"].is_string());
    assert!(!error["message"].as_str().unwrap().contains("sig=emulated"));
    // The cut-off video left nothing behind; the image after it was still saved.
    let saved = file_names(dir.path());
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].ends_with("-2-image.jpg"), "{saved:?}");
    assert_eq!(error["downloads"].as_array().unwrap().len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();

    emulator.script("GET", "/files/", Fault::answer(403, b"expired"));
    let out = against(
        &emulator,
        &[
            "run",
            "--poll-interval",
            "20ms",
            "--download",
            dir_arg,
            "An expired link",
        ],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("could not save output 1 (video)"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    assert!(
        file_names(dir.path())
            .iter()
            .all(|name| !name.contains("-1-video")),
        "{stderr}"
    );
}

#[test]
fn poll_download_on_an_unfinished_run_exits_4_and_saves_nothing() {
    let emulator = EmulatorProcess::start(5000);
    let dir = tempfile::tempdir().unwrap();

    let out = emulator.run(&["create", "--json", "A slow video"]);
    let id = stdout_json(&out)["id"].as_str().unwrap().to_string();
    let out = emulator.run(&["poll", "--download", dir.path().to_str().unwrap(), &id]);

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("nothing to download yet"), "{stderr}");
    assert!(stderr.contains("poll --wait --download"), "{stderr}");
    assert_eq!(file_names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_pipe_gets_plain_lines_without_decoration() {
    let out = heygen_agent(
        &[
            "run",
            "--emulator",
            "--poll-interval",
            "20ms",
            "A cat explains taxes",
        ],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));

    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("created run "), "{stderr}");
    assert!(stderr.contains("succeeded in "), "{stderr}");
    assert!(stdout.contains("status:   succeeded"), "{stdout}");
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains('\x1b'),
            "escape codes on a pipe: {output:?}"
        );
        assert!(
            !output.chars().any(is_spinner),
            "a spinner on a pipe: {output}"
        );
    }
}

/// The braille characters indicatif's default spinner draws.
fn is_spinner(c: char) -> bool {
    ('\u{2800}'..='\u{28ff}').contains(&c)
}

/// Whether `text` holds an ANSI colour (SGR) sequence.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let code: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ';')
            .collect();
        rest[code.len()..].starts_with('m')
    })
}

/// `text` without its ANSI colour (SGR) sequences.
fn without_colour(text: &str) -> String {
    let mut parts = text.split("\x1b[");
    let mut out = parts.next().unwrap_or("").to_string();
    for rest in parts {
        let code = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(rest.len());
        if rest[code..].starts_with('m') {
            out.push_str(&rest[code + 1..]);
        } else {
            out.push_str("\x1b[");
            out.push_str(rest);
        }
    }
    out
}

/// Whether `text` shows an elapsed time such as `0.4s`.
fn has_elapsed_seconds(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(4)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit() && w[3] == b's')
}

/// Runs the tool under a pseudo-terminal with `script` (util-linux), returning what the
/// terminal showed; `None` where `script` is not installed.
fn under_a_terminal(args: &str, env: &[(&str, &str)]) -> Option<(Option<i32>, String)> {
    let present = Command::new("script").arg("--version").output();
    if !present.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return None;
    }
    assert!(!BIN.contains('\''), "{BIN}");
    let line = format!("'{BIN}' {args}");
    let mut script = Command::new("script");
    script
        .args(["-qfec", &line, "/dev/null"])
        .env_remove("RUNFLOW_API_KEY")
        .env_remove("RUNFLOW_BASE_URL")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .env("HEYGEN_EMULATOR_STEP_MS", "300");
    for (name, value) in env {
        script.env(name, value);
    }
    let out = script.output().expect("running script");
    Some((out.status.code(), text(&out.stdout)))
}

#[test]
fn a_terminal_shows_a_live_status_line_and_a_summary() {
    let Some((code, screen)) = under_a_terminal(
        "run --emulator --poll-interval 50ms 'A 30-second explainer about rooftop solar'",
        &[],
    ) else {
        return;
    };

    assert_eq!(code, Some(0), "{screen}");
    assert!(has_colour(&screen), "no colour on a terminal: {screen:?}");
    let screen = without_colour(&screen);
    assert!(screen.chars().any(is_spinner), "no spinner: {screen}");
    assert!(screen.contains("running"), "{screen}");
    assert!(has_elapsed_seconds(&screen), "no elapsed time: {screen}");
    assert!(screen.contains("created run "), "{screen}");
    assert!(screen.contains("succeeded in "), "{screen}");
    assert!(screen.contains("status:   succeeded"), "{screen}");
}

#[test]
fn no_color_turns_colours_off_but_keeps_the_status_line() {
    let Some((code, screen)) = under_a_terminal(
        "run --emulator --poll-interval 50ms 'A cat explains taxes'",
        &[("NO_COLOR", "1")],
    ) else {
        return;
    };

    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("running"), "{screen}");
    assert!(screen.chars().any(is_spinner), "no spinner: {screen}");
    assert!(!has_colour(&screen), "colour despite NO_COLOR: {screen:?}");
}

#[test]
fn json_on_a_terminal_prints_only_the_object() {
    let Some((code, screen)) = under_a_terminal(
        "--json run --emulator --poll-interval 50ms 'A cat explains taxes'",
        &[],
    ) else {
        return;
    };

    assert_eq!(code, Some(0), "{screen}");
    let run: Value = serde_json::from_str(screen.trim()).expect("only the JSON object");
    assert_eq!(run["status"], "succeeded");
}

#[test]
fn completions_are_generated_for_common_shells() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = heygen_agent(&["completions", shell], &[]);
        let script = text(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(script.contains("heygen-agent"), "{shell}");
        assert!(script.contains("estimate"), "{shell}");
    }
    assert_eq!(
        heygen_agent(&["completions", "tcsh"], &[]).status.code(),
        Some(2)
    );
}

#[test]
fn help_shows_examples_and_the_exit_codes() {
    let out = heygen_agent(&["--help"], &[]);
    let help = text(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "Examples:",
        "Exit codes",
        "130",
        "NO_COLOR",
        "estimate",
        "completions",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    for command in [
        "run",
        "create",
        "poll",
        "estimate",
        "completions",
        "emulator",
        "listen",
    ] {
        let out = heygen_agent(&[command, "--help"], &[]);
        assert!(out.status.success(), "{command}");
        assert!(text(&out.stdout).contains("Example"), "{command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_slow_create_prints_the_client_ref_to_find_it_again() {
    let emulator = emulator().await;
    emulator.script_create(Fault::Delay(Duration::from_secs(20)));
    let child = async_command(
        &emulator,
        &["create", "--json", "--client-ref", "order-77", "A tour"],
    )
    .spawn()
    .unwrap();
    eventually("a create request", Duration::from_secs(20), || {
        emulator.requests().iter().any(|r| r.method == "POST")
    })
    .await;

    signal(child.id().unwrap(), "TERM");
    let out = child.wait_with_output().await.unwrap();

    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let error = &stdout_json(&out)["error"];
    assert_eq!(error["kind"], "interrupted");
    assert_eq!(error["client_ref"], "order-77");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_wait_rides_out_an_outage_on_its_first_read_and_quotes_it_safely() {
    let emulator = emulator().await;
    let id = emulator.seed_runs(1).remove(0);
    emulator.script(
        "GET",
        "/v1/runs/",
        Fault::answer(
            503,
            r#"{"code":"BUSY","message":"down \u001b[2J for a moment"}"#,
        ),
    );
    let mut command = async_command(
        &emulator,
        &["poll", "--wait", "--poll-interval", "20ms", &id],
    );
    command.env("RUNFLOW_RETRY_MAX_ATTEMPTS", "1");

    let out = command.output().await.unwrap();

    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("still waiting"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_with_an_unusable_id_is_an_api_error_not_a_usage_error() {
    let emulator = emulator().await;
    let hostile = r#"{"id":"x\u001b]0;PWNED\u0007","status_code":"queued"}"#;
    emulator.script_create(Fault::answer(200, hostile));

    let out = against(&emulator, &["run", "--poll-interval", "20ms", "A tour"]).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("cannot be polled"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr}"
    );
}

#[test]
fn more_bad_input_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "run",
                "--emulator",
                "--metadata",
                "a=1",
                "--metadata",
                "a=2",
                "p",
            ],
            "given twice",
        ),
        (&["emulator", "--addr", "0.0.0.0:0"], "loopback only"),
        (
            &["run", "--emulator", "--poll-interval", "1e-10", "p"],
            "at least a millisecond",
        ),
        (
            &["run", "--emulator", "--timeout", "inf", "p"],
            "not a number of seconds",
        ),
        (&["listen", "--out", dir_arg], "not a regular file"),
        (
            &[
                "run",
                "--emulator",
                "--json",
                "--orientation",
                "square",
                "p",
            ],
            "portrait",
        ),
    ];
    for (args, words) in cases {
        let out = heygen_agent(args, &[("RUNFLOW_CALLBACK_SECRET", "whsec_x")]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(words), "{args:?}: {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_urls_are_read_with_any_scheme_case_but_never_with_the_version_path() {
    let emulator = emulator().await;
    let upper = emulator.base_url().replace("http://", "HTTP://");
    let versioned = format!("{}/v1", emulator.base_url());

    let mut ok = async_command(&emulator, &["create", "A tour"]);
    ok.env("RUNFLOW_BASE_URL", &upper);
    let ok = ok.output().await.unwrap();
    let mut bad = async_command(&emulator, &["create", "A tour"]);
    bad.env("RUNFLOW_BASE_URL", &versioned);
    let bad = bad.output().await.unwrap();

    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("/v1"), "{}", text(&bad.stderr));
    assert_eq!(emulator.run_count(), 1);
}

#[test]
fn a_prompt_file_at_the_limit_with_a_final_line_break_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let at_limit = dir.path().join("at-limit.txt");
    let over = dir.path().join("over.txt");
    std::fs::write(&at_limit, format!("{}\n", "a".repeat(10_000))).unwrap();
    std::fs::write(&over, "a".repeat(10_001)).unwrap();

    let ok = heygen_agent(
        &[
            "create",
            "--emulator",
            "--prompt-file",
            at_limit.to_str().unwrap(),
        ],
        &[],
    );
    let refused = heygen_agent(
        &[
            "create",
            "--emulator",
            "--json",
            "--prompt-file",
            over.to_str().unwrap(),
        ],
        &[],
    );

    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(refused.status.code(), Some(2));
    let error = &stdout_json(&refused)["error"];
    assert_eq!(error["field"], "request.prompt");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("the prompt has 10001"));
}

#[test]
fn the_emulator_and_the_receiver_stop_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    for args in [
        &["emulator", "--json", "--addr", "127.0.0.1:0"][..],
        &[
            "listen",
            "--json",
            "--addr",
            "127.0.0.1:0",
            "--out",
            events.to_str().unwrap(),
        ][..],
    ] {
        let mut child = command(args, &[("RUNFLOW_CALLBACK_SECRET", "whsec_x")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first line says it is serving, so the signal handlers are in place.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("127.0.0.1"), "{args:?}: {line}");

        signal(child.id(), "TERM");

        let status = wait_at_most(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
}
