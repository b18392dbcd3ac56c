//! cgroup v2 device filter: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` built
//! from the same allow-list rules as v1 `devices.allow` ("a", "c 1:3 rwm", "b *:* m"),
//! loaded with `bpf(BPF_PROG_LOAD)` and attached to a cgroup2 directory with
//! `bpf(BPF_PROG_ATTACH)`. Default deny: a device access passes only if one rule matches.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! where `access_type = (access << 16) | dev_type`, and returns 1 (allow) or 0 (deny).
//! It needs no helper call, so the licence string is free: we use our own.
//!
//! Attach flag: `BPF_F_ALLOW_MULTI`, as systemd does. With it our program runs in addition
//! to any program an ancestor (systemd's slice) attached, and an access must pass all of
//! them — a container can only be more restricted than its parent, never less. Once
//! attached the kernel holds its own reference to the program, so our fd is closed after
//! attaching (the tests check the filter still works after that).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// Constants from <linux/bpf.h>; the libc crate does not export these (only SYS_bpf).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// `bpf_cgroup_dev_ctx` device types and access bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
/// Verifier log kept on a failed load; longer logs are cut (the tail is rarely needed).
const LOG_SIZE: usize = 64 * 1024;
const LOG_SHOWN: usize = 4096;
const LICENSE: &str = "Apache-2.0 OR MIT";

/// Errors of the device filter; each names the rule or cgroup and the failing step.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("invalid device rule {rule:?}: {reason}")]
    BadRule { rule: String, reason: String },
    #[error("cannot load the device filter BPF program for {}: {source}{}", path.display(),
        if log.is_empty() { String::new() } else { format!("; verifier log:\n{log}") })]
    Load {
        path: PathBuf,
        source: std::io::Error,
        log: String,
    },
    #[error("cannot open cgroup directory {} to attach the device filter: {source}", path.display())]
    OpenCgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot attach the device filter BPF program to {}: {source}", path.display())]
    Attach {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One parsed allow rule; `None` fields are wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// `DEV_BLOCK` or `DEV_CHAR`; `None` for type `a`.
    dev_type: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    /// Subset of `ACC_*` bits.
    access: i32,
}

impl DeviceRule {
    /// Parse "a" or "<a|b|c> <major|*>:<minor|*> <rwm>".
    pub fn parse(rule: &str) -> Result<Self, DeviceFilterError> {
        let bad = |reason: &str| DeviceFilterError::BadRule {
            rule: rule.to_string(),
            reason: reason.into(),
        };
        let parts: Vec<&str> = rule.split_whitespace().collect();
        let (t, mm, acc) = match parts.as_slice() {
            ["a"] => ("a", "*:*", "rwm"),
            [t, mm, acc] => (*t, *mm, *acc),
            _ => return Err(bad("expected \"a\" or \"<a|b|c> <major>:<minor> <rwm>\"")),
        };
        let dev_type = match t {
            "a" => None,
            "b" => Some(DEV_BLOCK),
            "c" => Some(DEV_CHAR),
            _ => return Err(bad("type must be a, b or c")),
        };
        // Numbers are compared as 32-bit immediates, which the jump sign-extends: keep them
        // below 2^31 (real majors are 12 bits, minors 20 bits).
        let num = |n: &str| -> Result<Option<i32>, DeviceFilterError> {
            if n == "*" {
                return Ok(None);
            }
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("major and minor must be a number or *"));
            }
            n.parse::<i32>()
                .map(Some)
                .map_err(|_| bad("major or minor number too large"))
        };
        let (maj, min) = mm
            .split_once(':')
            .ok_or_else(|| bad("expected major:minor"))?;
        let (major, minor) = (num(maj)?, num(min)?);
        let mut access = 0;
        for c in acc.chars() {
            let bit = match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad("access must be letters of rwm")),
            };
            if access & bit != 0 {
                return Err(bad("access letter repeated"));
            }
            access |= bit;
        }
        if access == 0 {
            return Err(bad("access must not be empty"));
        }
        Ok(DeviceRule {
            dev_type,
            major,
            minor,
            access,
        })
    }
}

/// One eBPF instruction in the kernel's 8-byte encoding (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one (little-endian bitfields).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode bytes: class | op | source, from the eBPF instruction set document.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    Insn {
        code: LDX_MEM_W,
        regs: dst | (src << 4),
        off,
        imm: 0,
    }
}
fn mov_k(dst: u8, imm: i32) -> Insn {
    Insn {
        code: ALU64_MOV_K,
        regs: dst,
        off: 0,
        imm,
    }
}
fn mov_x(dst: u8, src: u8) -> Insn {
    Insn {
        code: ALU64_MOV_X,
        regs: dst | (src << 4),
        off: 0,
        imm: 0,
    }
}
fn alu_k(code: u8, dst: u8, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst,
        off: 0,
        imm,
    }
}
/// `if dst != imm goto <patched later>`.
fn jne_k(dst: u8, imm: i32) -> Insn {
    Insn {
        code: JMP_JNE_K,
        regs: dst,
        off: 0,
        imm,
    }
}
fn exit() -> Insn {
    Insn {
        code: JMP_EXIT,
        regs: 0,
        off: 0,
        imm: 0,
    }
}

/// Assemble the filter: r2 = type, r3 = access, r4 = major, r5 = minor; then per rule a
/// block of "if field differs, jump to the next block" followed by `return 1`; finally
/// `return 0`.
pub fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        ldx_w(2, 1, 0),
        alu_k(ALU64_AND_K, 2, 0xffff),
        ldx_w(3, 1, 0),
        alu_k(ALU64_RSH_K, 3, 16),
        ldx_w(4, 1, 4),
        ldx_w(5, 1, 8),
    ];
    for r in rules {
        let mut jumps = Vec::new();
        if let Some(t) = r.dev_type {
            jumps.push(p.len());
            p.push(jne_k(2, t));
        }
        if r.access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Any requested bit outside the rule's set fails the rule.
            p.push(mov_x(0, 3));
            p.push(alu_k(ALU64_AND_K, 0, !r.access & 0x7));
            jumps.push(p.len());
            p.push(jne_k(0, 0));
        }
        if let Some(m) = r.major {
            jumps.push(p.len());
            p.push(jne_k(4, m));
        }
        if let Some(m) = r.minor {
            jumps.push(p.len());
            p.push(jne_k(5, m));
        }
        p.push(mov_k(0, 1));
        p.push(exit());
        let next = p.len();
        for j in jumps {
            // Offsets count from the instruction after the jump; blocks are tiny.
            p[j].off = (next - j - 1) as i16;
        }
    }
    p.push(mov_k(0, 0));
    p.push(exit());
    p
}

/// Parse every rule, naming the first bad one.
pub fn parse_rules(allow: &[&str]) -> Result<Vec<DeviceRule>, DeviceFilterError> {
    allow.iter().map(|r| DeviceRule::parse(r)).collect()
}

/// `bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type` (the kernel accepts a shorter
/// attr and zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn load_once(insns: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let license = CString::new(LICENSE).expect("licence has no NUL");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..6].copy_from_slice(b"coopdv");
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed; the insns,
    // licence and log buffer it points to outlive the call, and the log size matches the
    // buffer. The kernel returns a new fd that we own, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &mut attr as *mut ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Load the program; on failure retry once with the verifier log on (a log buffer that is
/// too small would itself fail the load, so it is not asked for the first time).
pub fn load(insns: &[Insn], cgroup: &Path) -> Result<OwnedFd, DeviceFilterError> {
    match load_once(insns, None) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let mut buf = vec![0u8; LOG_SIZE];
            let _ = load_once(insns, Some(&mut buf));
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let mut log = String::from_utf8_lossy(&buf[..end.min(LOG_SHOWN)]).into_owned();
            if end > LOG_SHOWN {
                log.push_str("\n[log cut]");
            }
            Err(DeviceFilterError::Load {
                path: cgroup.to_path_buf(),
                source,
                log,
            })
        }
    }
}

/// Build, load and attach the filter for `allow` to the cgroup2 directory `cgroup`.
pub fn apply(cgroup: &Path, allow: &[&str]) -> Result<(), DeviceFilterError> {
    let rules = parse_rules(allow)?;
    let prog = load(&assemble(&rules), cgroup)?;
    let dir = File::open(cgroup).map_err(|source| DeviceFilterError::OpenCgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    let mut attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: attr is a valid bpf_attr prefix of the size passed; both fds are open for the
    // duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &mut attr as *mut ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(DeviceFilterError::Attach {
            path: cgroup.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    tracing::debug!(cgroup = %cgroup.display(), rules = allow.len(), "device filter attached");
    // `prog` is dropped here: the attachment keeps the program alive.
    Ok(())
}

/// Whether this kernel loads cgroup device programs (probed once with an allow-all program).
pub fn supported() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| load_once(&[mov_k(0, 1), exit()], None).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_shape_and_jumps_in_range() {
        let rules = parse_rules(&["c 1:3 rwm", "c 1:* r", "b *:* m", "a"]).unwrap();
        let p = assemble(&rules);
        // prologue 6; rule1: type+major+minor+ret2 = 5; rule2: type+access3+major+ret2 = 7;
        // rule3: type+access3+ret2 = 6; rule4: ret2; epilogue 2.
        assert_eq!(p.len(), 6 + 5 + 7 + 6 + 2 + 2);
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JMP_JNE_K {
                let target = i as i64 + 1 + insn.off as i64;
                assert!(
                    insn.off > 0 && target < p.len() as i64,
                    "jump {i} → {target}"
                );
                // Every jump lands on the start of a rule block or the final deny.
                assert!(p[target as usize].code != JMP_EXIT);
            }
        }
        assert_eq!(p[p.len() - 2], mov_k(0, 0));
        assert_eq!(p[p.len() - 1].code, JMP_EXIT);
        // rule2's access test masks w|m (not r).
        assert!(p.contains(&alu_k(ALU64_AND_K, 0, ACC_WRITE | ACC_MKNOD)));
    }

    #[test]
    fn bad_rules_are_rejected_by_name() {
        for bad in [
            "x 1:3 rwm",
            "c 1:3",
            "c 1-3 r",
            "c 1:3 rx",
            "c 1:3 rr",
            "c 99999999999:1 r",
        ] {
            let e = parse_rules(&["c 1:3 rwm", bad]).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(
            DeviceRule::parse("a").unwrap(),
            DeviceRule::parse("a *:* rwm").unwrap()
        );
    }
}
