//! The accept loop shared by the local HTTP servers (the emulator and the callback
//! receiver): one task per connection, HTTP/1.1, a limit on how long a client may take to
//! send its request headers, and every connection closed when the server stops.

use std::future::Future;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `handle` on `listener` until `stopped` turns true (or its sender is dropped).
/// An `Err` from `handle` closes that connection without an answer. `header_timeout` is how
/// long a client may take to send a request's headers, including while a kept-alive
/// connection waits idle for its next request.
pub(crate) fn spawn<H, F, B, E>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    header_timeout: Duration,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.changed() => break,
            };
            // A failed accept (too many open files, a reset before accept) affects only
            // that client; the server keeps listening.
            let Ok((stream, _)) = accepted else { continue };
            let handle = handle.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let service = service_fn(handle);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = stopped.changed() => {}
                }
            });
        }
    });
}
