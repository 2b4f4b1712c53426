//! Where the CLI sends requests: the API address, token, trusted certificate and the
//! space it works in.
//!
//! `PAAS_API`, `PAAS_TOKEN`, `PAAS_CA_CERT` and `PAAS_SPACE` win over what `paas
//! login` saved in `$PAAS_HOME/config.json` (default `~/.paas`). The file holds tokens,
//! so it is written with mode 0600. A user's access token lives an hour: the CLI trades
//! the refresh token for a new pair before it runs out ([`refresh_if_due`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::exit::Failure;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Target {
    /// `https://host:port`
    pub api: String,
    pub token: String,
    /// PEM of the certificate (or CA) to trust for the API; `None` trusts nothing extra.
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    #[serde(default)]
    pub skip_ssl_validation: bool,
    /// The user logged in with a password; `None` for a token given with `--token`.
    #[serde(default)]
    pub user: Option<String>,
    /// What gets the next pair of tokens.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token runs out, in seconds since the epoch.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// The space new apps and services are made in, and lists show.
    #[serde(default)]
    pub space: Option<String>,
}

pub fn home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("PAAS_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither PAAS_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".paas"))
}

fn config_path() -> anyhow::Result<PathBuf> {
    Ok(home()?.join("config.json"))
}

pub fn read_ca(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!("reading the CA certificate {path}: {e}"))
            .with_hint("give the API's certificate, e.g. /var/lib/paas/api-cert.pem")
    })
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Whether the target comes from `PAAS_API` and `PAAS_TOKEN` rather than the config.
pub fn from_environment() -> bool {
    env("PAAS_API").is_some() && env("PAAS_TOKEN").is_some()
}

/// The target from the environment, else from the saved config.
pub fn load(skip_ssl_validation: bool) -> Result<Target, Failure> {
    let mut target = match (env("PAAS_API"), env("PAAS_TOKEN")) {
        (Some(api), Some(token)) => Target {
            api,
            token,
            ca_cert_pem: env("PAAS_CA_CERT").map(|p| read_ca(&p)).transpose()?,
            skip_ssl_validation: false,
            ..Target::default()
        },
        _ => {
            let path = config_path()?;
            let raw = std::fs::read(&path).map_err(|_| {
                Failure::general("no API to talk to").with_hint(
                    "run `paas login --api https://HOST:9443 --token TOKEN --ca-cert FILE`, or set PAAS_API and PAAS_TOKEN",
                )
            })?;
            serde_json::from_slice(&raw).map_err(|e| {
                Failure::general(format!("{} is not valid: {e}", path.display()))
                    .with_hint("run `paas login` again")
            })?
        }
    };
    target.skip_ssl_validation |= skip_ssl_validation;
    if let Some(space) = env("PAAS_SPACE") {
        target.space = Some(space);
    }
    Ok(target)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Trades the saved refresh token for a new pair when the access token has less than
/// two minutes left, and saves them. Nothing to do for a token given with `--token`.
pub async fn refresh_if_due(skip_ssl_validation: bool) -> Result<(), Failure> {
    if std::env::var_os("PAAS_TOKEN").is_some() {
        return Ok(());
    }
    let Ok(mut target) = load(skip_ssl_validation) else {
        return Ok(());
    };
    let (Some(refresh), Some(expires_at)) = (target.refresh_token.clone(), target.expires_at)
    else {
        return Ok(());
    };
    if expires_at > now() + 120 {
        return Ok(());
    }
    let grant: paas_api::auth::TokenGrant = crate::client::Client::new(&target)?
        .json(
            http::Method::POST,
            "/v1/token",
            Some(&paas_api::auth::RefreshRequest {
                refresh_token: refresh,
            }),
        )
        .await
        .map_err(|f| f.with_hint("your login has ended: log in again with `paas login`"))?;
    target.token = grant.access_token;
    target.refresh_token = Some(grant.refresh_token);
    target.expires_at = Some(now() + grant.expires_in);
    save(&target).map_err(|e| Failure::general(format!("saving the new tokens: {e:#}")))?;
    Ok(())
}

pub fn save(target: &Target) -> anyhow::Result<PathBuf> {
    let path = config_path()?;
    let dir = path.parent().context("config path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(target)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
