//! A disk cache of the precompiled component, so a start skips Cranelift.
//!
//! An entry's name joins the SHA-256 of the component's bytes with wasmtime's own hash of
//! every engine setting that affects compiled code, so a changed component or engine can
//! never pick up a stale artifact. Deserialising trusts its input completely, so each
//! artifact is stored with its own SHA-256 and checked against it first: a truncated or
//! corrupted file is recompiled and rewritten, never loaded. Files are written under a
//! temporary name and renamed into place, so readers never see half an entry.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// How a component was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Compiled from the `.wasm`: no cache was configured.
    Compiled,
    /// Loaded from a valid cache entry.
    FromCache,
    /// Compiled because the entry was missing or failed its check, then stored.
    Rebuilt,
    /// Compiled, but the entry could not be stored (the folder cannot be written, say): a
    /// warning says why, and the next start compiles again.
    NotStored,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry's path for this component and engine.
pub fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    let component = hex(&Sha256::digest(wasm));
    // DefaultHasher::new() uses fixed keys, so the value is stable across runs.
    let mut engine_hash = std::hash::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    dir.join(format!(
        "heygen-video-agent-{}-{:016x}.cwasm",
        &component[..32],
        engine_hash.finish()
    ))
}

/// Loads the component from the cache in `dir`, or compiles and stores it.
pub fn load(engine: &Engine, wasm: &[u8], dir: &Path) -> anyhow::Result<(Component, Loaded)> {
    let path = entry_path(dir, engine, wasm);
    let digest_path = path.with_extension("sha256");

    if let (Ok(artifact), Ok(expected)) =
        (std::fs::read(&path), std::fs::read_to_string(&digest_path))
    {
        if hex(&Sha256::digest(&artifact)) == expected.trim() {
            // SAFETY: the bytes are exactly what `Component::serialize` wrote for an engine
            // with the same compatibility hash (the file name), as their digest proves.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, Loaded::FromCache)),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "rebuilding a cache entry that did not load")
                }
            }
        } else {
            tracing::warn!(path = %path.display(), "rebuilding a cache entry that failed its checksum");
        }
    }

    let component = Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("compiling the component: {e:#}"))?;
    match store(&component, &path, &digest_path) {
        Ok(()) => Ok((component, Loaded::Rebuilt)),
        Err(e) => {
            // A cache that cannot be written only costs speed.
            tracing::warn!(error = %e, dir = %dir.display(), "could not write the component cache");
            Ok((component, Loaded::NotStored))
        }
    }
}

fn store(component: &Component, path: &Path, digest_path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().expect("entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let artifact = component.serialize()?;
    let unique = format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::now_v7());

    let tmp = path.with_extension(format!("cwasm{unique}"));
    std::fs::write(&tmp, &artifact)?;
    std::fs::rename(&tmp, path)?;
    let tmp = digest_path.with_extension(format!("sha256{unique}"));
    std::fs::write(&tmp, hex(&Sha256::digest(&artifact)))?;
    std::fs::rename(&tmp, digest_path)?;
    Ok(())
}
