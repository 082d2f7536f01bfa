//! Creating a run and following it to its end: the status line, the poll schedule, the
//! timeout, Ctrl-C, and what is printed and saved once the run ends.

use host_test::wait::PollSchedule;
use std::path::Path;
use std::time::{Duration, Instant};

use host_test::json::{error_message, is_retryable, run_json, status_name};
use host_test::runtime::{CallError, Run, RunOptions, Runtime, Status, VideoRequest};
use tokio::sync::watch;

use super::download::{self, DownloadFailed, Saved};
use super::duration::format_duration;
use super::output::{Printer, StatusLine};
use super::{exit, Failure};

/// Ctrl-C (or SIGTERM), listened for from the moment this is made so that no press is lost
/// between two waits. From then on neither kills the process: every wait must watch for it.
pub struct Interrupt {
    pressed: watch::Receiver<bool>,
}

impl Interrupt {
    /// Starts listening; needs a running tokio runtime.
    pub fn listen() -> Self {
        let (tx, pressed) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            // Registered here and now, not on first poll as `ctrl_c()` would be. SIGTERM (a
            // service manager or `kill`) is handled like Ctrl-C, so the same clean-up runs:
            // a half-written download is removed rather than left behind.
            // Each is listened to on its own, so one that cannot be registered does not
            // leave the other installed but unheard.
            for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
                if let Ok(mut signals) = signal(kind) {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if signals.recv().await.is_some() {
                            let _ = tx.send(true);
                        }
                        // Keep the sender, so a stream that ends does not look like a press.
                        std::future::pending::<()>().await;
                    });
                }
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
            std::future::pending::<()>().await;
        });
        Self { pressed }
    }

    /// Resolves when Ctrl-C has been pressed (at once if it already was).
    pub async fn pressed(&mut self) {
        if self.pressed.wait_for(|pressed| *pressed).await.is_err() {
            // Nobody is listening for the signal: it can never come.
            std::future::pending::<()>().await;
        }
    }
}

/// How to wait for a run.
pub struct Waiting {
    pub schedule: PollSchedule,
    /// How long to wait, counted from the start of the command; the run itself goes on.
    pub timeout: Duration,
}

/// One command's work on one run, with its status line and Ctrl-C.
pub struct Session<'a> {
    runtime: &'a Runtime,
    out: &'a Printer,
    interrupt: Interrupt,
    line: StatusLine,
    /// The run lives in the built-in emulator, which stops with this command.
    local: bool,
    /// The run was followed here, so how it ended is news.
    followed: bool,
}

impl<'a> Session<'a> {
    /// Starts the status line and listens for Ctrl-C.
    pub fn new(runtime: &'a Runtime, out: &'a Printer, local: bool) -> Self {
        Self {
            runtime,
            out,
            interrupt: Interrupt::listen(),
            line: out.status_line(),
            local,
            followed: false,
        }
    }

    /// Creates the run.
    pub async fn create(
        &mut self,
        request: &VideoRequest,
        options: &RunOptions,
    ) -> Result<Run, Failure> {
        self.line.show("creating run");
        let created = tokio::select! {
            created = self.runtime.create_run(request, options) => created,
            () = self.interrupt.pressed() => {
                self.line.clear();
                return Err(may_exist(
                    Failure::new(
                        exit::INTERRUPTED,
                        "interrupted",
                        "stopped while the run was being created: it may or may not exist",
                    ),
                    options,
                ));
            }
        };
        let run = created.map_err(|e| {
            self.line.clear();
            match e {
                // The host stopped the call, perhaps after the request went out.
                CallError::TimedOut(_) | CallError::Trapped(_) => {
                    may_exist(Failure::call(&e), options)
                }
                CallError::Run(_) => Failure::call(&e),
            }
        })?;
        self.line.created(&run.id, status_name(&run.status));
        Ok(run)
    }

    /// Removes the live line (before the result is printed by the caller).
    pub fn clear_line(&self) {
        self.line.clear();
    }

    /// Reads the run once.
    pub async fn look(&mut self, run_id: &str) -> Result<Run, Failure> {
        self.read(run_id, None).await
    }

    /// Reads the run for `poll --wait`: as while waiting, a passing outage (a retryable
    /// error) does not end the command; it is tried again on the poll schedule until the
    /// timeout.
    pub async fn look_patiently(
        &mut self,
        run_id: &str,
        waiting: &mut Waiting,
    ) -> Result<Run, Failure> {
        self.read(run_id, Some(waiting)).await
    }

    /// Reads the run; with `patience`, retryable errors are waited out on its schedule.
    async fn read(
        &mut self,
        run_id: &str,
        mut patience: Option<&mut Waiting>,
    ) -> Result<Run, Failure> {
        let deadline = patience.as_ref().map(|w| Instant::now() + w.timeout);
        self.line.set_run(run_id);
        loop {
            self.line.show("reading run");
            let polled = tokio::select! {
                polled = self.runtime.poll_run(run_id) => polled,
                () = self.interrupt.pressed() => return Err(self.not_read(run_id)),
            };
            let error = match polled {
                Ok(run) => {
                    self.line.show(status_name(&run.status));
                    return Ok(run);
                }
                Err(error) => error,
            };
            if let (Some(waiting), Some(deadline), CallError::Run(e)) =
                (patience.as_deref_mut(), deadline, &error)
            {
                let pause = waiting.schedule.next_wait();
                if is_retryable(e) && Instant::now() + pause < deadline {
                    self.line
                        .note(&format!("still waiting: {}", error_message(e)));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = self.interrupt.pressed() => return Err(self.not_read(run_id)),
                    }
                }
            }
            self.line.clear();
            return Err(Failure::call(&error).with("run_id", run_id));
        }
    }

    /// The failure of a read stopped by Ctrl-C or SIGTERM.
    fn not_read(&self, run_id: &str) -> Failure {
        self.line.clear();
        Failure::new(
            exit::INTERRUPTED,
            "interrupted",
            "stopped before the run was read",
        )
        .with("run_id", run_id)
    }

    /// Polls the run until it ends, the timeout passes or Ctrl-C.
    pub async fn wait(&mut self, mut run: Run, waiting: &mut Waiting) -> Result<Run, Failure> {
        self.followed = true;
        self.line.follow();
        let deadline = Instant::now() + waiting.timeout.saturating_sub(self.line.elapsed());
        while !run.terminal {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.stopped(
                    exit::TIMED_OUT,
                    "wait-timed-out",
                    format!(
                        "run {} did not finish within {}",
                        run.id,
                        format_duration(waiting.timeout)
                    ),
                    &run,
                ));
            }
            let pause = waiting.schedule.next_wait().min(left);
            let polled = tokio::select! {
                polled = async {
                    tokio::time::sleep(pause).await;
                    self.runtime.poll_run(&run.id).await
                } => polled,
                () = self.interrupt.pressed() => {
                    let message = format!("stopped waiting for run {}", run.id);
                    return Err(self.stopped(exit::INTERRUPTED, "interrupted", message, &run));
                }
            };
            match polled {
                Ok(now) => run = now,
                // The component already retried; a passing outage must not lose the run.
                Err(CallError::Run(e)) if is_retryable(&e) => {
                    self.line
                        .note(&format!("still waiting: {}", error_message(&e)));
                    continue;
                }
                Err(e) => {
                    self.line.clear();
                    let hint = self.follow_hint(&run.id);
                    return Err(Failure::call(&e).with("run_id", run.id.as_str()).hint(hint));
                }
            }
            self.line.show(status_name(&run.status));
        }
        Ok(run)
    }

    /// Prints the run, saves its files into `dir` if asked, and gives the exit code.
    pub async fn finish(&mut self, run: Run, dir: Option<&Path>) -> Result<u8, Failure> {
        self.line.clear();
        let code = match run.status {
            Status::Succeeded | Status::PartialSucceeded => exit::OK,
            _ => exit::RUN_FAILED,
        };
        let Some(dir) = dir else {
            self.print_ended(&run);
            if self.local && !run.outputs.is_empty() {
                self.out.note(
                    "note: the built-in emulator serves these links only until this command \
                     ends; add --download DIR to keep the files",
                );
            }
            return Ok(code);
        };
        if !run.terminal {
            return Err(self.too_early(&run, dir));
        }
        if !self.out.json {
            self.print_ended(&run);
            if run.outputs.is_empty() {
                self.out.note("no output files to save");
            }
        }
        let saved = tokio::select! {
            saved = download::save_outputs(&run, dir, self.out) => saved,
            () = self.interrupt.pressed() => {
                let failure = Failure::new(
                    exit::INTERRUPTED,
                    "interrupted",
                    format!("stopped saving the files of run {}", run.id),
                )
                .with("run_id", run.id.as_str());
                return Err(match self.retry_download_hint(&run.id, dir) {
                    Some(hint) => failure.hint(hint),
                    None => failure,
                });
            }
        };
        match saved {
            Ok(saved) => {
                self.out.run_with_downloads(&run, &saved);
                Ok(code)
            }
            Err(failed) => Err(self.download_failed(&run, dir, failed)),
        }
    }

    fn print_ended(&self, run: &Run) {
        if self.followed {
            self.out.headline(run, self.line.elapsed());
        }
        self.out.run(run);
    }

    /// A failure that leaves the run going on, with its id and how to follow it.
    fn stopped(&self, code: u8, kind: &str, message: String, run: &Run) -> Failure {
        self.line.clear();
        Failure::new(code, kind, message)
            .with("run_id", run.id.as_str())
            .with("status", status_name(&run.status))
            .hint(self.follow_hint(&run.id))
    }

    fn too_early(&self, run: &Run, dir: &Path) -> Failure {
        let status = status_name(&run.status);
        Failure::new(
            exit::TIMED_OUT,
            "not-finished",
            format!(
                "run {} is still {status}: there is nothing to download yet",
                run.id
            ),
        )
        .with("run_id", run.id.as_str())
        .with("status", status)
        .hint(format!(
            "wait for it with `heygen-agent poll --wait --download {} {}`",
            dir.display(),
            run.id
        ))
    }

    fn download_failed(&self, run: &Run, dir: &Path, failed: DownloadFailed) -> Failure {
        let failure = Failure::new(exit::DOWNLOAD, "download-failed", failed.message)
            .with("run_id", run.id.as_str())
            .with("run", run_json(run))
            .with(
                "downloads",
                failed.saved.iter().map(Saved::to_json).collect::<Vec<_>>(),
            );
        match self.retry_download_hint(&run.id, dir) {
            Some(hint) => failure.hint(hint),
            None => failure,
        }
    }

    /// How to follow the run from another command.
    fn follow_hint(&self, run_id: &str) -> String {
        if self.local {
            "the built-in emulator stops with this command, and its runs with it; against \
             Runflow the run would go on, and `heygen-agent poll --wait <run-id>` follows it"
                .into()
        } else {
            format!(
                "the run goes on: follow it with `heygen-agent poll --wait {run_id}` \
                 (or look once with `heygen-agent poll {run_id}`)"
            )
        }
    }

    /// How to fetch the files again, where that is possible.
    fn retry_download_hint(&self, run_id: &str, dir: &Path) -> Option<String> {
        (!self.local).then(|| {
            format!(
                "the run is done; fetch its files again with `heygen-agent poll --download {} {run_id}`",
                dir.display()
            )
        })
    }
}

/// A failure after which the run may or may not exist: it carries the client reference, and
/// the hint says how to find the run instead of paying for a second one.
fn may_exist(failure: Failure, options: &RunOptions) -> Failure {
    let client_ref = options.client_ref.clone().unwrap_or_default();
    failure
        .with("client_ref", client_ref.as_str())
        .hint(format!(
            "run the command again with --client-ref {client_ref}: that finds the run if it \
             was made, instead of paying for a second one"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_the_host_stopped_says_how_to_find_the_run() {
        let options = RunOptions {
            callback_url: None,
            metadata: None,
            client_ref: Some("ref-1".into()),
        };

        let failure = may_exist(
            Failure::call(&CallError::TimedOut(Duration::from_secs(300))),
            &options,
        );

        assert_eq!(failure.error["client_ref"], "ref-1");
        assert!(failure
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("--client-ref ref-1"));
    }
}
