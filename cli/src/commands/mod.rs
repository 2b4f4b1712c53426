//! One module per command.

pub mod app;
pub mod apps;
pub mod buildpacks;
pub mod delete;
pub mod droplet;
pub mod env;
pub mod events;
pub mod exec;
pub mod lifecycle;
pub mod login;
pub mod logs;
pub mod push;
pub mod restage;

use paas_api::AppName;

use crate::client::Client;
use crate::exit::Failure;

/// The API client for the configured target.
pub fn client(skip_ssl_validation: bool) -> Result<Client, Failure> {
    Client::new(&crate::config::load(skip_ssl_validation)?)
}

/// Validates an app name from the command line.
pub fn app_name(raw: &str) -> Result<AppName, Failure> {
    AppName::parse(raw).map_err(|e| Failure::usage(e.to_string()))
}
