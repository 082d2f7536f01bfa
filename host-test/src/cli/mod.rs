//! The parts of the `heygen-agent` command-line tool: how it waits, shows, saves and prices.

pub mod download;
pub mod duration;
pub mod estimate;
pub mod follow;
pub mod output;
pub mod video;

use host_test::json::error_json;
use host_test::runtime::{CallError, RunError};
use serde_json::{json, Value};

/// Exit codes, the same with and without `--json`.
pub mod exit {
    /// The run succeeded (or the command did what it was asked).
    pub const OK: u8 = 0;
    /// The host itself failed (the component could not be loaded or trapped).
    pub const HOST: u8 = 1;
    /// The command line or the environment is wrong; nothing was sent.
    pub const USAGE: u8 = 2;
    /// The run ended failed or canceled.
    pub const RUN_FAILED: u8 = 3;
    /// The run has not finished: waiting timed out, or it was looked at too early; it goes on.
    pub const TIMED_OUT: u8 = 4;
    /// Runflow refused or failed the request.
    pub const API: u8 = 5;
    /// A callback was refused: bad signature or not a callback.
    pub const REJECTED: u8 = 6;
    /// The run finished but an output file could not be saved.
    pub const DOWNLOAD: u8 = 7;
    /// Interrupted with Ctrl-C (or SIGTERM) while waiting; the run goes on.
    pub const INTERRUPTED: u8 = 130;

    /// The table `--help` and the README show.
    pub const TABLE: &str = "\
Exit codes (the same with --json):
  0    done: the run succeeded (fully or partly), or the command did what it was asked
  1    the host failed: the component could not be loaded, or it trapped
  2    usage or configuration error: nothing was sent
  3    the run failed or was canceled
  4    the run has not finished: waiting timed out, or poll --download came too early
  5    Runflow refused or failed the request
  6    a callback was refused: bad signature, or not a callback
  7    the run finished but an output file could not be saved
  130  interrupted with Ctrl-C or SIGTERM: the run goes on";
}

/// A failure of the command: its exit code, its JSON form, and a line on what to do next
/// that text mode prints under the message.
pub struct Failure {
    pub code: u8,
    pub error: Value,
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with this code, kind and message.
    pub fn new(code: u8, kind: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            error: json!({"kind": kind, "message": message.into()}),
            hint: None,
        }
    }

    /// A mistake on the command line or in the environment.
    pub fn usage(kind: &str, message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, kind, message)
    }

    /// A call to the component that failed.
    pub fn call(error: &CallError) -> Self {
        match error {
            CallError::Run(e @ RunError::PermanentInvalidRequest(problem)) => {
                // The component names the WIT field; the person at the terminal typed an
                // option, so the message names that (the JSON keeps the field too).
                let option = option_for_field(&problem.field);
                let mut error = error_json(e);
                error["message"] = format!("{option} {}", problem.problem).into();
                error["option"] = option.into();
                Self {
                    code: exit::USAGE,
                    error,
                    hint: None,
                }
            }
            CallError::Run(e) => {
                let kind = host_test::json::error_kind(e);
                let code = if kind == "permanent-invalid-request"
                    || kind == "permanent-bad-configuration"
                {
                    exit::USAGE
                } else {
                    exit::API
                };
                Self {
                    code,
                    error: error_json(e),
                    hint: None,
                }
            }
            CallError::TimedOut(_) => Self::new(exit::TIMED_OUT, error.kind(), error.to_string()),
            CallError::Trapped(_) => Self::new(exit::HOST, error.kind(), error.to_string()),
        }
    }

    /// The host itself failed.
    pub fn host(error: anyhow::Error) -> Self {
        Self::new(exit::HOST, "host-error", format!("{error:#}"))
    }

    /// Adds a field to the JSON form.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.error[field] = value.into();
        self
    }

    /// Sets the line on what to do next.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        self.error["message"].as_str().unwrap_or("unknown error")
    }
}

/// Reads all of `source` if it holds at most `limit` bytes; `None` when it holds more, after
/// reading one byte past the limit and no further (a device or an endless pipe stops there).
pub fn read_at_most(source: impl std::io::Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;

    let mut bytes = Vec::new();
    source.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The command-line option (or argument) that fills a field of the component's input.
fn option_for_field(field: &str) -> String {
    if let Some(index) = field
        .strip_prefix("request.file-urls[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse::<usize>().ok())
    {
        return format!("--file-url (number {})", index + 1);
    }
    match field {
        "request.prompt" => "the prompt",
        "request.avatar" => "--avatar",
        "request.voice" => "--voice",
        "request.style-id" => "--style",
        "request.file-urls" => "--file-url",
        "request.orientation" => "--orientation",
        "request.incognito-mode" => "--incognito",
        "options.callback-url" => "--callback-url",
        "options.metadata" => "--metadata",
        "options.client-ref" => "--client-ref",
        "run-id" => "the run id",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::option_for_field;

    #[test]
    fn fields_are_named_by_the_option_that_fills_them() {
        assert_eq!(option_for_field("request.style-id"), "--style");
        assert_eq!(
            option_for_field("request.file-urls[0]"),
            "--file-url (number 1)"
        );
        assert_eq!(option_for_field("options.client-ref"), "--client-ref");
        assert_eq!(option_for_field("something.new"), "something.new");
    }
}
