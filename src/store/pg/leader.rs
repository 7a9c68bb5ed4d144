//! Which instance runs the background work (SPEC §15): the one holding a
//! PostgreSQL advisory lock on a dedicated connection. PostgreSQL frees the
//! lock when that session ends, so a SIGKILLed leader's lock is free the
//! moment its socket closes; a leader that hangs or loses its network is
//! ended by the server (`idle_session_timeout`) and stands down by itself
//! first, since it counts as leading only while its last check is recent.
//!
//! With T = `storage.postgres.takeover_seconds`: the connection checks in
//! every T/5; a leader whose last good check is older than T/2 stands down;
//! the server ends a silent session after 3T/4; a follower tries the lock
//! every T/5. So a dead leader is replaced within about 3T/4 + T/5 < T, and
//! an unreachable one has stopped acting before anyone else starts.
//!
//! The same connection LISTENs for commits of other instances that queued
//! webhook deliveries or reconciler work, and passes them on.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, NoTls};
use tokio::sync::watch;

use super::schema::describe;
use crate::domain::time::now_millis;

/// The advisory lock key of leadership ("vpsd" and 2 in ASCII).
const LEADER_LOCK: i64 = 0x7670_7364_0000_0002;
/// NOTIFY channels: deliveries queued, reconciler work committed.
pub const EVENTS_CHANNEL: &str = "vpsd_events";
pub const WORK_CHANNEL: &str = "vpsd_work";
/// The longest the leadership thread waits without looking at `stopping`.
const LISTEN_SLICE: Duration = Duration::from_millis(100);

pub struct Leadership {
    leading: AtomicBool,
    last_check: AtomicI64,
    stand_down_after_ms: i64,
    stopping: AtomicBool,
    pub changed: watch::Sender<bool>,
    pub events: watch::Sender<u64>,
    pub work: watch::Sender<u64>,
}

impl Leadership {
    pub fn new(takeover: Duration, events: watch::Sender<u64>) -> Arc<Leadership> {
        Arc::new(Leadership {
            leading: AtomicBool::new(false),
            last_check: AtomicI64::new(0),
            stand_down_after_ms: i64::try_from(takeover.as_millis() / 2).unwrap_or(i64::MAX),
            stopping: AtomicBool::new(false),
            changed: watch::channel(false).0,
            events,
            work: watch::channel(0).0,
        })
    }

    /// Leading, and sure of it recently enough.
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
            && now_millis().saturating_sub(self.last_check.load(Ordering::SeqCst))
                < self.stand_down_after_ms
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set(false);
    }

    fn set(&self, leading: bool) {
        let was = self.leading.swap(leading, Ordering::SeqCst);
        if was != leading {
            if leading {
                tracing::info!("this instance now runs the background work");
            } else if !self.stopping.load(Ordering::SeqCst) {
                tracing::warn!("this instance no longer runs the background work");
            }
            self.changed.send_replace(leading);
        }
    }
}

/// Connects the leadership session and tries the lock once, so a lone
/// instance leads from its first request; then keeps at it on a thread.
pub fn start(
    config: postgres::Config,
    takeover: Duration,
    leadership: Arc<Leadership>,
) -> std::thread::JoinHandle<()> {
    let tick = takeover / 5;
    let mut session = connect(&config, takeover).ok();
    if let Some(client) = session.as_mut() {
        if check(client, &leadership).is_err() {
            session = None;
        }
    }
    std::thread::Builder::new()
        .name("vpsd-leadership".into())
        .spawn(move || run(config, takeover, tick, session, &leadership))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot start the leadership thread; this instance will not run background work");
            std::thread::spawn(|| {})
        })
}

fn run(
    config: postgres::Config,
    takeover: Duration,
    tick: Duration,
    mut session: Option<Client>,
    leadership: &Leadership,
) {
    while !leadership.stopping.load(Ordering::SeqCst) {
        let Some(client) = session.as_mut() else {
            leadership.set(false);
            std::thread::sleep(tick);
            session = connect(&config, takeover)
                .map_err(|e| tracing::warn!(error = %describe(&e), "leadership connection failed"))
                .ok();
            continue;
        };
        if let Err(e) = listen(client, tick, leadership).and_then(|()| check(client, leadership)) {
            tracing::warn!(error = %describe(&e), "leadership connection lost");
            leadership.set(false);
            session = None;
        }
    }
    if let Some(mut client) = session {
        let _ = client.execute("SELECT pg_advisory_unlock_all()", &[]);
    }
}

fn connect(config: &postgres::Config, takeover: Duration) -> Result<Client, postgres::Error> {
    let mut config = config.clone();
    config
        .application_name("vpsd-leadership")
        .keepalives(true)
        // The kernel counts keepalive idle time in whole seconds; 0 is
        // refused (EINVAL), which would keep the session from ever opening.
        .keepalives_idle((takeover / 5).max(Duration::from_secs(1)))
        .tcp_user_timeout(takeover / 2);
    let mut client = config.connect(NoTls)?;
    let silent_ms = takeover.as_millis() * 3 / 4;
    client.batch_execute(&format!(
        "SET idle_session_timeout = {silent_ms}; LISTEN {EVENTS_CHANNEL}; LISTEN {WORK_CHANNEL}"
    ))?;
    Ok(client)
}

/// Holds the lock (taking it when free) and records that the session works.
fn check(client: &mut Client, leadership: &Leadership) -> Result<(), postgres::Error> {
    let leading = match leadership.leading.load(Ordering::SeqCst) {
        // Ours already: any answer at all shows the session (and the lock) lives.
        true => client.simple_query("").map(|_| true)?,
        false => client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?
            .try_get(0)?,
    };
    leadership.last_check.store(now_millis(), Ordering::SeqCst);
    leadership.set(leading);
    Ok(())
}

/// Waits up to `tick` for other instances' commits, passing them on.
fn listen(
    client: &mut Client,
    tick: Duration,
    leadership: &Leadership,
) -> Result<(), postgres::Error> {
    let deadline = std::time::Instant::now() + tick;
    // Short waits, so a stopping instance lets the lock go within one of
    // them; a steady stream of notifications must not keep the session
    // from its next check either.
    while std::time::Instant::now() < deadline && !leadership.stopping.load(Ordering::SeqCst) {
        {
            let mut notifications = client.notifications();
            let mut heard = notifications.timeout_iter(tick.min(LISTEN_SLICE));
            while let Some(note) = postgres::fallible_iterator::FallibleIterator::next(&mut heard)?
            {
                match note.channel() {
                    EVENTS_CHANNEL => leadership.events.send_modify(|n| *n = n.wrapping_add(1)),
                    WORK_CHANNEL => leadership.work.send_modify(|n| *n = n.wrapping_add(1)),
                    _ => {}
                }
                if std::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
        // A closed session answers "nothing" at once: the check says why.
        if client.is_closed() {
            break;
        }
    }
    Ok(())
}
