//! The monitor's side of coop's CLI line protocol (crates/coop-container/src/proto.rs):
//! one JSON request line per connection, one JSON reply line.
//!
//! The CLI writes the requests with serde_json, always flat objects of numbers, booleans
//! and one string (`cmd`), so a field scanner reads them without a JSON library.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// A request line is a few dozen bytes; anything longer is not from coop.
const MAX_LINE: usize = 4096;

#[derive(Debug, PartialEq)]
pub enum Request {
    Console {
        tty: u32,
        rows: u16,
        cols: u16,
    },
    Agent,
    Stop {
        signal: i32,
        timeout_ms: u64,
        kill: bool,
    },
}

/// Read up to `\n`, byte by byte so nothing after the line is swallowed.
pub fn read_line(mut s: &UnixStream) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => {
                line.push(b[0]);
                if line.len() > MAX_LINE {
                    return None;
                }
            }
            _ => return None,
        }
    }
    String::from_utf8(line).ok()
}

pub fn parse_request(line: &str) -> Option<Request> {
    let line = line.trim();
    if !line.starts_with('{') || !line.ends_with('}') {
        return None;
    }
    match string_field(line, "cmd")? {
        "console" => Some(Request::Console {
            tty: u32::try_from(int_field(line, "tty")?).ok()?,
            rows: u16::try_from(int_field(line, "rows")?).ok()?,
            cols: u16::try_from(int_field(line, "cols")?).ok()?,
        }),
        "agent" => Some(Request::Agent),
        "stop" => Some(Request::Stop {
            signal: i32::try_from(int_field(line, "signal")?).ok()?,
            timeout_ms: u64::try_from(int_field(line, "timeout_ms")?).ok()?,
            kill: bool_field(line, "kill")?,
        }),
        _ => None,
    }
}

/// The raw text after `"key":`, up to the next `,` or `}`.
fn raw_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let at = line.find(&pat)? + pat.len();
    let rest = line[at..].trim_start();
    let end = rest.find([',', '}'])?;
    Some(rest[..end].trim_end())
}

fn string_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let v = raw_field(line, key)?;
    let v = v.strip_prefix('"')?.strip_suffix('"')?;
    // Command names are plain words; an escape means it is not one of ours.
    (!v.contains('\\') && !v.contains('"')).then_some(v)
}

fn int_field(line: &str, key: &str) -> Option<i64> {
    raw_field(line, key)?.parse().ok()
}

fn bool_field(line: &str, key: &str) -> Option<bool> {
    match raw_field(line, key)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn reply(mut s: &UnixStream, ok: bool, error: Option<&str>) {
    let error = error.map_or_else(|| "null".to_string(), quote);
    let line = format!("{{\"ok\":{ok},\"error\":{error},\"exit\":null}}\n");
    let _ = s.write_all(line.as_bytes());
}

/// The answer to a stop once init is gone (also what the teardown sends).
pub fn final_reply(exit: &str) -> String {
    format!("{{\"ok\":true,\"exit\":{}}}\n", quote(exit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_cli_writes() {
        assert_eq!(
            parse_request(r#"{"cmd":"console","tty":2,"rows":24,"cols":80}"#),
            Some(Request::Console {
                tty: 2,
                rows: 24,
                cols: 80
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"stop","signal":10,"timeout_ms":3000,"kill":false}"#),
            Some(Request::Stop {
                signal: 10,
                timeout_ms: 3000,
                kill: false
            })
        );
        assert_eq!(parse_request(r#"{"cmd":"agent"}"#), Some(Request::Agent));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "{}",
            r#"{"cmd":"reboot"}"#,
            r#"{"cmd":"console","tty":-1,"rows":24,"cols":80}"#,
            r#"{"cmd":"console","tty":1,"rows":70000,"cols":80}"#,
            r#"{"cmd":"stop","signal":10,"timeout_ms":3000}"#,
            r#"{"cmd":"stop","signal":10,"timeout_ms":3000,"kill":maybe}"#,
            r#"{"cmd":"con\"sole"}"#,
            "not json",
        ] {
            assert_eq!(parse_request(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quotes_json_strings() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(
            final_reply("killed by SIGKILL"),
            "{\"ok\":true,\"exit\":\"killed by SIGKILL\"}\n"
        );
    }
}
