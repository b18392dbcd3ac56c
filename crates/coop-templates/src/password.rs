//! Root passwords: generation, SHA-512 crypt (`$6$`) hashing and /etc/shadow editing.

use rand::Rng;
use sha_crypt::{sha512_crypt_b64, Sha512Params, ROUNDS_DEFAULT};

use crate::TemplateError;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest password accepted; crypt implementations copy it around several times.
const MAX_PASSWORD_LEN: usize = 4096;

/// A random 16-character alphanumeric password.
pub fn generate_password() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

pub(crate) fn check_password(p: &str) -> Result<(), TemplateError> {
    let reason = if p.is_empty() {
        "empty password"
    } else if p.len() > MAX_PASSWORD_LEN {
        "longer than 4096 bytes"
    } else if p.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(TemplateError::InvalidValue {
        key: "root_password".into(),
        value: "(hidden)".into(),
        reason: reason.into(),
    })
}

/// `$6$<salt>$<hash>` with a random 16-character salt and the default 5000 rounds, the form
/// glibc's and busybox's crypt() produce and accept.
pub fn hash_password(password: &str) -> Result<String, TemplateError> {
    let mut rng = rand::thread_rng();
    let salt: String = (0..16)
        .map(|_| SALT_CHARS[rng.gen_range(0..SALT_CHARS.len())] as char)
        .collect();
    hash_password_with_salt(password, &salt)
}

/// `$6$<salt>$<hash>` for a given salt (at most 16 characters of `[./0-9A-Za-z]`).
pub fn hash_password_with_salt(password: &str, salt: &str) -> Result<String, TemplateError> {
    if salt.is_empty() || salt.len() > 16 || !salt.bytes().all(|b| SALT_CHARS.contains(&b)) {
        return Err(TemplateError::Hash(format!(
            "invalid salt `{salt}`: 1 to 16 characters of [./0-9A-Za-z]"
        )));
    }
    let params =
        Sha512Params::new(ROUNDS_DEFAULT).map_err(|e| TemplateError::Hash(format!("{e:?}")))?;
    let b64 = sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| TemplateError::Hash(format!("{e:?}")))?;
    Ok(format!("$6${salt}${b64}"))
}

/// True when `hash` (`$6$…`) is the SHA-512 crypt of `password`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    sha_crypt::sha512_check(password, hash).is_ok()
}

/// Days since the epoch, the unit of /etc/shadow's "last change" field.
pub(crate) fn shadow_today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// Returns `shadow` with root's hash replaced (or a root line added at the top), leaving every
/// other line as it was.
pub(crate) fn set_root_hash(shadow: &str, hash: &str, today: u64) -> String {
    let mut out = String::with_capacity(shadow.len() + hash.len() + 32);
    let mut found = false;
    for line in shadow.lines() {
        if !found && line.split(':').next() == Some("root") {
            found = true;
            let mut fields: Vec<&str> = line.split(':').collect();
            // A shadow line has 9 fields; pad short ones so the result is well formed.
            while fields.len() < 9 {
                fields.push("");
            }
            let day = today.to_string();
            fields[1] = hash;
            fields[2] = &day;
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        out.insert_str(0, &format!("root:{hash}:{today}:0:99999:7:::\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_16_alnum_and_differ() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_matches_reference_vector() {
        // Test vector from Ulrich Drepper's SHA-crypt specification.
        let h = hash_password_with_salt("Hello world!", "saltstring").unwrap();
        assert_eq!(
            h,
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu\
             esI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        assert!(verify_password("Hello world!", &h));
        assert!(!verify_password("Hello world?", &h));
    }

    #[test]
    fn random_salt_hash_verifies() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$6$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(hash_password_with_salt("x", "bad:salt").is_err());
    }

    #[test]
    fn shadow_root_line_is_replaced_or_added() {
        let s = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n";
        let out = set_root_hash(s, "$6$a$b", 20000);
        assert_eq!(
            out,
            "root:$6$a$b:20000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
        );
        let out = set_root_hash("daemon:*:1::::::\n", "$6$a$b", 5);
        assert_eq!(out, "root:$6$a$b:5:0:99999:7:::\ndaemon:*:1::::::\n");
        let out = set_root_hash("root:x\n", "H", 5);
        assert_eq!(out, "root:H:5::::::\n");
        assert!(check_password("").is_err());
        assert!(check_password("a\0b").is_err());
        assert!(check_password(&"a".repeat(5000)).is_err());
    }
}
