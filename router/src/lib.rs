//! The HTTP router: proxies `NAME.DOMAIN` to the app's healthy instances.
//!
//! The route table is an immutable [`RouteTable`] snapshot behind an `ArcSwap`: a request
//! loads the current snapshot without a lock, and the controller publishes a whole new
//! snapshot whenever endpoints change. The router never calls the controller while
//! serving a request.
//!
//! A request passes through named phases, as in pingora: [`proxy::request_filter`]
//! (which host?), [`proxy::upstream_peer`] (which instance?),
//! [`proxy::upstream_request_filter`] (forwarded and hop-by-hop headers), then the
//! response is passed back. Each phase's failure is a [`proxy::ProxyError`] that knows
//! its status code and whose fault it was.
#![forbid(unsafe_code)]

pub mod feed;
pub mod follow;
pub mod framing;
pub mod h1;
pub mod host;
mod limit;
pub mod ops;
mod pool;
pub mod proxy;
pub mod route_service;
mod server;
pub mod table;
pub mod tls;
pub mod trust;
mod tunnel;

pub use server::{Router, RouterConfig};
pub use table::{Backend, RouteOptions, RouteTable};
