//! A request's body as the API and the console receive it. The stream can
//! only be read through [`Body::read`], which holds it to
//! `server.body_timeout_ms`, so no route, the console's forms included, can
//! wait on a client that stalls mid-body (SPEC §12): the timeout is part of
//! the type, not a step each handler must remember.

use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::Stream;

use crate::error::AppError;

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Too large, unreadable: the envelope says which.
    Refused(AppError),
    /// It did not arrive within this long; the connection is to be closed,
    /// since the rest of the body is never read.
    TimedOut(Duration),
}

/// An unread request body and the time it may take to arrive.
pub struct Body<S> {
    stream: S,
    timeout: Duration,
}

impl<S, B> Body<S>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    pub fn new(stream: S, timeout: Duration) -> Body<S> {
        Body { stream, timeout }
    }

    /// The whole body, at most `limit` bytes (see `request::read_body`).
    pub async fn read(
        self,
        headers: &warp::http::HeaderMap,
        limit: u64,
    ) -> Result<Bytes, BodyError> {
        let reading = super::request::read_body(headers, self.stream, limit);
        match tokio::time::timeout(self.timeout, reading).await {
            Ok(read) => read.map_err(BodyError::Refused),
            Err(_) => Err(BodyError::TimedOut(self.timeout)),
        }
    }
}
