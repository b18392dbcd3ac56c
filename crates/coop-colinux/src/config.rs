//! `coop.colinux.*` keys, the instance description and the kernel command line.

use std::path::{Path, PathBuf};

use crate::ColinuxError;

/// The kernel used when `coop.colinux.kernel` is not set (Debian's `user-mode-linux`).
pub const DEFAULT_KERNEL: &str = "/usr/bin/linux.uml";
/// Guest memory when `coop.colinux.memory` is not set.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// The host fd of the kernel process wired to the guest's serial line `ttyS0`, where
/// `coop-guest-agent` listens. The container engine must hand the kernel one end of a
/// stream socket pair on this fd and keep the other end.
pub const AGENT_FD: i32 = 3;
/// The guest tty of the agent channel.
pub const AGENT_TTY: &str = "ttyS0";
/// Most ubd disks (ubd0..ubd15 in UML).
const MAX_DISKS: usize = 16;
/// UML refuses less; the kernel needs some room to boot.
const MIN_MEMORY: u64 = 16 << 20;
/// The timer frequency of Debian's UML build (its printk timestamps step by 10 ms); the
/// kernel's `lpj` is loops per jiffy.
const UML_HZ: f64 = 100.0;

/// Kernel arguments that cut Debian's linux.uml 6.1 from exec to a busybox init that
/// halts at once from 1.7 s to 0.2 s here (with `lpj=`, see [`kernel_cmdline`]), given
/// when `coop.colinux.fastboot` is on (the default):
///
/// - `initcall_blacklist=raid6_select_algo`: the RAID-6 library benchmarks five
///   algorithms for 16 jiffies each at boot (0.85 s at UML's HZ=100). It is built in
///   for btrfs and md; without the benchmark no algorithm is chosen, so a guest that uses
///   md RAID-6 or btrfs RAID-5/6 must turn fastboot off.
/// - `init_zswap` on the same blacklist: zswap is off by default in this kernel, yet its
///   initcall sets up its lzo/zbud pool anyway: 70-90 ms of a 0.3-0.4 s boot to init
///   (measured under load). Without it zswap cannot be turned on in the guest.
/// - `pty.legacy_count=0`: no BSD-style `/dev/ptyXX` pairs (256 by default, each a
///   devtmpfs node made by a kernel thread: 0.2 to 0.8 s); Unix98 ptys are unaffected.
///
/// `quiet` is not among them: with the RAID-6 benchmark and legacy ptys gone, the
/// messages on the console pty made no measurable difference (start to a usable attach,
/// 8 runs each: 300 ms vs 297 ms), and they are what a user watching `coop console`
/// expects.
pub const FAST_BOOT_ARGS: &[&str] = &[
    "initcall_blacklist=raid6_select_algo,init_zswap",
    "pty.legacy_count=0",
];

/// A disk: `ubdN=IMAGE` or, with a copy-on-write overlay, `ubdN=COW,IMAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub image: PathBuf,
    pub cow: Option<PathBuf>,
}

/// A host directory shown in the guest through hostfs (`coop.colinux.share`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub read_only: bool,
}

/// How the guest's `eth0` reaches the host interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A tap device (`vecN:transport=tap`).
    Tap,
    /// A raw socket on an existing interface, e.g. the container's veth (`transport=raw`).
    Raw,
}

/// The guest's network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// A tap or the container-netns interface.
    pub host_ifname: String,
    pub transport: Transport,
    /// `xx:xx:xx:xx:xx:xx`; empty lets the kernel pick one.
    pub mac: String,
}

/// Everything [`kernel_cmdline`] needs to start one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Used as the UML `umid` (names the mconsole socket directory).
    pub name: String,
    /// Guest memory in bytes.
    pub memory: u64,
    pub disks: Vec<Disk>,
    pub shares: Vec<Share>,
    pub net: Option<NetSpec>,
    /// Appended verbatim after the generated arguments.
    pub extra_cmdline: Vec<String>,
    /// Add [`FAST_BOOT_ARGS`] and a delay-loop calibration taken from the host.
    pub fast_boot: bool,
}

/// The parsed `coop.colinux.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColinuxConfig {
    pub kernel: PathBuf,
    pub memory: u64,
    pub disks: Vec<Disk>,
    pub shares: Vec<Share>,
    pub net: Option<NetSpec>,
    pub extra_cmdline: Vec<String>,
    pub fast_boot: bool,
}

impl ColinuxConfig {
    /// The instance of container `name`; without a configured MAC address one is derived
    /// from the name, so that the guest keeps its DHCP lease across restarts.
    pub fn instance_spec(&self, name: &str) -> InstanceSpec {
        let net = self.net.clone().map(|mut n| {
            if n.mac.is_empty() {
                n.mac = derived_mac(name);
            }
            n
        });
        InstanceSpec {
            name: name.to_string(),
            memory: self.memory,
            disks: self.disks.clone(),
            shares: self.shares.clone(),
            net,
            extra_cmdline: self.extra_cmdline.clone(),
            fast_boot: self.fast_boot,
        }
    }
}

/// A locally administered unicast MAC from an FNV-1a hash of `name`.
fn derived_mac(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!("02:c0:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

fn key_err(key: &str, value: &str, reason: impl Into<String>) -> ColinuxError {
    ColinuxError::Key {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a size (`256M`, `1G`, `4k`, bytes) the way every coop config value does.
pub fn parse_size(s: &str) -> Option<u64> {
    coop_config::parse_size(s).ok()
}

/// Checks a path that ends up in the kernel command line, where whitespace splits
/// arguments and `forbidden` characters separate fields.
fn cmdline_path(
    key: &str,
    value: &str,
    p: &str,
    forbidden: &[char],
) -> Result<PathBuf, ColinuxError> {
    if !p.starts_with('/') {
        return Err(key_err(
            key,
            value,
            format!("{p:?} is not an absolute path"),
        ));
    }
    if let Some(c) = p
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '"' || forbidden.contains(c))
    {
        return Err(key_err(
            key,
            value,
            format!("{c:?} cannot appear in a path on the kernel command line"),
        ));
    }
    Ok(PathBuf::from(p))
}

fn parse_disk(value: &str) -> Result<Disk, ColinuxError> {
    let mut parts = value.split(',');
    let image = cmdline_path("disk", value, parts.next().unwrap_or(""), &[',', '='])?;
    let mut cow = None;
    for opt in parts {
        match opt.split_once('=') {
            Some(("cow", p)) => cow = Some(cmdline_path("disk", value, p, &[',', '='])?),
            _ => {
                return Err(key_err(
                    "disk",
                    value,
                    format!("unknown option {opt:?} (expected cow=PATH)"),
                ))
            }
        }
    }
    Ok(Disk { image, cow })
}

fn parse_share(value: &str) -> Result<Share, ColinuxError> {
    let parts: Vec<&str> = value.split(':').collect();
    let read_only = match parts.len() {
        2 => false,
        3 if parts[2] == "ro" => true,
        3 if parts[2] == "rw" => false,
        _ => return Err(key_err("share", value, "expected HOSTDIR:GUESTDIR[:ro]")),
    };
    Ok(Share {
        host: cmdline_path("share", value, parts[0], &[':', ','])?,
        guest: cmdline_path("share", value, parts[1], &[':', ','])?,
        read_only,
    })
}

fn parse_net(value: &str) -> Result<Option<NetSpec>, ColinuxError> {
    if value == "none" {
        return Ok(None);
    }
    let mut parts = value.split(',');
    let ifname = parts.next().unwrap_or("");
    if ifname.is_empty()
        || ifname.len() > 15
        || !ifname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(key_err(
            "net",
            value,
            "expected none or an interface name (at most 15 of A-Z a-z 0-9 - _ .)",
        ));
    }
    let mut net = NetSpec {
        host_ifname: ifname.to_string(),
        transport: Transport::Tap,
        mac: String::new(),
    };
    for opt in parts {
        match opt.split_once('=') {
            Some(("transport", "tap")) => net.transport = Transport::Tap,
            Some(("transport", "raw")) => net.transport = Transport::Raw,
            Some(("mac", m)) if is_mac(m) => net.mac = m.to_ascii_lowercase(),
            _ => {
                return Err(key_err(
                    "net",
                    value,
                    format!(
                    "unknown option {opt:?} (expected transport=tap|raw or mac=XX:XX:XX:XX:XX:XX)"
                ),
                ))
            }
        }
    }
    Ok(Some(net))
}

fn is_mac(m: &str) -> bool {
    let p: Vec<&str> = m.split(':').collect();
    p.len() == 6
        && p.iter()
            .all(|x| x.len() == 2 && x.bytes().all(|b| b.is_ascii_hexdigit()))
        // Multicast addresses cannot be a station's address.
        && u8::from_str_radix(p[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// Parses the `coop.colinux.*` keys, given without the prefix: `memory`, `disk`
/// (repeatable, in ubd order; `IMAGE[,cow=COWFILE]`), `share` (repeatable;
/// `HOSTDIR:GUESTDIR[:ro]`), `net` (`none` or `IFNAME[,transport=tap|raw][,mac=MAC]`),
/// `kernel` (path), `cmdline` (repeatable, extra kernel arguments) and `fastboot`
/// (`yes`, the default, or `no`: see [`FAST_BOOT_ARGS`]).
pub fn parse_keys(keys: &[(String, String)]) -> Result<ColinuxConfig, ColinuxError> {
    let mut cfg = ColinuxConfig {
        kernel: PathBuf::from(DEFAULT_KERNEL),
        memory: DEFAULT_MEMORY,
        disks: Vec::new(),
        shares: Vec::new(),
        net: None,
        extra_cmdline: Vec::new(),
        fast_boot: true,
    };
    for (k, v) in keys {
        let v = v.trim();
        match k.as_str() {
            "memory" => {
                let m = parse_size(v)
                    .ok_or_else(|| key_err(k, v, "expected a size such as 256M or 1G"))?;
                if m < MIN_MEMORY {
                    return Err(key_err(
                        k,
                        v,
                        format!("less than the {} MiB minimum", MIN_MEMORY >> 20),
                    ));
                }
                cfg.memory = m;
            }
            "disk" => {
                if cfg.disks.len() == MAX_DISKS {
                    return Err(key_err(k, v, format!("more than {MAX_DISKS} disks")));
                }
                cfg.disks.push(parse_disk(v)?);
            }
            "share" => cfg.shares.push(parse_share(v)?),
            "net" => cfg.net = parse_net(v)?,
            "kernel" => {
                if !v.starts_with('/') {
                    return Err(key_err(k, v, "expected an absolute path"));
                }
                cfg.kernel = PathBuf::from(v);
            }
            "cmdline" => {
                for a in v.split_whitespace() {
                    cfg.extra_cmdline.push(a.to_string());
                }
            }
            "fastboot" => {
                cfg.fast_boot = match v.to_ascii_lowercase().as_str() {
                    "1" | "yes" | "true" | "on" => true,
                    "0" | "no" | "false" | "off" => false,
                    _ => return Err(key_err(k, v, "expected yes or no")),
                }
            }
            _ => {
                return Err(key_err(
                    k,
                    v,
                    "unknown key (known: memory, disk, share, net, kernel, cmdline, fastboot)",
                ))
            }
        }
    }
    if cfg.disks.is_empty() {
        return Err(key_err(
            "disk",
            "",
            "at least one disk is needed (the root filesystem)",
        ));
    }
    Ok(cfg)
}

/// Formats a byte count the way the kernel's `memparse` reads it, in the largest exact unit.
fn mem_arg(bytes: u64) -> String {
    for (shift, unit) in [(30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes & ((1u64 << shift) - 1) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The arguments of `linux.uml` (without the program itself) for `spec`:
///
/// - `mem=`; `ubdN=[COW,]IMAGE` and `root=/dev/ubda rw` for the first disk;
/// - `con=null con0=fd:0,fd:1`: the kernel's stdin/stdout — the container's `/dev/console`
///   — is the guest's console (so a getty on `console` gives a login prompt there), and
///   the other virtual consoles go nowhere instead of starting xterms;
/// - `ssl=null ssl0=fd:3`: the guest's `ttyS0` is host fd [`AGENT_FD`], the agent channel;
/// - `umid=` and `uml_dir=`: the mconsole socket is `UML_DIR/NAME/mconsole`;
/// - `vec0:transport=tap|raw,ifname=…[,mac=…],gro=1` when networked;
/// - `coop.share=HOST:GUEST[:ro]` hints that `coop-guest-agent --boot` mounts with hostfs,
///   and `coop.agent=ttyS0`; the kernel ignores these dotted parameters and guest code
///   reads them in `/proc/cmdline`;
/// - `systemd.wants=console-getty.service`: UML's console is `tty0`, which systemd takes
///   for a virtual terminal and gives no getty (its `getty@tty1` talks to a null line), so
///   a systemd guest is asked for a login prompt on `/dev/console`; other inits ignore it.
/// - with `fast_boot`, [`FAST_BOOT_ARGS`] and `lpj=` from [`host_lpj`] (the calibration
///   of the delay loop is a busy loop of a few jiffies; UML's loop runs at the host CPU's
///   speed, which the host kernel measured already);
/// - last the extra arguments, so that they can override the ones above (the kernel
///   takes the last of a repeated parameter).
pub fn kernel_cmdline(spec: &InstanceSpec, uml_dir: &Path) -> Vec<String> {
    let mut a = vec![format!("mem={}", mem_arg(spec.memory))];
    for (i, d) in spec.disks.iter().enumerate() {
        match &d.cow {
            Some(cow) => a.push(format!("ubd{i}={},{}", cow.display(), d.image.display())),
            None => a.push(format!("ubd{i}={}", d.image.display())),
        }
    }
    if !spec.disks.is_empty() {
        a.push("root=/dev/ubda".into());
        a.push("rw".into());
    }
    a.push("con=null".into());
    a.push("con0=fd:0,fd:1".into());
    a.push("ssl=null".into());
    a.push(format!("ssl0=fd:{AGENT_FD}"));
    a.push(format!("umid={}", spec.name));
    a.push(format!("uml_dir={}", uml_dir.display()));
    if let Some(n) = &spec.net {
        let t = match n.transport {
            Transport::Tap => "tap",
            Transport::Raw => "raw",
        };
        let mut v = format!("vec0:transport={t},ifname={}", n.host_ifname);
        if !n.mac.is_empty() {
            v.push_str(&format!(",mac={}", n.mac));
        }
        // The host hands the raw socket or tap GSO frames of up to 64 KiB (a veth or
        // bridge does not segment them); without receive buffers that large the driver
        // drops each one ("Incoming GSO frames and GRO disabled"), and host-to-guest TCP
        // crawled at 0.3 Mbit/s with constant retransmissions.
        v.push_str(",gro=1");
        a.push(v);
    }
    for s in &spec.shares {
        let ro = if s.read_only { ":ro" } else { "" };
        a.push(format!(
            "coop.share={}:{}{ro}",
            s.host.display(),
            s.guest.display()
        ));
    }
    a.push("systemd.wants=console-getty.service".into());
    a.push(format!("coop.agent={AGENT_TTY}"));
    if spec.fast_boot {
        a.extend(FAST_BOOT_ARGS.iter().map(|s| s.to_string()));
        if let Some(lpj) = host_lpj() {
            a.push(format!("lpj={lpj}"));
        }
    }
    a.extend(spec.extra_cmdline.iter().cloned());
    a
}

/// Loops per UML jiffy, from the host CPU's `bogomips` in `/proc/cpuinfo` (BogoMIPS is
/// `lpj * HZ / 500000`, and UML's delay loop runs on the host CPU at its speed).
pub fn host_lpj() -> Option<u64> {
    lpj_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

fn lpj_from_cpuinfo(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("bogomips"))?;
    let mips: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    let lpj = mips * 500_000.0 / UML_HZ;
    // A sane range: a misreported value would make udelay() spin far too long or short.
    (1e5..1e10).contains(&lpj).then_some(lpj.round() as u64)
}

/// Prepares a copy-on-write overlay `cow` over `backing` for `coop copy --snapshot`.
///
/// UML writes the COW file itself (header with the backing path and mtime, a dirty-block
/// bitmap, then the changed blocks) the first time it boots with `ubdN=COW,BACKING` and
/// COW does not exist; from then on the backing file is only read. So this checks that
/// `backing` is a usable absolute image path, that `cow` does not exist yet and that its
/// directory does, and leaves the file to the first boot. The backing image must not be
/// modified afterwards: UML refuses a COW whose backing file's mtime changed.
pub fn snapshot(backing: &Path, cow: &Path) -> Result<(), ColinuxError> {
    let invalid = |p: &Path, d: &str| ColinuxError::Invalid {
        path: p.to_path_buf(),
        detail: d.to_string(),
    };
    for p in [backing, cow] {
        let s = p.to_str().ok_or_else(|| invalid(p, "path is not UTF-8"))?;
        if !p.is_absolute() {
            return Err(invalid(
                p,
                "path must be absolute (UML records it in the COW header)",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c == ',' || c == '=') {
            return Err(invalid(p, "path cannot contain whitespace, ',' or '='"));
        }
    }
    // UML's COW header holds at most MAXPATHLEN bytes of backing path.
    if backing.as_os_str().len() >= 4096 {
        return Err(invalid(backing, "path too long for a COW header"));
    }
    let md = std::fs::metadata(backing)
        .map_err(|e| ColinuxError::io("cannot stat backing image", backing, e))?;
    if !md.is_file() || md.len() == 0 {
        return Err(invalid(
            backing,
            "backing image is not a non-empty regular file",
        ));
    }
    std::fs::File::open(backing)
        .map_err(|e| ColinuxError::io("cannot read backing image", backing, e))?;
    match std::fs::symlink_metadata(cow) {
        Ok(_) => return Err(invalid(cow, "COW file already exists")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ColinuxError::io("cannot stat COW file", cow, e)),
    }
    let dir = cow.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(invalid(dir, "directory of the COW file does not exist"));
    }
    tracing::info!(backing = %backing.display(), cow = %cow.display(), "COW overlay is created at first boot");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn full_config_and_cmdline() {
        let cfg = parse_keys(&kv(&[
            ("memory", "128M"),
            ("disk", "/var/lib/coop/vm/root.img"),
            ("disk", "/data/d.img,cow=/data/d.cow"),
            ("share", "/srv/x:/mnt/x:ro"),
            ("share", "/srv/y:/mnt/y"),
            ("net", "tap7,transport=tap"),
            ("cmdline", "quiet loglevel=3"),
        ]))
        .unwrap();
        assert_eq!(cfg.kernel, Path::new(DEFAULT_KERNEL));
        assert_eq!(cfg.memory, 128 << 20);
        let spec = cfg.instance_spec("vm1");
        let mac = spec.net.as_ref().unwrap().mac.clone();
        assert!(is_mac(&mac), "{mac}");
        assert_eq!(mac, cfg.instance_spec("vm1").net.unwrap().mac);
        assert_ne!(mac, cfg.instance_spec("vm2").net.unwrap().mac);
        let a = kernel_cmdline(&spec, Path::new("/run/coop/uml"));
        let want = [
            "mem=128M",
            "ubd0=/var/lib/coop/vm/root.img",
            "ubd1=/data/d.cow,/data/d.img",
            "root=/dev/ubda",
            "rw",
            "con=null",
            "con0=fd:0,fd:1",
            "ssl=null",
            "ssl0=fd:3",
            "umid=vm1",
            "uml_dir=/run/coop/uml",
        ];
        assert_eq!(&a[..want.len()], &want);
        assert_eq!(
            a[want.len()],
            format!("vec0:transport=tap,ifname=tap7,mac={mac},gro=1")
        );
        assert_eq!(
            &a[want.len() + 1..want.len() + 7],
            &[
                "coop.share=/srv/x:/mnt/x:ro",
                "coop.share=/srv/y:/mnt/y",
                "systemd.wants=console-getty.service",
                "coop.agent=ttyS0",
                "initcall_blacklist=raid6_select_algo,init_zswap",
                "pty.legacy_count=0",
            ]
        );
        // lpj= when the host reports its BogoMIPS, then the extra arguments, last.
        let rest = &a[want.len() + 7..];
        let extra = match host_lpj() {
            Some(l) => {
                assert_eq!(rest[0], format!("lpj={l}"));
                &rest[1..]
            }
            None => rest,
        };
        assert_eq!(extra, &["quiet", "loglevel=3"]);
    }

    #[test]
    fn fastboot_off_and_lpj_from_cpuinfo() {
        let cfg = parse_keys(&kv(&[("disk", "/a.img"), ("fastboot", "No")])).unwrap();
        assert!(!cfg.fast_boot);
        let a = kernel_cmdline(&cfg.instance_spec("x"), Path::new("/u"));
        assert_eq!(a.last().map(String::as_str), Some("coop.agent=ttyS0"));
        assert!(!a
            .iter()
            .any(|x| x.starts_with("lpj=") || FAST_BOOT_ARGS.contains(&x.as_str())));
        assert!(parse_keys(&kv(&[("disk", "/a.img"), ("fastboot", "maybe")])).is_err());
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nbogomips\t: 5192.29\n";
        assert_eq!(lpj_from_cpuinfo(cpuinfo), Some(25_961_450));
        assert_eq!(lpj_from_cpuinfo("bogomips : lots\n"), None);
        assert_eq!(lpj_from_cpuinfo("bogomips : 0.00001\n"), None);
        assert_eq!(lpj_from_cpuinfo(""), None);
    }

    #[test]
    fn raw_net_with_mac_and_odd_memory() {
        let cfg = parse_keys(&kv(&[
            ("disk", "/a.img"),
            ("net", "eth0,transport=raw,mac=02:AA:bb:cc:dd:ee"),
            ("memory", "100000000"),
            ("kernel", "/opt/linux"),
        ]))
        .unwrap();
        let a = kernel_cmdline(&cfg.instance_spec("x"), Path::new("/u"));
        assert!(
            a.contains(&"vec0:transport=raw,ifname=eth0,mac=02:aa:bb:cc:dd:ee,gro=1".to_string())
        );
        assert_eq!(a[0], "mem=100000000");
        assert_eq!(cfg.kernel, Path::new("/opt/linux"));
        let none = parse_keys(&kv(&[("disk", "/a.img"), ("net", "none")])).unwrap();
        assert_eq!(none.net, None);
    }

    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

    #[test]
    fn errors_name_key_and_value() {
        let cases: &[Case] = &[
            (&[("memory", "lots"), ("disk", "/a")], "memory", "lots"),
            (&[("memory", "1M"), ("disk", "/a")], "memory", "1M"),
            (&[("disk", "rel/a.img")], "disk", "rel/a.img"),
            (&[("disk", "/a b.img")], "disk", "/a b.img"),
            (&[("disk", "/a.img,foo=1")], "disk", "/a.img,foo=1"),
            (&[("disk", "/a"), ("share", "/x")], "share", "/x"),
            (
                &[("disk", "/a"), ("share", "/x:/y:rx")],
                "share",
                "/x:/y:rx",
            ),
            (&[("disk", "/a"), ("net", "a/b")], "net", "a/b"),
            (
                &[("disk", "/a"), ("net", "tap0,mac=01:00:00:00:00:00")],
                "net",
                "tap0,mac=01:00:00:00:00:00",
            ),
            (
                &[("disk", "/a"), ("net", "tap0,transport=slirp")],
                "net",
                "tap0,transport=slirp",
            ),
            (&[("disk", "/a"), ("kernel", "linux")], "kernel", "linux"),
            (&[("disk", "/a"), ("colour", "red")], "colour", "red"),
            (&[("disk", "/a"), ("fastboot", "2")], "fastboot", "2"),
            (&[("memory", "64M")], "disk", ""),
        ];
        for (keys, key, value) in cases {
            let e = parse_keys(&kv(keys)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&format!("coop.colinux.{key}")), "{msg}");
            assert!(msg.contains(&format!("{value:?}")), "{msg}");
        }
        let many = vec![("disk", "/a"); 17];
        assert!(parse_keys(&kv(&many)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("9999999999999G"), None);
    }

    #[test]
    fn snapshot_checks() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("base.img");
        let cow = d.path().join("base.cow");
        assert!(snapshot(&img, &cow).is_err()); // missing backing
        std::fs::write(&img, b"x").unwrap();
        snapshot(&img, &cow).unwrap();
        assert!(!cow.exists());
        assert!(snapshot(Path::new("rel.img"), &cow).is_err());
        assert!(snapshot(&img, &d.path().join("no/such/dir.cow")).is_err());
        std::fs::write(&cow, b"").unwrap();
        assert!(snapshot(&img, &cow).is_err());
    }
}
