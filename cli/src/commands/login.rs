//! `paas login`: sign in with a user and password (or an admin token), check the API,
//! and save where to send requests.

use std::io::{BufRead, IsTerminal, Write};

use http::Method;
use paas_api::auth::{LoginRequest, SpaceInfo, TokenGrant};
use paas_api::Info;

use crate::client::Client;
use crate::config::{self, Target};
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The API, e.g. https://127.0.0.1:9443
    #[arg(long, short = 'a')]
    api: String,
    /// Your user name (asked for on a terminal when missing).
    #[arg(long, short = 'u', conflicts_with = "token")]
    user: Option<String>,
    /// Your password (asked for on a terminal when missing, without echo). Given
    /// here it is seen by other users of this machine: prefer the prompt, or
    /// PAAS_PASSWORD for scripts.
    #[arg(
        long,
        short = 'p',
        conflicts_with = "token",
        env = "PAAS_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// The space to work in (see `paas spaces`; change it with `paas target -s`).
    #[arg(long, short = 's')]
    space: Option<String>,
    /// A token instead of a user: paasd writes the admin token to its data folder
    /// (admin-token).
    #[arg(long)]
    token: Option<String>,
    /// The API's certificate, or the CA that signed it (paasd writes api-cert.pem).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let mut target = Target {
        api: args.api,
        ca_cert_pem: args.ca_cert.as_deref().map(config::read_ca).transpose()?,
        skip_ssl_validation: ctx.skip_ssl_validation,
        ..Target::default()
    };
    match args.token {
        Some(token) => target.token = token.trim().to_string(),
        None => {
            let user = match args.user {
                Some(u) => u,
                None => ask("User: ", false)?,
            };
            let password = match args.password {
                Some(p) => p,
                None => ask("Password: ", true)?,
            };
            let grant: TokenGrant = Client::new(&target)?
                .json(
                    Method::POST,
                    "/v1/login",
                    Some(&LoginRequest {
                        user: user.clone(),
                        password,
                    }),
                )
                .await?;
            target.token = grant.access_token;
            target.refresh_token = Some(grant.refresh_token);
            target.expires_at = Some(config::now() + grant.expires_in);
            target.user = Some(grant.user);
        }
    }
    let client = Client::new(&target)?;
    let info: Info = client.json(Method::GET, "/v1/info", None::<&()>).await?;
    target.space = match args.space {
        Some(space) => {
            let _: SpaceInfo = client
                .json(Method::GET, &format!("/v1/spaces/{space}"), None::<&()>)
                .await?;
            Some(space)
        }
        // One space is the one to work in; with several, the user picks.
        None => {
            let spaces: Vec<SpaceInfo> = client.list("/v1/spaces").await?;
            match spaces.as_slice() {
                [only] => Some(only.name.clone()),
                _ => None,
            }
        }
    };
    let path = config::save(&target).map_err(|e| Failure::general(format!("{e:#}")))?;
    let who = target.user.as_deref().unwrap_or("the token's user");
    println!(
        "Logged in to {} (paas {}) as {who}; apps answer at NAME.{}",
        target.api, info.version, info.domain
    );
    match &target.space {
        Some(space) => println!("Space: {space}"),
        None => println!(
            "No space targeted: pick one with `paas target -s SPACE` (`paas spaces` lists them)"
        ),
    }
    println!("Settings saved in {}", path.display());
    Ok(())
}

/// Asks for a value on the terminal; `secret` turns echo off while it is typed.
pub fn ask(prompt: &str, secret: bool) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(format!(
            "{} is needed and there is no terminal to ask on",
            prompt.trim_end_matches(": ").to_lowercase()
        ))
        .with_hint("give -u USER, and -p PASSWORD or PAAS_PASSWORD, or log in with --token"));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = if secret { echo_off(&stdin) } else { None };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| Failure::general(format!("reading from the terminal: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns the terminal's echo off; gives back the settings to restore.
fn echo_off(stdin: &std::io::Stdin) -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin, SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}
