//! The HTTP client deliveries go out on: asynchronous, on the runtime, with
//! a pool of kept-alive connections per endpoint.
//!
//! Round 2 sent each attempt from a blocking thread through ureq: a thread
//! woken per share of a batch, ureq's per-call set-up and a DNS path. Here an
//! attempt is a future on the endpoint's worker: a write of the request (one
//! `writev` of head and body, hyper's default on a TCP stream), a read of the
//! answer, no thread switch. Lookups happen only when a connection is opened.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::domain::webhook::AttemptOutcome;

/// The most of an endpoint's answer read (and thrown away) to keep its
/// connection; a longer answer costs that connection, nothing else.
const ANSWER_READ: usize = 64 << 10;
/// A kept connection unused this long is closed: receivers drop idle ones
/// too, and one found dead costs a failed attempt.
const IDLE_KEPT: Duration = Duration::from_secs(60);

/// One signed request's parts, as [`crate::webhooks::sign`] made them.
pub struct Signed {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct WebhookClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Bounds each whole attempt: connect, send, and the answer's head.
    timeout: Duration,
}

impl WebhookClient {
    /// `kept_per_endpoint` idle connections stay open per endpoint: one per
    /// attempt in flight, so a busy endpoint never connects anew.
    pub fn new(timeout: Duration, kept_per_endpoint: usize) -> Result<Self, String> {
        let mut tcp = HttpConnector::new();
        // The TLS layer below says which schemes are allowed.
        tcp.enforce_http(false);
        // Head and body leave in one write; Nagle would only hold it back.
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("cannot set up TLS for webhooks: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(kept_per_endpoint)
            .pool_idle_timeout(IDLE_KEPT)
            .build(https);
        Ok(Self { http, timeout })
    }

    /// One POST; a redirect is an answer like any other non-2xx (SPEC §10:
    /// a signed body never travels to a host nobody configured).
    pub async fn post(&self, uri: &Uri, signed: Signed) -> AttemptOutcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let request = match request(uri, signed) {
            Ok(r) => r,
            Err(e) => {
                return AttemptOutcome::Refused {
                    status: None,
                    error: format!("the request cannot be built ({e})"),
                }
            }
        };
        let answer = tokio::time::timeout_at(deadline, self.http.request(request)).await;
        let response = match answer {
            Err(_) => return refused("no response within webhooks.timeout_ms".into()),
            Ok(Err(e)) => return refused(describe(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        // Read to its end, a short answer lets the connection go back to the
        // pool; an unread or over-long one closes it. The status decides.
        let body = Limited::new(response.into_body(), ANSWER_READ).collect();
        let _ = tokio::time::timeout_at(deadline, body).await;
        if status.is_success() {
            AttemptOutcome::Delivered {
                status: status.as_u16(),
            }
        } else {
            AttemptOutcome::Refused {
                status: Some(status.as_u16()),
                error: format!("the endpoint answered HTTP {}", status.as_u16()),
            }
        }
    }
}

fn request(uri: &Uri, signed: Signed) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    const AGENT: &str = concat!("vpsd/", env!("CARGO_PKG_VERSION"));
    Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static(AGENT))
        .header("webhook-id", signed.id)
        .header("webhook-timestamp", signed.timestamp)
        .header("webhook-signature", signed.signature)
        .body(Full::new(signed.body))
}

fn refused(error: String) -> AttemptOutcome {
    AttemptOutcome::Refused {
        status: None,
        error,
    }
}

/// Our own words for a transport failure: the client's text can carry the
/// URL (and its credentials) or internal addresses.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io_kind = None;
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return "TLS failed".into();
        }
        // hyper-util's connector names a failed lookup only in its text.
        if e.is_connect() && c.to_string().starts_with("dns error") {
            return "the endpoint's host does not resolve".into();
        }
        // An io::Error hides what it wraps from `source()` (the TLS layer
        // wraps rustls' error twice): look inside.
        cause = match c.downcast_ref::<std::io::Error>() {
            Some(io) => {
                io_kind = Some(io.kind());
                match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                    None => std::error::Error::source(io),
                }
            }
            None => c.source(),
        };
    }
    match io_kind {
        Some(kind) if e.is_connect() => format!("cannot connect to the endpoint ({kind})"),
        Some(kind) => format!("connection failed ({kind})"),
        None if e.is_connect() => "cannot connect to the endpoint".into(),
        None => "the request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn signed() -> Signed {
        Signed {
            id: "msg_1".into(),
            timestamp: "1700000000".into(),
            signature: "v1,abc".into(),
            body: Bytes::from_static(br#"{"type":"order.created"}"#),
        }
    }

    fn client(timeout_ms: u64) -> WebhookClient {
        WebhookClient::new(Duration::from_millis(timeout_ms), 4).unwrap()
    }

    /// A raw HTTP/1.1 server answering every request on a connection with
    /// `answer`; counts the connections it accepted.
    async fn server(answer: &'static str) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // One whole request: the head, then the fixed body.
                        while let Some(end) = complete_request(&seen) {
                            seen.drain(..end);
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/hook").parse().unwrap(), accepted)
    }

    fn complete_request(seen: &[u8]) -> Option<usize> {
        let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&seen[..head_end])
            .ok()?
            .to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        (seen.len() >= head_end + length).then_some(head_end + length)
    }

    const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

    #[tokio::test]
    async fn attempts_reuse_one_kept_alive_connection() {
        let (uri, accepted) = server(NO_CONTENT).await;
        let client = client(2_000);
        for _ in 0..20 {
            let outcome = client.post(&uri, signed()).await;
            assert!(matches!(outcome, AttemptOutcome::Delivered { status: 204 }));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_refused_not_followed() {
        let (uri, accepted) = server(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/x\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let outcome = client(2_000).post(&uri, signed()).await;
        match outcome {
            AttemptOutcome::Refused { status, error } => {
                assert_eq!(status, Some(307));
                assert_eq!(error, "the endpoint answered HTTP 307");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out_in_our_words() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        // Accepts and reads, never answers.
        let held = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let outcome = client(200).post(&uri, signed()).await;
        assert_eq!(
            outcome,
            refused("no response within webhooks.timeout_ms".into())
        );
        held.abort();
    }

    #[tokio::test]
    async fn a_closed_port_and_plain_http_under_https_are_described_without_the_url() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let uri: Uri = format!("http://user:secret@{addr}/hook").parse().unwrap();
        let outcome = client(2_000).post(&uri, signed()).await;
        assert_eq!(
            outcome,
            refused("cannot connect to the endpoint (connection refused)".into())
        );

        // Answers plain HTTP to whatever it is sent, a TLS hello included.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https: Uri = format!("https://{}/hook", plain.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = plain.accept().await.unwrap();
            let _ = socket.write_all(NO_CONTENT.as_bytes()).await;
            let mut buf = [0u8; 1024];
            while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let outcome = client(2_000).post(&https, signed()).await;
        assert_eq!(outcome, refused("TLS failed".into()));
    }
}
