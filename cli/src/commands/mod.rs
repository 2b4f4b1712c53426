//! One module per command.

pub mod app;
pub mod apps;
pub mod audit;
pub mod buildpacks;
pub mod cells;
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
pub mod routes;
pub mod run;
pub mod services;
pub mod spaces;
pub mod target;
pub mod tasks;
pub mod users;

use paas_api::AppName;

use crate::client::Client;
use crate::exit::Failure;

/// What every command gets from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub skip_ssl_validation: bool,
    /// Print what the API answered as JSON instead of tables.
    pub json: bool,
}

/// The API client for the configured target.
pub fn client(ctx: Ctx) -> Result<Client, Failure> {
    Client::new(&crate::config::load(ctx.skip_ssl_validation)?)
}

/// Trades a login's refresh token for new tokens when the access token runs out soon.
/// A failure is not reported here: the command's request then says what to do.
pub async fn refresh_login(ctx: Ctx) {
    let _ = crate::config::refresh_if_due(ctx.skip_ssl_validation).await;
}

/// Prints `value` as pretty JSON, for `--json`.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Failure::general(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// Validates an app name from the command line.
pub fn app_name(raw: &str) -> Result<AppName, Failure> {
    AppName::parse(raw).map_err(|e| Failure::usage(e.to_string()))
}
