//! Wire types shared by the `paas` CLI and the `paasd` daemon.
//!
//! Everything that crosses the API is defined here once, so the two sides cannot drift.
//! Names and sizes are validated once, at the edge, into newtypes ([`AppName`],
//! [`MemorySize`]); code that holds one never checks it again. This crate does no I/O.
#![forbid(unsafe_code)]

pub mod auth;
mod memory;
mod names;
mod route;
pub mod state;
mod wire;

pub use memory::{MemorySize, MemorySizeError};
pub use names::{check_env_name, AppName, AppNameError, BuildpackName, BuildpackNameError};
pub use route::{
    check_host, CertificateEntry, CreateDomain, DomainInfo, Route, RouteError, MAX_ROUTE_PATH_LEN,
};
pub use wire::*;

/// The path prefix of every API route: bumped only for incompatible changes.
pub const API_PREFIX: &str = "/v1";
