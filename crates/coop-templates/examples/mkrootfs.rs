//! Builds a container rootfs with one template and prints its config lines, e.g.
//! `mkrootfs busybox web1 /tmp/web1/rootfs /var/cache/coop` or
//! `mkrootfs tar web2 /tmp/web2/rootfs /var/cache/coop file=/srv/rootfs.tar.xz`.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: mkrootfs TEMPLATE NAME ROOTFS CACHE_DIR [KEY=VALUE...]");
        std::process::exit(2);
    }
    let opts: Vec<(String, String)> = args[4..]
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), String::new()),
        })
        .collect();
    let kind = match coop_templates::parse_template(&args[0], &opts) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let rootfs = Path::new(&args[2]);
    if let Err(e) = std::fs::create_dir_all(rootfs) {
        eprintln!("error: cannot create {}: {e}", rootfs.display());
        std::process::exit(1);
    }
    let mut req = coop_templates::Request::new(&args[1], rootfs, Path::new(&args[3]));
    req.root_password = std::env::var("ROOT_PASSWORD").ok();
    match coop_templates::create(&kind, &req, &|p| eprintln!("{p:?}")) {
        Ok(out) => {
            for (k, v) in &out.config {
                println!("{k} = {v}");
            }
            eprintln!(
                "root password: {}{}",
                out.root_password,
                if out.password_generated {
                    " (generated)"
                } else {
                    ""
                }
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
