//! What the tool prints: results on stdout, progress and errors on stderr.
//!
//! Decoration (the spinner, progress bars, colours) appears only where a person is looking:
//! stderr on a terminal that is not `dumb`, never with `--json`; colours also need `NO_COLOR`
//! unset. On a pipe, progress is plain lines and results are plain text or one JSON object.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use host_test::json::{run_json, status_name};
use host_test::runtime::{Run, Status};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::json;

use super::download::Saved;
use super::duration::format_duration;
use super::Failure;

/// Where and how to print.
pub struct Printer {
    /// One JSON object on stdout instead of text; nothing on stderr.
    pub json: bool,
    /// A live status line and progress bars on stderr.
    live: bool,
    /// Colours on stderr.
    color_err: bool,
    /// Colours on stdout.
    color_out: bool,
}

impl Printer {
    /// Decides what suits the streams this process was given.
    pub fn new(json: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let live = !json && !dumb && std::io::stderr().is_terminal();
        let stdout_tty = !json && !dumb && std::io::stdout().is_terminal();
        Self {
            json,
            live,
            color_err: live && !no_color,
            color_out: stdout_tty && !no_color,
        }
    }

    /// A progress line on stderr, in text mode only.
    pub fn note(&self, line: &str) {
        if !self.json {
            eprintln!("{}", printable(line));
        }
    }

    /// Starts the status line for a run being created and followed.
    pub fn status_line(&self) -> StatusLine {
        let bar = self.live.then(|| {
            let template = if self.color_err {
                "{spinner:.cyan} {msg:.bold}  {elapsed_human:.dim}  {prefix:.dim}"
            } else {
                "{spinner} {msg}  {elapsed_human}  {prefix}"
            };
            let style = ProgressStyle::with_template(template)
                .expect("a valid template")
                .with_key(
                    "elapsed_human",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&format_duration(state.elapsed()));
                    },
                );
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        StatusLine {
            bar,
            plain: !self.json && !self.live,
            following: false,
            started: Instant::now(),
            last: String::new(),
            printed: String::new(),
        }
    }

    /// A progress bar for one download; hidden unless live.
    pub fn download_bar(&self, label: String, length: Option<u64>) -> ProgressBar {
        if !self.live {
            return ProgressBar::hidden();
        }
        let template = match (length.is_some(), self.color_err) {
            (true, true) => "{prefix} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec:.dim}",
            (true, false) => "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            (false, _) => "{spinner} {prefix} {binary_bytes} {binary_bytes_per_sec}",
        };
        let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        bar
    }

    /// One line on how the run ended and how long the command took, on stderr.
    pub fn headline(&self, run: &Run, took: Duration) {
        if self.json {
            return;
        }
        let status = status_name(&run.status);
        let (mark, color) = match run.status {
            Status::Succeeded => ("✔", "32"),
            Status::PartialSucceeded => ("!", "33"),
            Status::Failed | Status::Canceled => ("✖", "31"),
            _ => ("·", "0"),
        };
        let took = format_duration(took);
        if self.live {
            let text = paint(self.color_err, color, &format!("{mark} {status}"));
            eprintln!("{text} in {took}");
        } else {
            eprintln!("{status} in {took}");
        }
    }

    /// The run: one JSON object, or its fields one per line.
    pub fn run(&self, run: &Run) {
        if self.json {
            println!("{}", run_json(run));
        } else {
            self.run_text(run);
        }
    }

    /// The run and the files saved from it, as one JSON object (JSON mode only).
    pub fn run_with_downloads(&self, run: &Run, saved: &[Saved]) {
        if self.json {
            let mut value = run_json(run);
            value["downloads"] = saved.iter().map(Saved::to_json).collect();
            println!("{value}");
        }
    }

    fn run_text(&self, run: &Run) {
        let status = status_name(&run.status);
        let color = match run.status {
            Status::Succeeded => "32",
            Status::PartialSucceeded => "33",
            Status::Failed | Status::Canceled => "31",
            _ => "0",
        };
        println!("run:      {}", printable(&run.id));
        println!(
            "status:   {}",
            paint(self.color_out, color, &printable(status))
        );
        for output in &run.outputs {
            let kind = format!(
                "{}:",
                printable(output.media_type.as_deref().unwrap_or("file"))
            );
            println!("{kind:<9} {}", printable(&output.url));
        }
        if let Some(seconds) = run.video_seconds {
            println!("length:   {seconds} s");
        }
        if let Some(cost) = &run.cost {
            println!("cost:     ${}", printable(cost));
        }
        if let Some(failure) = &run.failure {
            let code = printable(failure.code.as_deref().unwrap_or("unknown"));
            let message = printable(failure.message.as_deref().unwrap_or(""));
            println!("failure:  {code} {message}");
        }
    }

    /// A file just saved (text mode only: JSON lists them with the run).
    pub fn saved(&self, saved: &Saved) {
        if !self.json {
            println!(
                "saved:    {} ({})",
                saved.path.display(),
                HumanBytes(saved.bytes)
            );
        }
    }

    /// The failure: `{"error": ...}` on stdout, or its message and hint on stderr.
    pub fn failure(&self, failure: &Failure) {
        if self.json {
            println!("{}", json!({"error": failure.error}));
            return;
        }
        eprintln!(
            "{} {}",
            paint(self.color_err, "1;31", "error:"),
            printable(failure.message())
        );
        if let Some(hint) = &failure.hint {
            eprintln!(
                "{} {}",
                paint(self.color_err, "1", "hint:"),
                printable(hint)
            );
        }
    }
}

/// Text from the server with its control characters replaced, so that an answer cannot
/// move the cursor, clear the screen, set the window title or forge lines on a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Wraps `text` in an ANSI colour when `on`.
fn paint(on: bool, code: &str, text: &str) -> String {
    if on && code != "0" {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The line that shows a run while it is being followed: a spinner, the status, the time
/// since the command started and the run id, redrawn in place on a terminal; one plain line
/// per change of status on a pipe; nothing with `--json`.
pub struct StatusLine {
    bar: Option<ProgressBar>,
    plain: bool,
    /// Plain lines are printed only while a run is followed, not for one look at it.
    following: bool,
    started: Instant,
    last: String,
    printed: String,
}

impl StatusLine {
    /// Shows the run's status.
    pub fn show(&mut self, status: &str) {
        let status = &printable(status);
        if let Some(bar) = &self.bar {
            bar.set_message(status.to_string());
        }
        self.last = status.to_string();
        self.print_plain();
    }

    /// From now on the run is followed: on a pipe, each change of status gets a line.
    pub fn follow(&mut self) {
        self.following = true;
        self.print_plain();
    }

    fn print_plain(&mut self) {
        if self.plain && self.following && self.last != self.printed {
            eprintln!("[{:>6}] {}", format_duration(self.elapsed()), self.last);
            self.printed = self.last.clone();
        }
    }

    /// Says the run was created (a line that stays, so its id is never lost) and names it
    /// on the live line.
    pub fn created(&mut self, run_id: &str, status: &str) {
        let (run_id, status) = (&printable(run_id), &printable(status));
        self.note(&format!("created run {run_id} ({status})"));
        self.set_run(run_id);
        if let Some(bar) = &self.bar {
            bar.set_message(status.to_string());
        }
        self.last = status.to_string();
        self.printed = status.to_string();
    }

    /// Names the run on the live line.
    pub fn set_run(&self, run_id: &str) {
        let run_id = &printable(run_id);
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("run {run_id}"));
        }
    }

    /// A line that stays above the live line (or is printed plainly on a pipe).
    pub fn note(&self, line: &str) {
        // Notes quote the server (error messages, run ids): never let it drive the terminal.
        let line = printable(line);
        if let Some(bar) = &self.bar {
            bar.println(line);
        } else if self.plain {
            eprintln!("{line}");
        }
    }

    /// Removes the live line, before the result or an error is printed.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The time since the command started following.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for StatusLine {
    /// Whatever way the command ends, the live line does not stay behind on the screen.
    fn drop(&mut self) {
        self.clear();
    }
}
