//! Signal names as LXC configs write them (`SIGUSR1`, `USR1`, `10`, `SIGRTMIN+3`).

const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The kernel's first real-time signal as glibc exposes it to programs (34: glibc keeps
/// 32 and 33 for itself, and systemd's SIGRTMIN+3 means 37).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

pub fn parse_signal(v: &str) -> Result<i32, String> {
    let upper = v.trim().to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(format!("signal number {n} is out of range 1..={SIGRTMAX}"))
        };
    }
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = parse_offset(rest, v)?;
        return check_rt(SIGRTMIN + off, v);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = parse_offset(rest, v)?;
        return check_rt(SIGRTMAX + off, v);
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("unknown signal {v:?}"))
}

fn parse_offset(rest: &str, v: &str) -> Result<i32, String> {
    if rest.is_empty() {
        return Ok(0);
    }
    rest.parse::<i32>()
        .map_err(|_| format!("bad real-time signal offset in {v:?}"))
}

fn check_rt(n: i32, v: &str) -> Result<i32, String> {
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{v:?} is outside SIGRTMIN..SIGRTMAX"))
    }
}

/// A readable name for a signal number, for `coop info`.
pub fn signal_name(n: i32) -> String {
    if let Some((name, _)) = NAMES.iter().find(|(_, s)| *s == n) {
        return format!("SIG{name}");
    }
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        return format!("SIGRTMIN+{}", n - SIGRTMIN);
    }
    n.to_string()
}
