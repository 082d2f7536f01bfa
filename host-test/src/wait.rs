//! Waiting for a run to end: polling on a schedule, with a deadline, a cancellation signal
//! and a progress callback.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::json::{error_kind, is_retryable};
use crate::runtime::{CallError, Run, Runtime};

/// When to poll next. HeyGen renders in about 5 to 10 times the video's length, so the
/// default starts gently and backs off while a long video renders.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    next: Duration,
    factor: f64,
    max: Duration,
}

impl Default for PollSchedule {
    /// 5 s, then 1.5 times longer each poll, up to 30 s.
    fn default() -> Self {
        Self {
            next: Duration::from_secs(5),
            factor: 1.5,
            max: Duration::from_secs(30),
        }
    }
}

impl PollSchedule {
    /// The same interval every time.
    pub fn fixed(interval: Duration) -> Self {
        Self {
            next: interval,
            factor: 1.0,
            max: interval,
        }
    }

    /// The wait before the next poll.
    pub fn next_wait(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        now
    }
}

/// Why waiting stopped before the run ended. The run itself goes on in every case.
#[derive(Debug)]
pub enum WaitError {
    /// A poll failed in a way more polls cannot fix (retryable errors are ridden out).
    Call(CallError),
    /// The deadline passed; `last` is the run as last seen.
    DeadlinePassed {
        /// The run as last seen, if any poll succeeded.
        last: Option<Run>,
    },
    /// The cancellation signal fired; `last` is the run as last seen.
    Cancelled {
        /// The run as last seen, if any poll succeeded.
        last: Option<Run>,
    },
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Call(e) => e.fmt(f),
            WaitError::DeadlinePassed { .. } => {
                f.write_str("the run did not end before the deadline")
            }
            WaitError::Cancelled { .. } => f.write_str("waiting was cancelled"),
        }
    }
}

impl std::error::Error for WaitError {}

impl Runtime {
    /// Polls `run_id` until it is terminal and returns it. `progress` sees the run after
    /// every poll that changed its status. Retryable errors (an outage, a rate limit) are
    /// ridden out until `deadline`; a permanent one ends the wait.
    pub async fn wait(
        &self,
        run_id: &str,
        deadline: Instant,
        mut schedule: PollSchedule,
        cancel: impl Future<Output = ()>,
        mut progress: impl FnMut(&Run),
    ) -> Result<Run, WaitError> {
        let mut cancel = std::pin::pin!(cancel);
        let mut last: Option<Run> = None;
        loop {
            // A poll in flight is abandoned (its instance dropped) when the wait is cancelled
            // or its deadline passes: a poll changes nothing at Runflow.
            let polled = tokio::select! {
                polled = self.poll_run(run_id) => polled,
                _ = &mut cancel => return Err(WaitError::Cancelled { last }),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(WaitError::DeadlinePassed { last });
                }
            };
            match polled {
                Ok(run) => {
                    if last.as_ref().map(|l| &l.status) != Some(&run.status) {
                        progress(&run);
                    }
                    if run.terminal {
                        return Ok(run);
                    }
                    last = Some(run);
                }
                Err(CallError::Run(e)) if is_retryable(&e) => {
                    tracing::debug!(kind = error_kind(&e), "a poll failed; waiting on");
                }
                Err(e) => return Err(WaitError::Call(e)),
            }

            let wake = (Instant::now() + schedule.next_wait()).min(deadline);
            if wake >= deadline && Instant::now() >= deadline {
                return Err(WaitError::DeadlinePassed { last });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = &mut cancel => return Err(WaitError::Cancelled { last }),
            }
            if Instant::now() >= deadline {
                return Err(WaitError::DeadlinePassed { last });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_backs_off_to_thirty_seconds() {
        let mut schedule = PollSchedule::default();

        let waits: Vec<u64> = (0..7)
            .map(|_| schedule.next_wait().as_millis() as u64)
            .collect();

        assert_eq!(waits, [5000, 7500, 11250, 16875, 25312, 30000, 30000]);
    }
}
