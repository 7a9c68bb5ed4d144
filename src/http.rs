//! The HTTP side: the server, the one request path (`edge`), the API and the
//! operator console, and `app`, which builds the backend's parts and serves
//! them. Only `app` is public, plus the two token helpers `vpsd token` uses:
//! `api`, `console`, `edge` and `server` are private here, so code below the
//! edge (`backend`, `domain`, the catalog and cloud clients) cannot depend on
//! an HTTP type; `crate::http::api::...` from there fails to compile
//! (`module api is private`). The `testing` feature opens them for the
//! tests, as it opens `backend::store`.

#[cfg(not(feature = "testing"))]
#[path = "api/mod.rs"]
mod api;
#[cfg(feature = "testing")]
#[path = "api/mod.rs"]
pub mod api;

#[cfg(not(feature = "testing"))]
#[path = "console/mod.rs"]
mod console;
#[cfg(feature = "testing")]
#[path = "console/mod.rs"]
pub mod console;

#[cfg(not(feature = "testing"))]
#[path = "edge.rs"]
mod edge;
#[cfg(feature = "testing")]
#[path = "edge.rs"]
pub mod edge;

#[cfg(not(feature = "testing"))]
#[path = "server.rs"]
mod server;
#[cfg(feature = "testing")]
#[path = "server.rs"]
pub mod server;

#[path = "app.rs"]
pub mod app;

pub use api::auth::{mint_dev_token, parse_ttl};
