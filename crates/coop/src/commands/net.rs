use coop_container::Store;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create a network: a bridge with an address, DHCP and (unless --no-nat) NAT.
    Create {
        name: String,
        /// Bridge address and prefix; containers get addresses from this subnet.
        #[arg(long, default_value = "10.0.3.1/24")]
        subnet: String,
        /// Do not masquerade the network's traffic to the outside.
        #[arg(long)]
        no_nat: bool,
    },
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a network (refused while containers use it).
    Rm { name: String },
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let net = store.net()?;
    match a.cmd {
        Cmd::Create {
            name,
            subnet,
            no_nat,
        } => {
            let n = net.create_network(&name, &subnet, !no_nat)?;
            println!("Created network {name} ({})", n.subnet());
        }
        Cmd::Ls { json } => {
            let list = net.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<16} {:<18} {:<5} {:<6} LEASES",
                    "NAME", "SUBNET", "NAT", "UP"
                );
                for n in list {
                    println!(
                        "{:<16} {:<18} {:<5} {:<6} {}",
                        n.name, n.subnet, n.nat, n.bridge_up, n.leases
                    );
                }
            }
        }
        Cmd::Rm { name } => {
            let users = coop_container::info::users_of_network(store, &name)?;
            net.remove(&name, &users)?;
            println!("Removed network {name}");
        }
    }
    Ok(0)
}
