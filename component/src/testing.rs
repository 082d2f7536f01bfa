//! Test doubles shared by the unit and property tests.

use std::collections::VecDeque;
use std::time::Duration;

use crate::io::{HttpRequest, HttpResponse, Io, Method, SendError};

/// Answers requests from a script and records what was sent and how long it slept.
pub struct FakeIo {
    pub script: VecDeque<Result<HttpResponse, SendError>>,
    pub sent: Vec<HttpRequest>,
    pub slept: Vec<Duration>,
    pub clock: Duration,
}

impl FakeIo {
    pub fn new(script: Vec<Result<HttpResponse, SendError>>) -> Self {
        Self {
            script: script.into(),
            sent: Vec::new(),
            slept: Vec::new(),
            clock: Duration::ZERO,
        }
    }

    pub fn methods(&self) -> Vec<Method> {
        self.sent.iter().map(|r| r.method).collect()
    }
}

impl Io for FakeIo {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, SendError> {
        self.sent.push(request.clone());
        self.script
            .pop_front()
            .expect("the component sent more requests than the test scripted")
    }

    fn sleep(&mut self, duration: Duration) {
        self.slept.push(duration);
        self.clock += duration;
    }

    fn elapsed(&self) -> Duration {
        self.clock
    }

    fn random(&mut self) -> u64 {
        u64::MAX
    }
}
