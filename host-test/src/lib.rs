//! The host side of the HeyGen Video Agent component: a wasmtime runtime that loads the
//! component once and calls it with hard limits ([`runtime`]), the JSON forms the
//! command-line tool prints ([`json`]), and a local Runflow emulator for tests and offline
//! use ([`emulator`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use host_test::runtime::{Runtime, RuntimeConfig, RunOptions, VideoRequest};
//!
//! let key = std::env::var("RUNFLOW_API_KEY")?;
//! let runtime = Runtime::embedded(RuntimeConfig::new(key, "https://api.runflow.io"))?;
//! let request = VideoRequest {
//!     prompt: "A 30-second explainer about rooftop solar".into(),
//!     orientation: None,
//!     avatar: None,
//!     voice: None,
//!     style_id: None,
//!     file_urls: vec![],
//!     incognito_mode: None,
//! };
//! let options = RunOptions { callback_url: None, metadata: None, client_ref: Some("order-4711".into()) };
//! let run = runtime.create_run(&request, &options).await?;
//! let run = runtime.poll_run(&run.id).await?;
//! println!("{} is {:?}", run.id, run.status);
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod cache;
pub mod emulator;
pub mod json;
pub mod receiver;
pub mod runtime;
mod serve;
pub mod wait;
