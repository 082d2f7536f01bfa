//! A WebAssembly component that creates HeyGen Video Agent runs on Runflow's model API and
//! reads them back, over WASI HTTP.
//!
//! The contract is `wit/heygen-video-agent.wit`. This file is only the glue between the
//! generated bindings and the plain Rust modules, which hold all the logic and are tested
//! natively with `cargo test -p component`:
//!
//! - [`config`] reads the settings from the environment;
//! - [`request`] validates the caller's input and builds the exact JSON Runflow receives;
//! - [`response`] reads runs and error answers, liberally;
//! - [`client`] sends requests through an [`io::Io`] with the retry and idempotency rules;
//! - [`io`] is the one place that touches WASI HTTP (through waki), clocks and randomness;
//! - [`callback`] checks callback signatures and reads callback bodies.

pub mod callback;
pub mod client;
pub mod config;
pub mod io;
pub mod request;
pub mod response;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod testing;

/// Code generated from `wit/` by wit-bindgen.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "video-agent",
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::runflow::heygen_video_agent::callbacks;
pub use bindings::exports::runflow::heygen_video_agent::runs as wit;

use wit::{Run, RunError, RunOptions, VideoRequest};

/// The component's implementation of the `runs` interface.
struct Component;

impl wit::Guest for Component {
    fn create_run(request: VideoRequest, options: RunOptions) -> Result<Run, RunError> {
        let settings = config::Settings::from_env()?;
        client::create_run(
            &mut io::WasiIo::new(&settings),
            &settings,
            &request,
            &options,
        )
    }

    fn poll_run(run_id: String) -> Result<Run, RunError> {
        let settings = config::Settings::from_env()?;
        client::poll_run(&mut io::WasiIo::new(&settings), &settings, &run_id)
            .map_err(|e| client::redacted(e, &settings.api_key))
    }
}

impl bindings::exports::runflow::heygen_video_agent::callbacks::Guest for Component {
    fn verify_signature(
        body: Vec<u8>,
        signature: String,
        secrets: Vec<String>,
    ) -> Result<u32, callbacks::CallbackError> {
        callback::verify_signature(&body, &signature, &secrets)
    }

    fn parse_event(body: Vec<u8>) -> Result<callbacks::CallbackEvent, callbacks::CallbackError> {
        callback::parse_event(&body)
    }
}

bindings::export!(Component with_types_in bindings);
