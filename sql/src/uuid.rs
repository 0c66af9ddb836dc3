//! PostgreSQL's `uuid` text form: read in the forms it accepts, printed as it prints them.

/// The 16 bytes of a uuid in one of the forms Postgres accepts: 32 hex digits, with a hyphen
/// after any group of four, optionally in braces.
pub fn parse(s: &str) -> Option<[u8; 16]> {
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    if inner.starts_with('-') || inner.ends_with('-') || inner.contains("--") {
        return None;
    }
    let hex: Vec<u8> = inner.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    // Hyphens only after groups of four digits.
    let mut run = 0;
    for b in inner.bytes() {
        if b == b'-' {
            if run % 4 != 0 {
                return None;
            }
        } else {
            run += 1;
        }
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// A UUID's 16 bytes in Postgres' text form: 32 lower-case hex digits in groups of 8-4-4-4-12.
pub fn text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
