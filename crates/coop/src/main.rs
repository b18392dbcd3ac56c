//! `coop`: the command line of coop. It parses arguments, calls an engine crate and
//! prints; all behaviour lives in the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(
    name = "coop",
    version,
    about = "Containers, SPICE remote display and cooperative Linux"
)]
struct Cli {
    /// Keep containers and runtime state under DIR instead of /var/lib/coop and /run/coop.
    #[arg(long, global = true, env = "COOP_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that the kernel can run containers.
    Checkconfig(commands::checkconfig::Args),
    /// Create a container from a template.
    Create(commands::create::Args),
    /// Start a container (detached unless -F).
    Start(commands::start::Args),
    /// Stop a container: ask its init to halt, kill it after the timeout.
    Stop(commands::stop::Args),
    /// Show a container's state, usage and limits.
    Info(commands::info::Args),
    /// List containers.
    Ls(commands::ls::Args),
    /// Attach the terminal to a container's console or tty.
    Console(commands::console::Args),
    /// Copy a container (or snapshot a coLinux instance's disk).
    Copy(commands::copy::Args),
    /// Run a command inside a running container.
    Attach(commands::attach::Args),
    /// Delete a container and its root filesystem.
    Destroy(commands::destroy::Args),
    /// Suspend all processes of a container.
    Freeze(commands::freeze::Args),
    /// Resume a frozen container.
    Unfreeze(commands::freeze::Args),
    /// Serve an X display over SPICE.
    Spice(commands::spice::Args),
    /// Connect to a SPICE server (window, or --screenshot FILE).
    View(commands::view::Args),
    /// Start containers at boot (lxc.start.auto).
    Autostart(commands::autostart::Args),
    /// Manage networks (bridges with DHCP and NAT).
    Net(commands::net::Args),
    /// Internal: the per-container monitor started by `coop start`.
    #[command(name = "__monitor", hide = true)]
    Monitor(commands::monitor::Args),
}

fn main() -> ExitCode {
    commands::full_build::take_over_long_work();
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                .unwrap_or_else(|| "warn,netlink_packet_route=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let cli = Cli::parse();
    let store = coop_container::Store::new(cli.root.as_deref());
    let result = match cli.command {
        Command::Checkconfig(a) => commands::checkconfig::run(a),
        Command::Create(a) => commands::create::run(&store, a),
        Command::Start(a) => commands::start::run(&store, a),
        Command::Stop(a) => commands::stop::run(&store, a),
        Command::Info(a) => commands::info::run(&store, a),
        Command::Ls(a) => commands::ls::run(&store, a),
        Command::Console(a) => commands::console::run(&store, a),
        Command::Copy(a) => commands::copy::run(&store, a),
        Command::Attach(a) => commands::attach::run(&store, a),
        Command::Destroy(a) => commands::destroy::run(&store, a),
        Command::Freeze(a) => commands::freeze::run(&store, a, true),
        Command::Unfreeze(a) => commands::freeze::run(&store, a, false),
        Command::Spice(a) => commands::spice::run(&store, a),
        Command::View(a) => commands::view::run(a),
        Command::Autostart(a) => commands::autostart::run(&store, a),
        Command::Net(a) => commands::net::run(&store, a),
        Command::Monitor(a) => commands::monitor::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("coop: {e:#}");
            ExitCode::from(1)
        }
    }
}
