//! The model inputs and run options, as command-line options.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use host_test::runtime::{Orientation, RunOptions, VideoRequest};
use serde_json::{json, Value};

use super::Failure;

/// Every input of the model and every option of a run.
#[derive(Args)]
pub struct VideoArgs {
    /// What the video should be about, up to 10,000 characters (or use --prompt-file, or
    /// pipe it on stdin).
    prompt: Option<String>,
    /// Read the prompt from this file ("-" for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    prompt_file: Option<PathBuf>,
    /// Video orientation; left out, the agent picks one from the prompt.
    #[arg(long, value_enum)]
    orientation: Option<OrientationArg>,
    /// Avatar name or id ("auto" lets the agent choose).
    #[arg(long)]
    avatar: Option<String>,
    /// Voice name or id ("auto" lets the agent choose).
    #[arg(long)]
    voice: Option<String>,
    /// Style template id, e.g. style_noir_detective.
    #[arg(long = "style", value_name = "STYLE_ID")]
    style_id: Option<String>,
    /// URL of an image, video, audio file or PDF to use (repeat up to 20 times).
    #[arg(long = "file-url", value_name = "URL")]
    file_urls: Vec<String>,
    /// Keep this video out of the agent's memory.
    #[arg(long)]
    incognito: bool,
    /// Metadata to attach to the run, as key=value (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Your reference for this run; a retried create with the same one never makes a second
    /// run (default: a fresh random one).
    #[arg(long)]
    client_ref: Option<String>,
    /// An https URL that Runflow POSTs the finished run to (plain http only on loopback).
    #[arg(long)]
    callback_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrientationArg {
    Landscape,
    Portrait,
}

impl VideoArgs {
    /// The request and options for `create-run`; reads the prompt from where it was given.
    pub fn into_request(self) -> Result<(VideoRequest, RunOptions), Failure> {
        let prompt = self.read_prompt()?;
        // The component enforces the limit itself, but a prompt of megabytes would not even
        // fit into its memory: refuse it here, with the same words.
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(Failure::usage(
                "permanent-invalid-request",
                format!(
                    "request.prompt has {chars} characters; shorten it to at most \
                     {MAX_PROMPT_CHARS}"
                ),
            ));
        }
        let metadata = metadata_json(&self.metadata)?;
        let request = VideoRequest {
            prompt: prompt.trim_end_matches(['\n', '\r']).to_string(),
            orientation: self.orientation.map(|o| match o {
                OrientationArg::Landscape => Orientation::Landscape,
                OrientationArg::Portrait => Orientation::Portrait,
            }),
            avatar: self.avatar,
            voice: self.voice,
            style_id: self.style_id,
            file_urls: self.file_urls,
            incognito_mode: self.incognito.then_some(true),
        };
        let options = RunOptions {
            callback_url: self.callback_url,
            metadata,
            // A reference on every create lets a create whose answer is lost be found again.
            client_ref: Some(
                self.client_ref
                    .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::now_v7())),
            ),
        };
        Ok((request, options))
    }

    fn read_prompt(&self) -> Result<String, Failure> {
        match (&self.prompt, &self.prompt_file) {
            (Some(prompt), _) => Ok(prompt.clone()),
            (None, Some(path)) if path.as_os_str() == "-" => read_stdin(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(
                    "usage",
                    format!(
                        "--prompt-file {}: {e}: check the path, or give the prompt as an argument",
                        path.display()
                    ),
                )
            }),
            (None, None) if !std::io::stdin().is_terminal() => read_stdin(),
            (None, None) => Err(Failure::usage(
                "usage",
                "no prompt: give it as an argument, with --prompt-file, or on stdin",
            )),
        }
    }
}

/// `key=value` pairs as a JSON object's text; `None` when there are none.
fn metadata_json(pairs: &[String]) -> Result<Option<String>, Failure> {
    let mut metadata = serde_json::Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::usage(
                "usage",
                format!("--metadata `{pair}` must be KEY=VALUE, e.g. --metadata campaign=winter"),
            ));
        };
        metadata.insert(key.into(), json!(value));
    }
    Ok((!metadata.is_empty()).then(|| Value::Object(metadata).to_string()))
}

fn read_stdin() -> Result<String, Failure> {
    let mut prompt = String::new();
    std::io::stdin().read_to_string(&mut prompt).map_err(|e| {
        Failure::usage(
            "usage",
            format!("reading the prompt from stdin: {e}: give it as an argument instead"),
        )
    })?;
    Ok(prompt)
}

/// The most characters HeyGen accepts in a prompt.
const MAX_PROMPT_CHARS: usize = 10_000;
