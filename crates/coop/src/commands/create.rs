use std::path::PathBuf;

use coop_container::create::{create, CreateOptions};
use coop_container::Store;
use coop_templates::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Template: busybox, debian or tar.
    #[arg(short = 't', long)]
    template: String,
    /// Initial configuration lines appended to the template's (LXC format).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Root password; generated and printed once when not given.
    #[arg(long)]
    root_password: Option<String>,
    /// debian: release (default bookworm).
    #[arg(long)]
    release: Option<String>,
    /// debian: mirror URL (default: the host's Debian mirror).
    #[arg(long)]
    mirror: Option<String>,
    /// debian: debootstrap variant (default minbase).
    #[arg(long)]
    variant: Option<String>,
    /// tar: the root filesystem archive (.tar, .tar.gz, .tar.xz, .tar.zst).
    #[arg(long)]
    file: Option<PathBuf>,
    /// container (default), or colinux: a Linux kernel (User-Mode Linux) on a disk image.
    #[arg(long, default_value = "container", value_parser = ["container", "colinux"])]
    kind: String,
    /// colinux: guest memory (a cap; unused memory stays with the host).
    #[arg(long, default_value = "256M")]
    memory: String,
    /// colinux: size of the guest's disk image.
    #[arg(long, default_value = "1G")]
    disk_size: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let name = a.name.get()?.to_string();
    let mut template_args = Vec::new();
    for (k, v) in [
        ("release", a.release),
        ("mirror", a.mirror),
        ("variant", a.variant),
        ("file", a.file.map(|f| f.display().to_string())),
    ] {
        if let Some(v) = v {
            template_args.push((k.to_string(), v));
        }
    }
    let colinux_opts = if a.kind == "colinux" {
        let size = |what: &str, v: &str| {
            coop_config::parse_size(v).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
        };
        Some(coop_container::create::ColinuxOptions {
            memory: size("memory", &a.memory)?,
            disk_size: size("disk-size", &a.disk_size)?,
        })
    } else {
        None
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("static template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let progress = |p: Progress| match p {
        Progress::Step(s) => bar.set_message(s),
        Progress::Fraction { done, total, what } => {
            bar.set_message(format!("{what} ({done}/{total})"))
        }
    };
    let created = create(
        store,
        &name,
        &CreateOptions {
            template: a.template.clone(),
            template_args,
            config_file: a.config,
            root_password: a.root_password,
            extra_config: vec![],
            colinux: colinux_opts,
        },
        &progress,
    );
    bar.finish_and_clear();
    let created = created?;
    println!("Created container {name} from template {}", a.template);
    if created.password_generated {
        println!("Root password (shown once): {}", created.root_password);
    }
    Ok(0)
}
