//! The model inputs and run options, as command-line options.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use host_test::runtime::{
    CallError, FieldProblem, Orientation, RunError, RunOptions, VideoRequest,
};
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
        // A file or a pipe ends with a line break that is not part of the prompt.
        let prompt = self
            .read_prompt()?
            .trim_end_matches(['\n', '\r'])
            .to_string();
        // The component enforces the limit itself, but a prompt of megabytes would not even
        // fit into its memory: refuse it here, in the same form.
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            // The same error the component would return, so it reads and exits the same.
            let problem = FieldProblem {
                field: "request.prompt".into(),
                problem: format!(
                    "has {chars} characters; shorten it to at most {MAX_PROMPT_CHARS}"
                ),
            };
            let error = CallError::Run(RunError::PermanentInvalidRequest(problem));
            return Err(Failure::call(&error));
        }
        let metadata = metadata_json(&self.metadata)?;
        let request = VideoRequest {
            prompt,
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
            (None, Some(path)) => {
                let name = format!("--prompt-file {}", path.display());
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::usage(
                        "usage",
                        format!("{name}: {e}: check the path, or give the prompt as an argument"),
                    )
                })?;
                read_bounded(file, &name)
            }
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
        if metadata.insert(key.into(), json!(value)).is_some() {
            return Err(Failure::usage(
                "usage",
                format!("--metadata `{key}` is given twice: give each key once"),
            ));
        }
    }
    Ok((!metadata.is_empty()).then(|| Value::Object(metadata).to_string()))
}

fn read_stdin() -> Result<String, Failure> {
    let prompt = read_bounded(std::io::stdin().lock(), "the prompt on stdin")?;
    if prompt.is_empty() {
        return Err(Failure::usage(
            "usage",
            "no prompt: stdin was empty; give the prompt as an argument, with --prompt-file, \
             or pipe it in",
        ));
    }
    Ok(prompt)
}

/// The most bytes read as a prompt: 10,000 characters of up to four bytes each, and a final
/// line break. A larger source (a video, a device, an endless pipe) is refused without
/// being read whole.
const MAX_PROMPT_BYTES: u64 = 4 * MAX_PROMPT_CHARS as u64 + 2;

/// Reads a prompt from `source` (named `name` in errors), refusing one that is too large or
/// not UTF-8 text.
fn read_bounded(source: impl Read, name: &str) -> Result<String, Failure> {
    let bytes = super::read_at_most(source, MAX_PROMPT_BYTES)
        .map_err(|e| {
            Failure::usage(
                "usage",
                format!("reading {name}: {e}: give the prompt as an argument instead"),
            )
        })?
        .ok_or_else(|| {
            Failure::usage(
                "usage",
                format!(
                    "{name} is larger than any prompt ({MAX_PROMPT_CHARS} characters at most): \
                     give the file that holds the video's description"
                ),
            )
        })?;
    String::from_utf8(bytes).map_err(|_| {
        Failure::usage(
            "usage",
            format!("{name} is not UTF-8 text: save the prompt as UTF-8 text"),
        )
    })
}

/// The most characters HeyGen accepts in a prompt.
const MAX_PROMPT_CHARS: usize = 10_000;
