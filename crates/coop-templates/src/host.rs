//! What templates need from the host: Debian packages, its architecture, its apt mirror.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Progress, TemplateError};

/// Fallback mirror when the host has no Debian source configured.
pub(crate) const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Runs a command and returns its stdout; failure carries the tail of stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, TemplateError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TemplateError::Command {
            cmd: shown.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TemplateError::Command {
            cmd: shown,
            detail: format!("{}: {}", out.status, tail(&out.stderr, 2000)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `max` bytes of some output, trimmed, for error messages.
pub(crate) fn tail(b: &[u8], max: usize) -> String {
    let start = b.len().saturating_sub(max);
    String::from_utf8_lossy(&b[start..]).trim().to_string()
}

/// Makes sure a Debian package is installed, judged by `present`; installs it with apt-get
/// (refreshing the package lists once if the first try fails).
pub(crate) fn ensure_package(
    package: &str,
    why: &str,
    present: &dyn Fn() -> bool,
    progress: &dyn Fn(Progress),
) -> Result<(), TemplateError> {
    if present() {
        return Ok(());
    }
    progress(Progress::Step(format!("installing host package {package}")));
    tracing::info!(package, "installing missing host package with apt-get");
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    let first = install();
    if first.is_err() {
        let _ = run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"));
        install().map_err(|e| TemplateError::PackageInstall {
            package: package.into(),
            why: why.into(),
            detail: e.to_string(),
        })?;
    }
    if !present() {
        return Err(TemplateError::PackageInstall {
            package: package.into(),
            why: why.into(),
            detail: "apt-get succeeded but the expected file is still missing".into(),
        });
    }
    Ok(())
}

/// True when `path` is an ELF executable without a program interpreter (statically linked).
pub(crate) fn is_static_elf(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut h = [0u8; 64];
    if f.read_exact(&mut h).is_err() || &h[..4] != b"\x7fELF" {
        return false;
    }
    let is64 = h[4] == 2;
    let le = h[5] == 1;
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        let v: [u8; 8] = h[32..40].try_into().unwrap_or_default();
        let off = if le {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        };
        (off, u16_at(&h, 54), u16_at(&h, 56))
    } else {
        (u32_at(&h, 28) as u64, u16_at(&h, 42), u16_at(&h, 44))
    };
    if phentsize < 4 || phnum > 512 {
        return false;
    }
    let mut ph = vec![0u8; phentsize as usize * phnum as usize];
    if f.seek(SeekFrom::Start(phoff)).is_err() || f.read_exact(&mut ph).is_err() {
        return false;
    }
    const PT_INTERP: u32 = 3;
    !ph.chunks(phentsize as usize)
        .any(|e| u32_at(e, 0) == PT_INTERP)
}

/// Debian's name for the host architecture.
pub(crate) fn debian_arch() -> String {
    if let Ok(out) = run(Command::new("dpkg").arg("--print-architecture")) {
        let a = out.trim();
        if !a.is_empty() {
            return a.to_string();
        }
    }
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

/// The host's configured Debian mirror (first non-security `deb` source), else deb.debian.org.
pub(crate) fn host_debian_mirror() -> String {
    mirror_from_dir(Path::new("/etc/apt")).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

pub(crate) fn mirror_from_dir(apt: &Path) -> Option<String> {
    let mut files = vec![apt.join("sources.list")];
    if let Ok(rd) = std::fs::read_dir(apt.join("sources.list.d")) {
        let mut more: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let found = match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_from_deb822(&text),
            _ if f.file_name().is_some_and(|n| n == "sources.list")
                || f.extension().is_some_and(|e| e == "list") =>
            {
                mirror_from_one_line(&text)
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn is_debian_main(uri: &str, suite: &str) -> bool {
    (uri.starts_with("http://") || uri.starts_with("https://"))
        && !uri.contains("security")
        && !suite.contains("security")
        && uri.trim_end_matches('/').ends_with("/debian")
}

fn mirror_from_one_line(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            while let Some(w) = rest.first() {
                let done = w.ends_with(']');
                rest.remove(0);
                if done {
                    break;
                }
            }
        }
        if let [uri, suite, ..] = rest.as_slice() {
            if is_debian_main(uri, suite) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no")) {
            continue;
        }
        let suites = field("Suites").unwrap_or_default();
        let suite = suites.split_whitespace().next().unwrap_or("");
        for uri in field("URIs").unwrap_or_default().split_whitespace() {
            if is_debian_main(uri, suite) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_found_in_both_formats() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sources.list.d")).unwrap();
        assert_eq!(mirror_from_dir(t.path()), None);
        std::fs::write(
            t.path().join("sources.list.d/a.sources"),
            "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n\n\
             Types: deb deb-src\nURIs: http://ftp.fr.debian.org/debian/\nSuites: bookworm\nComponents: main\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("sources.list.d/b.list.disabled"),
            "deb http://nope.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_dir(t.path()).as_deref(),
            Some("http://ftp.fr.debian.org/debian")
        );
        std::fs::write(
            t.path().join("sources.list"),
            "# comment\ndeb-src http://x.example/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_dir(t.path()).as_deref(),
            Some("http://mirror.example.org/debian")
        );
    }

    #[test]
    fn static_busybox_is_static_and_cargo_is_not() {
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            eprintln!("SKIP: /bin/busybox missing");
            return;
        }
        assert!(is_static_elf(bb));
        assert!(!is_static_elf(Path::new("/bin/sh")));
        assert!(!is_static_elf(Path::new("/etc/passwd")));
    }
}
