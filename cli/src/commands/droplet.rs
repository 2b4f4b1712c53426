//! `paas droplet download NAME -o FILE.tgz`: the app's running droplet.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;

use crate::client::check;
use crate::exit::{self, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Save the droplet the app runs to a file.
    Download(DownloadArgs),
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// The app whose droplet to fetch.
    name: String,
    /// Where to write it (a .tgz).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: std::path::PathBuf,
}

pub async fn run(cmd: Command, ctx: super::Ctx) -> Result<(), Failure> {
    let Command::Download(args) = cmd;
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let resp = client
        .send(
            Method::GET,
            &format!("/v1/apps/{name}/droplet"),
            Bytes::new(),
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    // Written next to the target and renamed, so a broken download leaves no partial file.
    let dir = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Failure::general(format!("writing in {}: {e}", dir.display())))?;
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::general(format!("the download broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            tmp.write_all(data)
                .map_err(|e| Failure::general(format!("writing {}: {e}", args.output.display())))?;
            bytes += data.len() as u64;
        }
    }
    tmp.persist(&args.output)
        .map_err(|e| Failure::general(format!("writing {}: {}", args.output.display(), e.error)))?;
    println!(
        "Saved the droplet of {name} to {} ({bytes} bytes)",
        args.output.display()
    );
    Ok(())
}
