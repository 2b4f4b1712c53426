//! `paas apps`: a table of apps.

use paas_api::AppSummary;

use crate::exit::Failure;
use crate::terminal::Screen;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    let apps: Vec<AppSummary> = client.list(&client.in_space("/v1/apps")).await?;
    if ctx.json {
        return super::print_json(&apps);
    }
    if apps.is_empty() {
        println!("No apps yet: push one with `paas push NAME`.");
        return Ok(());
    }
    let rows: Vec<[String; 5]> = apps
        .iter()
        .map(|a| {
            [
                a.name.to_string(),
                a.state.clone(),
                format!("{}/{}", a.running_instances, a.settings.instances),
                a.settings.memory.to_string().to_uppercase(),
                a.routes.join(", "),
            ]
        })
        .collect();
    print_table(&["name", "state", "instances", "memory", "routes"], &rows);
    Ok(())
}

/// Prints rows under headers, each column as wide as its widest cell. Cells may hold a
/// tenant's text (an event's description, a start command): on a terminal each is
/// neutralised, before the widths are measured, so the columns still line up.
pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let screen = Screen::stdout();
    if !screen.is_terminal() {
        print!("{}", format_table(headers, rows));
        return;
    }
    let shown: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.each_ref().map(|c| screen.line(c).into_owned()))
        .collect();
    print!("{}", format_table(headers, &shown));
}

/// Rows under headers, each column as wide as its widest cell (in characters), three
/// spaces apart; the last column is not padded.
pub fn format_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_line_up_by_characters() {
        let rows = [
            [
                "web".to_string(),
                "started".to_string(),
                "http://web.localhost:8080".to_string(),
            ],
            [
                "ünïcode-app".to_string(),
                "pending".to_string(),
                String::new(),
            ],
        ];
        let expected = "\
name          state     url
web           started   http://web.localhost:8080
ünïcode-app   pending
";
        assert_eq!(
            super::format_table(&["name", "state", "url"], &rows),
            expected
        );
    }
}
