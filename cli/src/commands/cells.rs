//! `paas cells`: the cells that run instances, as they last reported themselves. A
//! cell is listed only while it renews its lease (every second, 3 s to spare): one that
//! is down is gone from the list within seconds.

use paas_api::format_timestamp_ms;
use paas_api::state::CellPresence;

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let cells: Vec<CellPresence> = super::client(ctx)?.list("/v1/cells").await?;
    if ctx.json {
        return super::print_json(&cells);
    }
    if cells.is_empty() {
        println!("No cell is up: instances cannot run until a paasd with the cell role starts.");
        return Ok(());
    }
    let gib = |b: u64| format!("{:.1}G", b as f64 / (1u64 << 30) as f64);
    let rows: Vec<[String; 5]> = cells
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.address.clone(),
                format!("{} of {}", gib(c.memory_used_bytes), gib(c.memory_bytes)),
                c.instances.to_string(),
                format_timestamp_ms(c.updated_ms),
            ]
        })
        .collect();
    print_table(
        &["cell", "address", "memory", "instances", "updated"],
        &rows,
    );
    Ok(())
}
