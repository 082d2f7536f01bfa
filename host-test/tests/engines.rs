//! The documented ways of running the component in other hosts, run for real where those
//! hosts are installed. A host that is not installed makes its script print a SKIP line,
//! which this test shows outside the test harness's capture so CI logs say so plainly.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn run_script(relative: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(repo.join(relative))
        .env("HEYGEN_AGENT", env!("CARGO_BIN_EXE_heygen-agent"))
        .env("HEYGEN_COMPONENT_WASM", host_test::runtime::COMPONENT_PATH)
        .env_remove("RUNFLOW_API_KEY")
        .env_remove("RUNFLOW_BASE_URL")
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let verdict = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("SKIP") || l.starts_with("PASS") || l.starts_with("FAIL"))
        .unwrap_or("(no verdict line)");
    let _ = writeln!(std::io::stderr(), "{relative}: {verdict}");

    assert!(
        out.status.success(),
        "{relative} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn the_wasmtime_cli_script_passes_or_says_it_skipped() {
    run_script("docs/wasmtime-cli.sh");
}

#[test]
fn the_obelisk_script_passes_or_says_it_skipped() {
    run_script("docs/obelisk/check.sh");
}
