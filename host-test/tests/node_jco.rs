//! The same component under Node.js: `node/run.mjs` transpiles it with jco and runs it on
//! preview2-shim against the emulator. CI has Node and npm, so a missing tool fails the test
//! instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use host_test::emulator::{Emulator, EmulatorConfig};
use host_test::runtime::COMPONENT_PATH;
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::Mutex;

const CREATE_PATH: &str = "/v1/models/heygen/v3/video-agent/runs";
/// A first install downloads a few hundred megabytes; later runs skip it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Transpiling and two calls take about a second; this only bounds a hang.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
const NPM: &str = if cfg!(windows) { "npm.cmd" } else { "npm" };

/// Tests in this binary run in parallel; only one of them may install the packages.
static INSTALL: Mutex<()> = Mutex::const_new(());

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Runs `command` to completion with a deadline, failing the test with `what` when the
/// program is missing or hangs.
async fn output(mut command: Command, what: &str, limit: Duration) -> Output {
    command.kill_on_drop(true);
    let result = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"));
    match result {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what}: the program is not installed or not on PATH ({e}); install Node.js 20+ with npm")
        }
        Err(e) => panic!("{what} could not start: {e}"),
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Installs jco and preview2-shim from the lockfile unless they are already there.
async fn ensure_packages() {
    let _guard = INSTALL.lock().await;
    let dir = node_dir();
    let modules = dir.join("node_modules").join("@bytecodealliance");
    // Checking the packages rather than `node_modules` alone also repairs an interrupted
    // install.
    if modules.join("jco").exists() && modules.join("preview2-shim").exists() {
        return;
    }
    let mut npm = Command::new(NPM);
    let verb = if dir.join("package-lock.json").exists() {
        "ci"
    } else {
        "install"
    };
    npm.current_dir(&dir)
        .args([verb, "--no-audit", "--no-fund"]);
    let out = output(
        npm,
        &format!("`npm {verb}` in {}", dir.display()),
        INSTALL_TIMEOUT,
    )
    .await;
    assert!(
        out.status.success(),
        "`npm {verb}` failed\n{}",
        describe(&out)
    );
}

/// Runs `node/run.mjs` on the built component with the guest pointed at `emulator` and
/// given `key`, returning the process output and its JSON line.
async fn run_under_node(emulator: &Emulator, key: &str) -> (Output, Value) {
    ensure_packages().await;
    let dir = node_dir();
    let mut node = Command::new("node");
    node.current_dir(&dir)
        .arg(dir.join("run.mjs"))
        .arg(COMPONENT_PATH);
    // run.mjs hands the guest every RUNFLOW_ variable, so none may leak in from the caller.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RUNFLOW_") {
            node.env_remove(name);
        }
    }
    node.env("RUNFLOW_API_KEY", key)
        .env("RUNFLOW_BASE_URL", emulator.base_url());
    // An async child keeps this runtime free to serve the emulator meanwhile.
    let out = output(node, "`node run.mjs`", NODE_TIMEOUT).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("run.mjs printed nothing\n{}", describe(&out)));
    let value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("run.mjs printed no JSON line ({e})\n{}", describe(&out)));
    (out, value)
}

#[tokio::test]
async fn the_component_creates_and_polls_a_run_under_node() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;

    let (out, result) = run_under_node(&emulator, emulator.api_key()).await;

    assert!(out.status.success(), "{}", describe(&out));
    let created = &result["created"];
    let polled = &result["polled"];
    let id = created["id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{result}");
    assert_eq!(created["status"]["tag"], "queued", "{result}");
    assert_eq!(created["terminal"], false, "{result}");
    assert_eq!(polled["id"], id, "{result}");

    let requests = emulator.requests();
    let post = requests
        .iter()
        .find(|r| r.method == "POST" && r.path == CREATE_PATH)
        .expect("the create request reached the emulator");
    assert_eq!(
        post.header("content-length"),
        Some(post.body.len().to_string().as_str())
    );
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {}", emulator.api_key()).as_str())
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/v1/runs/{id}")),
        "the poll reached the emulator"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_error_arrives_as_the_wit_variant() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;

    let (out, result) = run_under_node(&emulator, "not-the-key").await;

    assert!(!out.status.success(), "{}", describe(&out));
    let error = &result["error"];
    assert_eq!(error["tag"], "permanent-unauthorized", "{result}");
    assert_eq!(error["val"]["httpStatus"], 401, "{result}");
    assert_eq!(emulator.run_count(), 0);
    Ok(())
}
