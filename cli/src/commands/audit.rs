//! `paas audit`: who changed what, from where, and when.

use paas_api::auth::AuditEntry;
use paas_api::format_timestamp_ms;

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this space's entries (else every space you are in; admins see all,
    /// logins and users too).
    #[arg(long, short = 's')]
    space: Option<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let path = match &args.space {
        Some(space) => format!("/v1/audit?space={space}"),
        None => "/v1/audit".to_string(),
    };
    let entries: Vec<AuditEntry> = super::client(ctx)?.list(&path).await?;
    if ctx.json {
        return super::print_json(&entries);
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                format_timestamp_ms(e.timestamp_ms),
                e.user.clone(),
                e.address.clone().unwrap_or_else(|| "-".into()),
                e.space.clone().unwrap_or_else(|| "-".into()),
                e.action.clone(),
                e.status.to_string(),
            ]
        })
        .collect();
    print_table(&["when", "user", "from", "space", "what", "status"], &rows);
    Ok(())
}
