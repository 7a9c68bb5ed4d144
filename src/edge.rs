//! The one path every request takes from the connection to a handler: the
//! client's address (the peer `server` recorded, or the trusted
//! `X-Forwarded-For` hop) and a body that can only be read within
//! `server.body_timeout_ms` are worked out here, once, and then the console
//! (which owns `/admin` paths, when it is on) or the API gets the request.
//! Neither can be reached any other way, so the limits of SPEC §12 hold for
//! both by construction.

use std::convert::Infallible;
use std::sync::Arc;

use warp::http::{HeaderMap, Method};
use warp::Filter;

use crate::api::body::Body;
use crate::api::client::client_address;
use crate::api::{ApiState, Head, HttpResponse};
use crate::console::Console;
use crate::error::AppError;
use crate::server::PeerAddr;

/// The filter serving every request: console and API.
pub fn filter(
    console: Option<Arc<Console>>,
    api: Arc<ApiState>,
) -> impl Filter<Extract = (HttpResponse,), Error = Infallible> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<PeerAddr>,
                  body| {
                let api = api.clone();
                let console = console.clone();
                async move {
                    let client =
                        client_address(peer.map(|p| p.0), &headers, api.trust_forwarded_for);
                    let head = Head {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        client,
                    };
                    let body = Body::new(body, api.body_timeout);
                    match console {
                        Some(console) if crate::console::owns(&head.path) => {
                            console.handle(head, body).await
                        }
                        _ => crate::api::handle(&api, head, body).await,
                    }
                }
            },
        )
        .recover(|_rejection: warp::Rejection| async move {
            // The filter above accepts every request; a rejection can only come
            // from warp itself (e.g. a malformed query), and still gets the envelope.
            Ok::<_, Infallible>(crate::api::error_response(&AppError::bad_request(
                "the request is malformed",
            )))
        })
        .unify()
}
