//! The component's only contact with the outside: HTTP (through waki over WASI HTTP), the
//! clock and randomness, behind the [`Io`] trait so that the request logic in
//! [`crate::client`] can be tested natively with a scripted fake.

use std::time::{Duration, Instant};

use crate::config::Settings;

/// The largest response body read, in bytes. Runs and error answers are a few KiB; a larger
/// body is refused as soon as it passes this size, without being read whole. Parsing a body
/// takes several times its size in memory, so this also keeps the guest far from its host's
/// memory cap.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An HTTP method the component uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads a run or a listing.
    Get,
    /// Creates a run.
    Post,
}

/// A request exactly as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body, for a POST.
    pub body: Option<Vec<u8>>,
}

/// Why a response body could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// The body grew past [`MAX_BODY_BYTES`].
    TooLarge,
    /// The body stopped before its end (connection reset, timeout, truncation).
    Broken(String),
}

/// An answer: status and headers always arrived; the body may still have failed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Retry-After` header, if sent.
    pub retry_after: Option<String>,
    /// The body, read up to [`MAX_BODY_BYTES`].
    pub body: Result<Vec<u8>, BodyError>,
}

/// Why no answer arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// The request surely never reached the server (no connection could be made).
    NotSent(String),
    /// The host refused to let the request out.
    Denied(String),
    /// The request may have reached the server, but no answer came back.
    Unknown(String),
}

/// What the request logic needs from the world.
pub trait Io {
    /// Sends one request and reads its answer.
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, SendError>;
    /// Waits for `duration`.
    fn sleep(&mut self, duration: Duration);
    /// Time since this `Io` was made.
    fn elapsed(&self) -> Duration;
    /// A random number, for backoff jitter.
    fn random(&mut self) -> u64;
}

/// The real [`Io`]: waki over WASI HTTP, WASI clocks and WASI randomness.
pub struct WasiIo {
    started: Instant,
    connect_timeout: Duration,
}

impl WasiIo {
    /// Makes an `Io` that uses the connect timeout of `settings`.
    ///
    /// First-byte and between-bytes timeouts are not set here: waki exposes only the connect
    /// timeout, so those two are the host's to enforce (the bundled host sets both on every
    /// outgoing request; wasmtime's own default is 600 seconds).
    pub fn new(settings: &Settings) -> Self {
        Self {
            started: Instant::now(),
            connect_timeout: settings.connect_timeout,
        }
    }
}

impl Io for WasiIo {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, SendError> {
        let client = waki::Client::new();
        let mut builder = match request.method {
            Method::Get => client.get(&request.url),
            Method::Post => client.post(&request.url),
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        // A zero timeout crashes some wasmtime releases; the settings never allow one.
        let builder = builder.connect_timeout(self.connect_timeout.max(Duration::from_millis(1)));

        let response = builder.send().map_err(send_error)?;
        let status = response.status_code();
        let retry_after = response
            .header("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(|len| response.chunk(len).map_err(|e| e.to_string()));
        Ok(HttpResponse {
            status,
            retry_after,
            body,
        })
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn random(&mut self) -> u64 {
        // std seeds each RandomState from the platform's random source (wasi:random here),
        // which is all jitter needs, without another set of WASI bindings.
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }
}

/// Reads a body chunk by chunk, giving up as soon as it passes [`MAX_BODY_BYTES`].
pub fn read_capped(
    mut next_chunk: impl FnMut(u64) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        match next_chunk(64 * 1024) {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(BodyError::Broken(e)),
        }
    }
}

/// Sorts a failed send by whether the request can have reached the server.
fn send_error(error: anyhow::Error) -> SendError {
    use waki::ErrorCode as E;
    let Some(code) = error.downcast_ref::<E>() else {
        return SendError::Unknown(error.to_string());
    };
    let message = describe(code);
    match code {
        E::HttpRequestDenied => SendError::Denied(message),
        E::DnsTimeout
        | E::DnsError(_)
        | E::DestinationNotFound
        | E::DestinationUnavailable
        | E::DestinationIpProhibited
        | E::DestinationIpUnroutable
        | E::ConnectionRefused
        | E::ConnectionTimeout
        | E::ConnectionLimitReached
        | E::TlsProtocolError
        | E::TlsCertificateError
        | E::TlsAlertReceived(_)
        | E::HttpRequestUriInvalid
        | E::HttpRequestMethodInvalid => SendError::NotSent(message),
        _ => SendError::Unknown(message),
    }
}

/// Says in words what went wrong, for the messages the caller sees.
fn describe(code: &waki::ErrorCode) -> String {
    use waki::ErrorCode as E;
    let text = match code {
        E::HttpRequestDenied => "the host did not let the request out",
        E::DnsTimeout => "looking up the host name timed out",
        E::DestinationNotFound => "the host name could not be resolved",
        E::DestinationUnavailable => "the host is unreachable",
        E::DestinationIpProhibited => "the host's address is prohibited",
        E::DestinationIpUnroutable => "the host's address is unroutable",
        E::ConnectionRefused => "the connection was refused",
        E::ConnectionTimeout => "connecting timed out",
        E::ConnectionLimitReached => "too many connections are open",
        E::TlsCertificateError => "the server's TLS certificate was not accepted",
        E::TlsProtocolError => "the TLS handshake failed",
        E::DnsError(payload) => {
            let detail = payload.rcode.as_deref().unwrap_or("no detail");
            return format!("the host name could not be resolved ({detail})");
        }
        E::TlsAlertReceived(payload) => {
            let alert = payload.alert_message.as_deref().unwrap_or("no detail");
            return format!("the TLS handshake failed (the server sent the alert: {alert})");
        }
        E::HttpRequestUriInvalid => "the request URL is not valid",
        E::ConnectionTerminated => "the connection closed before the answer came",
        E::ConnectionReadTimeout | E::HttpResponseTimeout => "the answer did not come in time",
        other => {
            // Less common codes keep their WASI name, without the type's prefix.
            let name = format!("{other:?}");
            return name.trim_start_matches("ErrorCode::").to_string();
        }
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_past_the_cap_are_refused_without_reading_on() {
        let mut served = 0usize;

        let result = read_capped(|len| {
            served += len as usize;
            Ok(Some(vec![b'x'; len as usize]))
        });

        assert_eq!(result, Err(BodyError::TooLarge));
        assert!(served <= MAX_BODY_BYTES + 64 * 1024);
    }

    #[test]
    fn a_broken_body_is_reported() {
        let mut calls = 0;

        let result = read_capped(|_| {
            calls += 1;
            if calls == 1 {
                Ok(Some(b"{\"id\"".to_vec()))
            } else {
                Err("connection reset".into())
            }
        });

        assert_eq!(result, Err(BodyError::Broken("connection reset".into())));
    }
}
