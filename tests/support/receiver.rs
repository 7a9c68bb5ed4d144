//! A webhook receiver for tests: serves `POST /hook` on `127.0.0.1:0` from its
//! own thread, records every request (headers and raw body), and answers from
//! a script: the next answers in order, then the default (204).
//!
//! Signatures are checked here with `hmac`/`sha2`/`base64` directly, exactly
//! as the Standard Webhooks specification describes, independently of vpsd's
//! own signing code.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use tokio::sync::oneshot;
use warp::Filter;

/// What the receiver answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// Answers 204 only after this long (past vpsd's timeout: no answer).
    Hang(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub raw: Vec<u8>,
    pub body: Value,
    pub at: Instant,
}

impl Received {
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    pub fn order_id(&self) -> &str {
        self.body["data"]["order"]["id"].as_str().unwrap_or("")
    }
}

struct State {
    script: VecDeque<Answer>,
    default: Answer,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<State>>;

pub struct Receiver {
    state: Shared,
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(std::net::TcpListener::bind("127.0.0.1:0").expect("receiver: bind"))
    }

    /// Serves on a listener the caller bound (to come back on the same port).
    pub fn start_on(listener: std::net::TcpListener) -> Receiver {
        let state: Shared = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default: Answer::Status(204),
            received: Vec::new(),
        }));
        let port = listener.local_addr().expect("receiver: address").port();
        listener
            .set_nonblocking(true)
            .expect("receiver: non-blocking");
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || serve(listener, served, stop));
        Receiver {
            state,
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next answers, in order, before the default resumes.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().script.extend(answers);
    }

    pub fn set_default(&self, answer: Answer) {
        self.lock().default = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Waits until at least `n` requests arrived; panics with what did.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::wait_for(timeout, || {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .unwrap_or_else(|| {
            let got: Vec<String> = self
                .received()
                .iter()
                .map(|r| r.event_type().to_string())
                .collect();
            panic!("expected {n} webhook requests, got {got:?}")
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Standard Webhooks verification: HMAC-SHA256 keyed with the base64-decoded
/// part of `whsec_...`, over `{id}.{timestamp}.{body}`, compared with any
/// `v1,` entry of the space-separated signature header.
pub fn verifies(secret: &str, r: &Received) -> bool {
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return false;
    };
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{}.{}.", r.id, r.timestamp).as_bytes());
    mac.update(&r.raw);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    r.signature
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

fn serve(listener: std::net::TcpListener, state: Shared, stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("receiver: runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("receiver: listener");
        let routes = warp::post()
            .and(warp::path("hook"))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let state = state.clone();
                async move { answer(&state, &headers, &body).await }
            });
        let server = warp::serve(routes).incoming(listener).run();
        // Not graceful: a hanging answer must not keep a dropped receiver
        // (and its port) alive.
        tokio::select! {
            () = server => {}
            _ = stop => {}
        }
    });
}

async fn answer(
    state: &Shared,
    headers: &warp::http::HeaderMap,
    body: &[u8],
) -> warp::reply::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let answer = {
        let mut s = lock(state);
        s.received.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            content_type: header("content-type"),
            raw: body.to_vec(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            at: Instant::now(),
        });
        let default = s.default.clone();
        s.script.pop_front().unwrap_or(default)
    };
    let status = match answer {
        Answer::Status(code) => code,
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            204
        }
        Answer::Redirect(location) => {
            return warp::http::Response::builder()
                .status(302)
                .header("location", location)
                .body(Default::default())
                .unwrap_or_default();
        }
    };
    warp::http::Response::builder()
        .status(status)
        .body(Default::default())
        .unwrap_or_default()
}
