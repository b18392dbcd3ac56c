//! Device access rules in the cgroup v1 `devices.allow`/`devices.deny` syntax ("a",
//! "c 1:3 rwm", "b *:* m") and the policy they compose to.
//!
//! A [`DevicePolicy`] is what the v1 kernel keeps per cgroup: a default (allow all or deny
//! all) and a list of exceptions to it. Rules are applied in order with the kernel's own
//! v1 semantics, so that one LXC config means the same thing on a v1 host (where coop
//! writes the rules to the kernel's files) and on a cgroup v2 host (where coop compiles the
//! composed policy into an eBPF program, see [`crate::devices_bpf`]):
//!
//! - `a` (allow or deny) sets the default and drops every exception. Type `a` always means
//!   every device with every access, as in the kernel, so only "a" and "a *:* rwm" are
//!   accepted: "a 1:3 r" would silently mean everything.
//! - A rule going against the default (allow on deny-all, deny on allow-all) adds an
//!   exception, merged into one with the same type and numbers.
//! - A rule going with the default removes its access letters from the exception with the
//!   same type and numbers. It does not cut into a wider exception: after
//!   `allow c *:* rwm`, `deny c 1:3 rwm` changes nothing — the kernel's behaviour, and
//!   LXC's on cgroup v2 (it skips deny rules on a deny-all list). [`DevicePolicy::apply`]
//!   returns a note for such a no-op so the caller can warn.
//!
//! Since every exception then has the same polarity, the order of exceptions does not
//! matter and the eBPF program needs no "first match wins" ordering.

/// A device rule that does not parse, naming the key it came from when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device rule {rule:?}{}: {reason}",
    key.as_deref().map(|k| format!(" in {k}")).unwrap_or_default())]
pub struct DeviceRuleError {
    /// e.g. "devices.allow"; `None` for a rule from a plain list.
    pub key: Option<String>,
    pub rule: String,
    pub reason: String,
}

/// `bpf_cgroup_dev_ctx` device types and access bits; the v1 files use the same letters.
pub(crate) const DEV_BLOCK: i32 = 1;
pub(crate) const DEV_CHAR: i32 = 2;
pub(crate) const ACC_MKNOD: i32 = 1;
pub(crate) const ACC_READ: i32 = 2;
pub(crate) const ACC_WRITE: i32 = 4;
pub(crate) const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Kind of a device node, for [`DevicePolicy::permits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    Block,
    Char,
}

/// Whether a rule came from `devices.allow` or `devices.deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOp {
    Allow,
    Deny,
}

impl DeviceOp {
    /// The cgroup key (file name) of this operation.
    pub fn key(self) -> &'static str {
        match self {
            DeviceOp::Allow => "devices.allow",
            DeviceOp::Deny => "devices.deny",
        }
    }

    /// `devices.allow` / `devices.deny`; `None` for any other key.
    pub fn from_key(key: &str) -> Option<DeviceOp> {
        match key {
            "devices.allow" => Some(DeviceOp::Allow),
            "devices.deny" => Some(DeviceOp::Deny),
            _ => None,
        }
    }
}

/// One parsed rule; `None` fields are wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// `DEV_BLOCK` or `DEV_CHAR`; `None` for type `a`.
    pub(crate) dev_type: Option<i32>,
    pub(crate) major: Option<i32>,
    pub(crate) minor: Option<i32>,
    /// Subset of `ACC_*` bits, never empty.
    pub(crate) access: i32,
}

impl DeviceRule {
    /// Parse "a" or "<a|b|c> <major|*>:<minor|*> <rwm>".
    pub fn parse(rule: &str) -> Result<Self, DeviceRuleError> {
        let bad = |reason: &str| DeviceRuleError {
            key: None,
            rule: rule.to_string(),
            reason: reason.into(),
        };
        let parts: Vec<&str> = rule.split_whitespace().collect();
        let (t, mm, acc) = match parts.as_slice() {
            ["a"] => ("a", "*:*", "rwm"),
            [t, mm, acc] => (*t, *mm, *acc),
            [p, ..] if p.starts_with('/') => return Err(bad(
                "device paths are not supported; write the type and numbers, e.g. \"c 10:229 rwm\"",
            )),
            _ => return Err(bad("expected \"a\" or \"<a|b|c> <major>:<minor> <rwm>\"")),
        };
        let dev_type = match t {
            "a" => None,
            "b" => Some(DEV_BLOCK),
            "c" => Some(DEV_CHAR),
            _ => return Err(bad("type must be a, b or c")),
        };
        // Numbers become 32-bit immediates of the eBPF program, which the jump sign-extends:
        // keep them below 2^31 (real majors are 12 bits, minors 20 bits).
        let num = |n: &str| -> Result<Option<i32>, DeviceRuleError> {
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
        if dev_type.is_none() && (major.is_some() || minor.is_some() || access != ACC_ALL) {
            return Err(bad(
                "type a means every device with every access (the kernel ignores the rest): write just \"a\", or use b or c",
            ));
        }
        Ok(DeviceRule {
            dev_type,
            major,
            minor,
            access,
        })
    }

    /// Whether this is the rule for every device ("a").
    pub fn is_all(&self) -> bool {
        self.dev_type.is_none()
    }

    /// Same device type and numbers (access aside): the kernel's notion of one exception.
    fn same_devices(&self, other: &DeviceRule) -> bool {
        (self.dev_type, self.major, self.minor) == (other.dev_type, other.major, other.minor)
    }

    fn covers(&self, t: DevType, major: u32, minor: u32) -> bool {
        let t = match t {
            DevType::Block => DEV_BLOCK,
            DevType::Char => DEV_CHAR,
        };
        let num = |rule: Option<i32>, n: u32| !matches!(rule, Some(r) if r as u32 != n);
        !matches!(self.dev_type, Some(r) if r != t)
            && num(self.major, major)
            && num(self.minor, minor)
    }
}

impl std::fmt::Display for DeviceRule {
    /// The canonical v1 form, e.g. "c 1:* rw".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_all() {
            return f.write_str("a");
        }
        let t = if self.dev_type == Some(DEV_BLOCK) {
            'b'
        } else {
            'c'
        };
        let n = |v: Option<i32>| v.map_or("*".to_string(), |v| v.to_string());
        write!(f, "{t} {}:{} ", n(self.major), n(self.minor))?;
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// LXC's default device allow list (common.conf): mknod of any device, and read/write/mknod
/// of null, zero, full, tty, console, ptmx, random, urandom, the pts and fuse. Every
/// container's rules start from it, before its config's own allow/deny entries.
pub const LXC_DEFAULT_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 10:229 rwm",
];

/// Parse every rule of a plain list, naming the first bad one.
pub fn parse_rules(rules: &[&str]) -> Result<Vec<DeviceRule>, DeviceRuleError> {
    rules.iter().map(|r| DeviceRule::parse(r)).collect()
}

/// The composed device access of a cgroup: a default and its exceptions (see the module
/// documentation for how rules compose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    allow_by_default: bool,
    exceptions: Vec<DeviceRule>,
}

impl DevicePolicy {
    /// No device may be used or created: the start of every container.
    pub fn deny_all() -> Self {
        DevicePolicy {
            allow_by_default: false,
            exceptions: Vec::new(),
        }
    }

    /// Deny all, then allow each rule of `allow` (e.g. LXC's default list).
    pub fn allowing(allow: &[&str]) -> Result<Self, DeviceRuleError> {
        let mut p = Self::deny_all();
        for r in parse_rules(allow)? {
            p.apply(DeviceOp::Allow, &r);
        }
        Ok(p)
    }

    /// Apply one rule; returns a note when the rule changed nothing although it probably
    /// was meant to (a deny, or an allow, that matches no exception exactly).
    pub fn apply(&mut self, op: DeviceOp, rule: &DeviceRule) -> Option<String> {
        if rule.is_all() {
            self.allow_by_default = op == DeviceOp::Allow;
            self.exceptions.clear();
            return None;
        }
        let adds = (op == DeviceOp::Allow) != self.allow_by_default;
        let found = self.exceptions.iter().position(|e| e.same_devices(rule));
        match (adds, found) {
            (true, Some(i)) => self.exceptions[i].access |= rule.access,
            (true, None) => self.exceptions.push(rule.clone()),
            (false, Some(i)) => {
                self.exceptions[i].access &= !rule.access;
                if self.exceptions[i].access == 0 {
                    self.exceptions.remove(i);
                }
            }
            (false, None) => {
                // Nothing to remove; only worth a note if some wider exception still
                // grants (or refuses) what the rule names.
                let wider = self.exceptions.iter().any(|e| e.overlaps(rule));
                if wider {
                    let (verb, default) = if self.allow_by_default {
                        ("deny", "allows")
                    } else {
                        ("allow", "denies")
                    };
                    return Some(format!(
                        "{} = {rule} has no effect: the device list {default} by default and \
                         has no {verb} exception for exactly {}, only wider ones, which a \
                         rule does not cut into (as with cgroup v1)",
                        op.key(),
                        rule.to_string().rsplit_once(' ').map_or("", |(d, _)| d),
                    ));
                }
            }
        }
        None
    }

    /// Parse `value` as a rule of `op` and apply it; the error names the key.
    pub fn apply_str(
        &mut self,
        op: DeviceOp,
        value: &str,
    ) -> Result<Option<String>, DeviceRuleError> {
        let rule = DeviceRule::parse(value).map_err(|e| DeviceRuleError {
            key: Some(op.key().to_string()),
            ..e
        })?;
        Ok(self.apply(op, &rule))
    }

    /// True when devices not named by an exception are allowed.
    pub fn allows_by_default(&self) -> bool {
        self.allow_by_default
    }

    /// Exceptions to the default: allowed devices on a deny-all policy, denied ones on an
    /// allow-all policy.
    pub fn exceptions(&self) -> &[DeviceRule] {
        &self.exceptions
    }

    /// Whether `access` (letters of rwm) to the device is permitted, as the v1 kernel
    /// decides: on deny-all one exception must grant every requested letter; on allow-all
    /// no exception may refuse any requested letter.
    pub fn permits(&self, t: DevType, major: u32, minor: u32, access: &str) -> bool {
        let mut want = 0;
        for c in access.chars() {
            want |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        let mut hits = self.exceptions.iter().filter(|e| e.covers(t, major, minor));
        if self.allow_by_default {
            !hits.any(|e| e.access & want != 0)
        } else {
            hits.any(|e| want & !e.access == 0)
        }
    }
}

impl DeviceRule {
    /// Whether some device and access letter is named by both rules.
    fn overlaps(&self, other: &DeviceRule) -> bool {
        let field = |a: Option<i32>, b: Option<i32>| a.is_none() || b.is_none() || a == b;
        field(self.dev_type, other.dev_type)
            && field(self.major, other.major)
            && field(self.minor, other.minor)
            && self.access & other.access != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DevType::{Block, Char};
    use DeviceOp::{Allow, Deny};

    fn rule(s: &str) -> DeviceRule {
        DeviceRule::parse(s).unwrap()
    }

    fn policy(base: &[&str], ops: &[(DeviceOp, &str)]) -> (DevicePolicy, Vec<String>) {
        let mut p = DevicePolicy::allowing(base).unwrap();
        let notes = ops
            .iter()
            .filter_map(|(op, v)| p.apply_str(*op, v).unwrap())
            .collect();
        (p, notes)
    }

    #[test]
    fn parse_forms_and_canonical_text() {
        assert_eq!(rule("a"), rule("a *:* rwm"));
        assert!(rule("a").is_all());
        for (text, canon) in [
            ("c 1:3 rwm", "c 1:3 rwm"),
            ("b  *:*   m", "b *:* m"),
            ("c 136:* wr", "c 136:* rw"),
            ("c 10:200 mwr", "c 10:200 rwm"),
            ("a", "a"),
        ] {
            assert_eq!(rule(text).to_string(), canon, "{text:?}");
            assert_eq!(rule(canon), rule(text));
        }
        let r = rule("c 1:* r");
        assert_eq!(
            (r.dev_type, r.major, r.minor, r.access),
            (Some(DEV_CHAR), Some(1), None, ACC_READ)
        );
    }

    #[test]
    fn parse_errors_name_rule_and_reason() {
        for (bad, why) in [
            ("", "expected"),
            ("x 1:3 rwm", "type must be"),
            ("c 1:3", "expected"),
            ("c 1-3 r", "major:minor"),
            ("c 1:3 rx", "letters of rwm"),
            ("c 1:3 rr", "repeated"),
            ("c -1:3 r", "number or *"),
            ("c 99999999999:1 r", "too large"),
            ("c 1:3 rwm extra", "expected"),
            ("a 1:3 rwm", "type a means"),
            ("a *:* r", "type a means"),
            ("/dev/fuse rwm", "device paths"),
        ] {
            let e = DeviceRule::parse(bad).unwrap_err();
            assert_eq!(e.rule, bad);
            let s = e.to_string();
            assert!(s.contains(&format!("{bad:?}")) && s.contains(why), "{s}");
        }
        let e = DevicePolicy::deny_all()
            .apply_str(Deny, "c 1:3 q")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("devices.deny"));
        assert!(e.to_string().contains("\"c 1:3 q\" in devices.deny"), "{e}");
    }

    #[test]
    fn default_list_permits_what_lxc_allows() {
        let (p, _) = policy(LXC_DEFAULT_DEVICES, &[]);
        assert!(!p.allows_by_default());
        assert!(p.permits(Char, 1, 3, "rw"));
        assert!(p.permits(Char, 136, 7, "rw"));
        assert!(p.permits(Char, 4, 1, "m"), "mknod of any char device");
        assert!(p.permits(Block, 8, 0, "m"));
        assert!(!p.permits(Block, 8, 0, "r"));
        assert!(!p.permits(Char, 10, 200, "rw"), "tun is not in the default");
        assert!(!p.permits(Char, 4, 1, "rm"), "m alone from c *:* m");
    }

    #[test]
    fn user_allow_adds_and_merges() {
        let (p, notes) = policy(
            LXC_DEFAULT_DEVICES,
            &[
                (Allow, "c 10:200 rw"),
                (Allow, "c 10:200 m"),
                (Allow, "b 7:* r"),
            ],
        );
        assert!(notes.is_empty());
        assert!(p.permits(Char, 10, 200, "rwm"));
        assert_eq!(
            p.exceptions()
                .iter()
                .filter(|e| e.major == Some(10) && e.minor == Some(200))
                .count(),
            1,
            "merged into one exception"
        );
        assert!(p.permits(Block, 7, 3, "r") && !p.permits(Block, 7, 3, "w"));
    }

    #[test]
    fn user_deny_removes_exact_exception_or_letters() {
        let (p, notes) = policy(
            LXC_DEFAULT_DEVICES,
            &[(Deny, "c 1:3 rwm"), (Deny, "c 1:5 w")],
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert!(!p.permits(Char, 1, 3, "r"));
        assert!(p.permits(Char, 1, 3, "m"), "c *:* m still grants mknod");
        assert!(p.permits(Char, 1, 5, "r") && !p.permits(Char, 1, 5, "w"));
        assert!(p.permits(Char, 1, 7, "rw"));
    }

    #[test]
    fn deny_does_not_cut_into_a_wider_allow_and_says_so() {
        let (p, notes) = policy(&[], &[(Allow, "c *:* rwm"), (Deny, "c 1:3 rwm")]);
        assert!(p.permits(Char, 1, 3, "rw"), "v1 kernel / LXC semantics");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("devices.deny = c 1:3 rwm has no effect"),
            "{}",
            notes[0]
        );
        // With the default list, c *:* m keeps granting mknod: noted. A deny of letters
        // nobody granted is silent.
        let (_, notes) = policy(LXC_DEFAULT_DEVICES, &[(Deny, "c 99:1 rwm")]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let (_, notes) = policy(LXC_DEFAULT_DEVICES, &[(Deny, "c 99:1 rw")]);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_switches_the_default_and_clears_exceptions() {
        let (p, _) = policy(LXC_DEFAULT_DEVICES, &[(Deny, "a")]);
        assert_eq!(p, DevicePolicy::deny_all());
        assert!(!p.permits(Char, 1, 3, "r"));

        let (p, _) = policy(LXC_DEFAULT_DEVICES, &[(Allow, "a")]);
        assert!(p.allows_by_default() && p.exceptions().is_empty());
        assert!(p.permits(Block, 8, 0, "rwm"));

        // Allow-all, then specific denies: a deny list, read with partial overlap.
        let (p, notes) = policy(
            LXC_DEFAULT_DEVICES,
            &[
                (Allow, "a"),
                (Deny, "c 1:3 w"),
                (Deny, "b *:* rwm"),
                (Allow, "b *:* r"),
            ],
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert!(p.permits(Char, 1, 3, "r"));
        assert!(
            !p.permits(Char, 1, 3, "rw"),
            "any refused letter refuses the access"
        );
        assert!(
            p.permits(Block, 8, 0, "r"),
            "allow took r out of the b deny"
        );
        assert!(!p.permits(Block, 8, 0, "w"));
        assert!(p.permits(Char, 10, 200, "rwm"));
    }

    #[test]
    fn lxc_common_conf_sequence_equals_the_default() {
        // A config that includes LXC's common.conf restates the default: deny a, then the
        // list. Composed onto our default it must give the same policy.
        let mut ops = vec![(Deny, "a")];
        ops.extend(LXC_DEFAULT_DEVICES.iter().map(|r| (Allow, *r)));
        let (p, _) = policy(LXC_DEFAULT_DEVICES, &ops);
        assert_eq!(p, DevicePolicy::allowing(LXC_DEFAULT_DEVICES).unwrap());
    }
}
