//! Human sizes (`256M`, `1G`, `512k`, `1048576`) as byte counts.

pub fn parse_size(v: &str) -> Result<u64, String> {
    let s = v.trim();
    let lower = s.to_ascii_lowercase();
    let trimmed = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let err = || format!("{v:?} is not a size like 256M, 1G or 1048576");
    let n: f64 = num.trim().parse().map_err(|_| err())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(err());
    }
    let bytes = n * mult as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("{v:?} is too large"));
    }
    Ok(bytes.round() as u64)
}
