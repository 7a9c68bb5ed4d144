//! Serves the API over HTTP/1.1 with the limits warp's own `serve` cannot set
//! (it builds hyper without a timer), SPEC §12:
//!
//! - at most `max_connections` accepted connections at once. A slot is taken
//!   *before* `accept`, so a client over the cap is not refused: it waits in
//!   the kernel's listen backlog until a connection closes;
//! - a fresh connection, or one whose next request has begun to arrive, must
//!   finish sending the request's headers within `header_timeout`;
//! - a keep-alive connection with no request in progress (including a client
//!   that will not read its response) is closed after `idle_timeout`.
//!
//! The body timeout is the handler's (it reads the body, and can only do so
//! within the timeout: `api::body::Body`). Every request carries its
//! connection's peer address ([`PeerAddr`]) for the
//! per-address limits and the log. A request hyper cannot parse gets the SPEC's JSON envelope
//! instead of hyper's empty 400 (see [`Watched`]) and is logged at warn.
//! Shutdown stops accepting, lets in-flight requests finish and closes idle
//! connections; the caller bounds how long that may take.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;
use warp::http::{Request, Response};

/// The connection's peer, put on each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The connection limits, from `server.*` in the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains:
/// returns once every connection has closed.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            service.clone(),
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    // Every connection finishes its request in flight, then closes.
    drop(stop_tx);
    while connections.join_next().await.is_some() {}
}

/// `accept` fails for a connection the peer already dropped (nothing to do)
/// or for want of file descriptors (wait for some to be released).
async fn accept_failed(e: io::Error) {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s (raise LimitNOFILE or lower server.max_connections)");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection, holding its slot until it closes.
async fn connection<S, B>(
    (stream, peer): (TcpStream, SocketAddr),
    service: S,
    limits: Limits,
    mut stop: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched::new(stream, clock.clone()));
    let requests = clock.clone();
    let handler = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        let mut service = service.clone();
        let busy = requests.busy();
        async move {
            let response = service.call(request).await;
            drop(busy);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, handler);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log_connection_error(&e);
                }
                return;
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            why = clock.expired(limits) => {
                tracing::debug!(reason = why, "closing a connection that timed out");
                return;
            }
        }
    }
}

/// Unparsable requests are the client's fault (warn, never error); dropped
/// connections are routine (debug). hyper's error text names the problem, not
/// the bytes, so nothing a client sent reaches the log.
fn log_connection_error(e: &hyper::Error) {
    if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
        tracing::warn!(error = %e, "unparsable request answered with 400");
    } else {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Where a connection is in its request cycle, for the timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's headers: since the connection opened, or since
    /// the first byte of its next request.
    Head(Instant),
    /// This many requests are with the handler (it bounds its own body reads).
    Busy(u32),
    /// Between requests, since the last response was produced.
    Idle(Instant),
}

/// The phase, shared by the socket wrapper, the request handler and the
/// connection's timeout. A phase change wakes nobody: see [`Clock::expired`].
struct Clock {
    phase: Mutex<Phase>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            phase: Mutex::new(Phase::Head(Instant::now())),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: on an idle connection, a new request has begun.
    fn bytes_arrived(&self) {
        if matches!(self.phase(), Phase::Idle(_)) {
            self.update(|_| Phase::Head(Instant::now()));
        }
    }

    /// A request reached the handler; the guard marks it done.
    fn busy(self: &Arc<Self>) -> Busy {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            _ => Phase::Busy(1),
        });
        Busy(self.clone())
    }

    /// Resolves with the limit's name once the current phase outlasts it.
    ///
    /// Every deadline a phase change sets lies at least `step` (the shorter
    /// timeout) after the change, so a sleep of at most `step` can never
    /// oversleep a deadline set while it slept. Re-reading the phase on each
    /// wake-up therefore meets every deadline exactly, without the phase
    /// changes of every request waking the connection's task (three per
    /// request, a measurable share of a GET).
    async fn expired(&self, limits: Limits) -> &'static str {
        let step = limits.header_timeout.min(limits.idle_timeout);
        loop {
            let now = Instant::now();
            let deadline = match self.phase() {
                Phase::Head(since) => Some((since + limits.header_timeout, "header timeout")),
                Phase::Idle(since) => Some((since + limits.idle_timeout, "idle timeout")),
                Phase::Busy(_) => None,
            };
            match deadline {
                Some((at, why)) if now >= at => return why,
                Some((at, _)) => tokio::time::sleep_until(at.min(now + step)).await,
                None => tokio::time::sleep_until(now + step).await,
            }
        }
    }
}

/// A request with the handler.
struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// The socket as hyper sees it: reads move the [`Clock`], and hyper's own
/// answer to a request it cannot parse (an empty 400, 414 or 431 written
/// before any handler ran) is replaced by the JSON envelope.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
    /// The envelope being written in place of hyper's answer, and how much
    /// of it is out. Once set, hyper's further bytes are dropped: it closes
    /// the connection after such an answer.
    replaced: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn new(inner: TcpStream, clock: Arc<Clock>) -> Watched {
        Watched {
            inner,
            clock,
            replaced: None,
        }
    }

    /// Writes the rest of the replacement; Ready once all of it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, sent)) = &mut self.replaced {
            while *sent < bytes.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *sent += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replaced.is_none() && matches!(this.clock.phase(), Phase::Head(_)) {
            if let Some(status) = automatic_error_status(buf) {
                this.replaced = Some((envelope_response(status), 0));
            }
        }
        if this.replaced.is_some() {
            return match this.poll_replacement(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// The status of hyper's automatic answer to an unparsable request, if `buf`
/// is one: a status line hyper uses for parse errors and a head of nothing
/// but `connection: close`, `content-length: 0` and `date`. Every response vpsd's handler writes
/// carries other headers (`x-request-id`, `content-type`), so none matches.
fn automatic_error_status(buf: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if !matches!(status, 400 | 414 | 431 | 505) {
        return None;
    }
    let only_hyper_headers = lines.all(|line| {
        let line = line.to_ascii_lowercase();
        line == "content-length: 0" || line == "connection: close" || line.starts_with("date: ")
    });
    only_hyper_headers.then_some(status)
}

/// The envelope for a request that could not be parsed (SPEC §12: 400
/// BAD_REQUEST), saying which part was wrong; the connection then closes.
fn envelope_response(status: u16) -> Vec<u8> {
    let message = match status {
        414 => "the request URI is too long",
        431 => "the request headers are too large",
        505 => "the HTTP version is not supported",
        _ => "the request could not be parsed (malformed request line or header)",
    };
    let body = serde_json::json!({"error": {"code": "BAD_REQUEST", "message": message}});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hyper_automatic_answers() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 04:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_error_status(hyper_400), Some(400));
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error_status(hyper_431), Some(431));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-request-id: 1\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error_status(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error_status(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx";
        assert_eq!(automatic_error_status(with_body), None);
    }

    #[test]
    fn the_replacement_is_a_complete_envelope_response() {
        let bytes = envelope_response(400);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "BAD_REQUEST");
    }
}
