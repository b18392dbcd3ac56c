use coop_container::{info, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Fancy: a table with state, IPs and limits.
    #[arg(short = 'f', long)]
    fancy: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info::list(store)?)?);
    } else if a.fancy {
        println!(
            "{:<20} {:<8} {:<8} {:<16} {:<8} {:<10}",
            "NAME", "STATE", "PID", "IPV4", "CPU", "MEMORY"
        );
        for i in info::list(store)? {
            println!(
                "{:<20} {:<8} {:<8} {:<16} {:<8} {:<10}",
                i.name,
                i.state,
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                if i.ips.is_empty() {
                    "-".into()
                } else {
                    i.ips.join(",")
                },
                i.limits
                    .cpu
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                i.limits
                    .memory_bytes
                    .map(|m| format!("{}M", m >> 20))
                    .unwrap_or_else(|| "-".into()),
            );
        }
    } else {
        for n in store.list()? {
            println!("{n}");
        }
    }
    Ok(0)
}
