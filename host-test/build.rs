//! Builds the component for `wasm32-wasip2` so that the host, its tests and its command-line
//! tool always run the component of this very checkout, with nothing built by hand.
//!
//! The component is built by a nested cargo in its own target directory (sharing the outer
//! one would deadlock on cargo's build lock), with the size-tuned `component` profile. Its
//! path reaches the host crate as `HEYGEN_COMPONENT_WASM`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host-test sits in the workspace");
    for watched in ["component/src", "component/Cargo.toml", "wit", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    ensure_target();

    let target_dir = outer_target_dir().join("wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--package", "component", "--profile", "component"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags and wrappers meant for the host build (clippy, coverage) must not reach the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .expect("running cargo to build the component");
    assert!(
        status.success(),
        "building the component for {TARGET} failed (see above)"
    );

    let wasm = target_dir
        .join(TARGET)
        .join("component")
        .join("heygen_video_agent.wasm");
    assert!(
        wasm.exists(),
        "the component build produced no {}",
        wasm.display()
    );
    println!("cargo:rustc-env=HEYGEN_COMPONENT_WASM={}", wasm.display());
}

/// The outer build's target directory: OUT_DIR is `<target>/<profile>/build/<pkg>/out`.
fn outer_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or(out_dir)
}

/// Adds the wasm target through rustup when it is missing, so a fresh machine needs no
/// manual step (`rust-toolchain.toml` names it too, but rustup adds listed targets only when
/// it installs the toolchain itself).
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            let added = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            if !matches!(added, Ok(s) if s.success()) {
                println!("cargo:warning=could not add the {TARGET} target; run `rustup target add {TARGET}`");
            }
        }
        // Without rustup the toolchain must already have the target; cargo will say if not.
        Err(_) => {}
    }
}
