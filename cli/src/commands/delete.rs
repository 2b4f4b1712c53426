//! `paas delete NAME [-r] [-f]`: stop an app and delete it with its logs, and its
//! routes with `-r`.

use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app to delete.
    name: String,
    /// Delete its routes too; without it they are unmapped and kept.
    #[arg(short = 'r')]
    delete_routes: bool,
    /// Do not ask for confirmation (it is asked only on a terminal).
    #[arg(short = 'f')]
    force: bool,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    if !args.force && !confirm(&format!("Really delete the app {name}?"))? {
        println!("Delete cancelled");
        return Ok(());
    }
    let query = if args.delete_routes {
        "?routes=true"
    } else {
        ""
    };
    super::client(ctx)?
        .delete(&format!("/v1/apps/{name}{query}"))
        .await?;
    println!("Deleted app {name}");
    Ok(())
}

/// Asks a yes/no question when stdin is a terminal; without one (scripts) the answer is
/// yes, as there is nobody to ask.
fn confirm(question: &str) -> Result<bool, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    print!("{question} [yN]> ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::general(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
