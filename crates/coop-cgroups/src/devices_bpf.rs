//! cgroup v2 device filter: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` built
//! from a composed [`DevicePolicy`] (or a plain allow list in the v1 `devices.allow` syntax:
//! "a", "c 1:3 rwm", "b *:* m"), loaded with `bpf(BPF_PROG_LOAD)` and attached to a
//! cgroup2 directory with `bpf(BPF_PROG_ATTACH)`. On a deny-all policy an access passes
//! only if an allow exception grants it; on an allow-all policy it passes unless a deny
//! exception refuses part of it.
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

pub use crate::devices::{parse_rules, DeviceRule};
use crate::devices::{DevicePolicy, DeviceRuleError, ACC_ALL};

// Constants from <linux/bpf.h>; the libc crate does not export these (only SYS_bpf).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Verifier log kept on a failed load; longer logs are cut (the tail is rarely needed).
const LOG_SIZE: usize = 64 * 1024;
const LOG_SHOWN: usize = 4096;
const LICENSE: &str = "Apache-2.0 OR MIT";

/// Errors of the device filter; each names the rule or cgroup and the failing step.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error(transparent)]
    BadRule(#[from] DeviceRuleError),
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
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
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
/// `if dst == imm goto <patched later>`.
fn jeq_k(dst: u8, imm: i32) -> Insn {
    Insn {
        code: JMP_JEQ_K,
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

/// Assemble an allow-list filter: deny every device except those `rules` allow.
pub fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    emit(rules, false)
}

/// Assemble the filter of a composed policy: its exceptions are allow rules on a deny-all
/// policy and deny rules on an allow-all one. They all have the same polarity, so their
/// order does not matter (see [`crate::devices`]).
pub fn assemble_policy(policy: &DevicePolicy) -> Vec<Insn> {
    emit(policy.exceptions(), policy.allows_by_default())
}

/// r2 = type, r3 = access, r4 = major, r5 = minor; then per exception a block of "if the
/// request is outside it, jump to the next block" followed by `return <its verdict>`;
/// finally `return <default>`.
///
/// An allow exception matches when every requested access bit is among its letters; a
/// deny exception when any requested bit is (the v1 kernel's partial match), so opening
/// /dev/null read-write is refused by `deny c 1:3 w`.
fn emit(exceptions: &[DeviceRule], allow_by_default: bool) -> Vec<Insn> {
    let mut p = vec![
        ldx_w(2, 1, 0),
        alu_k(ALU64_AND_K, 2, 0xffff),
        ldx_w(3, 1, 0),
        alu_k(ALU64_RSH_K, 3, 16),
        ldx_w(4, 1, 4),
        ldx_w(5, 1, 8),
    ];
    for r in exceptions {
        let mut jumps = Vec::new();
        if let Some(t) = r.dev_type {
            jumps.push(p.len());
            p.push(jne_k(2, t));
        }
        if r.access != ACC_ALL {
            p.push(mov_x(0, 3));
            if allow_by_default {
                // Deny exception: no requested bit among its letters → not this one.
                p.push(alu_k(ALU64_AND_K, 0, r.access));
                jumps.push(p.len());
                p.push(jeq_k(0, 0));
            } else {
                // Allow exception: any requested bit outside its letters → not this one.
                p.push(alu_k(ALU64_AND_K, 0, !r.access & ACC_ALL));
                jumps.push(p.len());
                p.push(jne_k(0, 0));
            }
        }
        if let Some(m) = r.major {
            jumps.push(p.len());
            p.push(jne_k(4, m));
        }
        if let Some(m) = r.minor {
            jumps.push(p.len());
            p.push(jne_k(5, m));
        }
        p.push(mov_k(0, i32::from(!allow_by_default)));
        p.push(exit());
        let next = p.len();
        for j in jumps {
            // Offsets count from the instruction after the jump; blocks are tiny.
            p[j].off = (next - j - 1) as i16;
        }
    }
    p.push(mov_k(0, i32::from(allow_by_default)));
    p.push(exit());
    p
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

/// Build, load and attach the allow-list filter for `allow` to the cgroup2 directory
/// `cgroup` (deny all, then allow each rule).
pub fn apply(cgroup: &Path, allow: &[&str]) -> Result<(), DeviceFilterError> {
    apply_policy(cgroup, &DevicePolicy::allowing(allow)?)
}

/// Build, load and attach the filter of a composed policy to the cgroup2 directory `cgroup`.
pub fn apply_policy(cgroup: &Path, policy: &DevicePolicy) -> Result<(), DeviceFilterError> {
    let prog = load(&assemble_policy(policy), cgroup)?;
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
    tracing::debug!(
        cgroup = %cgroup.display(),
        allow_by_default = policy.allows_by_default(),
        exceptions = policy.exceptions().len(),
        "device filter attached"
    );
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
    use crate::devices::{DevType, DeviceOp, ACC_MKNOD, ACC_WRITE};

    /// Run a program of our instruction subset on one `bpf_cgroup_dev_ctx`, as the kernel
    /// would: the reference for checking emitted programs without root.
    fn run(p: &[Insn], ctx: [u32; 3]) -> u64 {
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                ALU64_MOV_K => r[dst] = imm,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_AND_K => r[dst] &= imm,
                ALU64_RSH_K => r[dst] >>= imm,
                JMP_JNE_K if r[dst] != imm => pc += i.off as usize,
                JMP_JEQ_K if r[dst] == imm => pc += i.off as usize,
                JMP_JNE_K | JMP_JEQ_K => {}
                JMP_EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program did not exit");
    }

    /// Compare the emitted program with [`DevicePolicy::permits`] on a grid of devices and
    /// every non-empty access combination.
    fn check_against_reference(policy: &DevicePolicy) {
        let prog = assemble_policy(policy);
        for (t, tc) in [(DevType::Block, 1u32), (DevType::Char, 2u32)] {
            for major in [0u32, 1, 5, 7, 10, 136, 4095] {
                for minor in [0u32, 1, 3, 5, 9, 200, 1 << 19] {
                    for acc in 1u32..8 {
                        let letters: String = [(2, 'r'), (4, 'w'), (1, 'm')]
                            .iter()
                            .filter(|(b, _)| acc & b != 0)
                            .map(|(_, c)| *c)
                            .collect();
                        let want = policy.permits(t, major, minor, &letters);
                        let got = run(&prog, [(acc << 16) | tc, major, minor]);
                        assert_eq!(
                            got,
                            u64::from(want),
                            "{t:?} {major}:{minor} {letters} under {policy:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn programs_agree_with_the_reference_semantics() {
        let default = [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:9 rwm",
            "c 136:* rwm",
        ];
        let mut cases = vec![
            DevicePolicy::deny_all(),
            DevicePolicy::allowing(&default).unwrap(),
            DevicePolicy::allowing(&["a"]).unwrap(),
        ];
        let seqs: &[&[(DeviceOp, &str)]] = &[
            &[
                (DeviceOp::Allow, "c 10:200 rw"),
                (DeviceOp::Deny, "c 1:3 rwm"),
            ],
            &[(DeviceOp::Deny, "c 1:5 w"), (DeviceOp::Allow, "b 7:* r")],
            &[
                (DeviceOp::Allow, "a"),
                (DeviceOp::Deny, "c 1:3 w"),
                (DeviceOp::Deny, "b *:* m"),
            ],
            &[
                (DeviceOp::Allow, "a"),
                (DeviceOp::Deny, "c *:* rwm"),
                (DeviceOp::Allow, "c *:* r"),
            ],
            &[(DeviceOp::Deny, "a"), (DeviceOp::Allow, "c 1:9 rwm")],
        ];
        for seq in seqs {
            let mut p = DevicePolicy::allowing(&default).unwrap();
            for (op, v) in *seq {
                p.apply_str(*op, v).unwrap();
            }
            cases.push(p);
        }
        for p in &cases {
            check_against_reference(p);
        }
    }

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
