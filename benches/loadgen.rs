//! A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each
//! sending its next request as soon as the previous answer arrives. Latency is
//! measured per request from write to the end of the body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Builds the raw bytes of request number `i` on connection `conn`.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

/// Runs `connections` clients for `warmup + duration`; only requests that
/// start after the warm-up count. A response whose status is not `expect`
/// counts as an error.
pub fn run(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: u16,
    make: MakeRequest,
) -> LoadReport {
    run_limited(addr, connections, warmup, duration, expect, make, u64::MAX)
}

/// [`run`] where each connection stops after `per_connection` requests (or
/// at the end of `duration`); the rate is over the time the last one took.
pub fn run_limited(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: u16,
    make: MakeRequest,
    per_connection: u64,
) -> LoadReport {
    let load = Load {
        connections,
        warmup,
        duration,
        expect,
        per_connection,
        pace: None,
    };
    drive(addr, load, make)
}

/// [`run`] at `per_second` requests in all, spread evenly over the
/// connections: a load the same as another run's rate, so the two runs'
/// CPU per request compare work for work rather than batching at
/// different rates. A slower server falls behind the schedule and runs
/// closed-loop.
pub fn run_paced(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: u16,
    make: MakeRequest,
    per_second: f64,
) -> LoadReport {
    let every = Duration::from_secs_f64(connections as f64 / per_second.max(1.0));
    let load = Load {
        connections,
        warmup,
        duration,
        expect,
        per_connection: u64::MAX,
        pace: Some(every),
    };
    drive(addr, load, make)
}

struct Load {
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: u16,
    per_connection: u64,
    /// Each connection's period between request starts, if paced.
    pace: Option<Duration>,
}

fn drive(addr: SocketAddr, load: Load, make: MakeRequest) -> LoadReport {
    let Load {
        connections,
        warmup,
        duration,
        expect,
        per_connection,
        pace,
    } = load;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        let mut tasks = Vec::new();
        for conn in 0..connections {
            let make = make.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut stream = match TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(_) => return (latencies, 1),
                };
                let _ = stream.set_nodelay(true);
                let mut buf = Vec::with_capacity(16 * 1024);
                let mut i = 0u64;
                // Connections start spread over one period, not in a burst.
                let first =
                    pace.map(|every| start + every.mul_f64(conn as f64 / connections as f64));
                loop {
                    if let (Some(first), Some(every)) = (first, pace) {
                        let at = first + every.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                        tokio::time::sleep_until(at.into()).await;
                    }
                    let sent = Instant::now();
                    if sent >= end || i >= per_connection {
                        break;
                    }
                    let request = make(conn, i);
                    i += 1;
                    if stream.write_all(&request).await.is_err() {
                        errors += 1;
                        break;
                    }
                    match read_response(&mut stream, &mut buf).await {
                        Some(status) => {
                            if sent >= measure_from {
                                latencies.push(sent.elapsed());
                                if status != expect {
                                    errors += 1;
                                }
                            }
                        }
                        None => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok((l, e)) = t.await {
                all.extend(l);
                errors += e;
            }
        }
        // Every connection has stopped: at the end, or after its last request.
        let busy_until = Instant::now().min(end);
        all.sort();
        let pct = |p: f64| -> f64 {
            if all.is_empty() {
                return f64::NAN;
            }
            let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
            all[idx].as_secs_f64() * 1000.0
        };
        LoadReport {
            requests: all.len() as u64,
            errors,
            per_second: all.len() as f64
                / busy_until
                    .saturating_duration_since(measure_from)
                    .as_secs_f64()
                    .max(1e-9),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    })
}

/// Reads one response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(status)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

pub fn post_json(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}
