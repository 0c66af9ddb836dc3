//! `jsonb`'s text as PostgreSQL prints it: no insignificant whitespace, `": "` and `", "`
//! between members, object keys without duplicates (the last wins) and ordered by length, then
//! bytewise, and numbers as `numeric` prints them (`1e3` is `1000`, `-0` is `0`, `2.50` keeps its
//! scale). A small parser of its own, because the number's text must survive parsing.

/// Deepest nesting of arrays and objects accepted (54001 beyond): the parser recurses once
/// per level, on the apply thread's stack. The same as serde_json's limit, which checks `json`
/// values; PostgreSQL's own limit is its stack depth (`max_stack_depth`), far deeper.
pub(crate) const JSON_DEPTH_MAX: usize = 128;

/// Why a text is not `jsonb`, as an SQLSTATE and message.
pub(crate) type JsonError = (&'static str, String);

fn syntax() -> JsonError {
    ("22P02", "invalid input syntax for type json".into())
}

/// The normalized `jsonb` text of `s`.
pub(crate) fn normalize(s: &str) -> Result<String, JsonError> {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    let mut out = String::with_capacity(s.len());
    p.ws();
    p.value(&mut out, 0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(syntax());
    }
    Ok(out)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), JsonError> {
        if depth > JSON_DEPTH_MAX {
            return Err((
                "54001",
                format!("JSON nested deeper than {JSON_DEPTH_MAX} levels"),
            ));
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members: Vec<(String, String)> = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return Err(syntax());
                        }
                        let mut v = String::new();
                        self.value(&mut v, depth + 1)?;
                        members.retain(|(k, _)| *k != key);
                        members.push((key, v));
                        if self.eat(b',') {
                            continue;
                        }
                        if self.eat(b'}') {
                            break;
                        }
                        return Err(syntax());
                    }
                }
                members.sort_by(|(a, _), (b, _)| {
                    a.len()
                        .cmp(&b.len())
                        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
                });
                out.push('{');
                for (n, (k, v)) in members.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    quote(k, out);
                    out.push_str(": ");
                    out.push_str(v);
                }
                out.push('}');
            }
            Some(b'[') => {
                self.i += 1;
                out.push('[');
                if !self.eat(b']') {
                    let mut first = true;
                    loop {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        self.value(out, depth + 1)?;
                        if self.eat(b',') {
                            continue;
                        }
                        if self.eat(b']') {
                            break;
                        }
                        return Err(syntax());
                    }
                }
                out.push(']');
            }
            Some(b'"') => {
                let s = self.string()?;
                quote(&s, out);
            }
            Some(b't') => self.word("true", out)?,
            Some(b'f') => self.word("false", out)?,
            Some(b'n') => self.word("null", out)?,
            Some(b'-' | b'0'..=b'9') => self.number(out)?,
            _ => return Err(syntax()),
        }
        Ok(())
    }

    fn word(&mut self, w: &str, out: &mut String) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            out.push_str(w);
            Ok(())
        } else {
            Err(syntax())
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(syntax());
        }
        self.i += 1;
        let mut s: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(syntax());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return Err(syntax());
                    };
                    self.i += 1;
                    match e {
                        b'"' => s.push(b'"'),
                        b'\\' => s.push(b'\\'),
                        b'/' => s.push(b'/'),
                        b'b' => s.push(8),
                        b'f' => s.push(12),
                        b'n' => s.push(b'\n'),
                        b'r' => s.push(b'\r'),
                        b't' => s.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                // A surrogate pair: the low half follows as \uXXXX.
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(syntax());
                                }
                                self.i += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(syntax());
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            }
                            if cp == 0 {
                                return Err((
                                    "22P05",
                                    "unsupported Unicode escape sequence: \\u0000 cannot be converted to text".into(),
                                ));
                            }
                            let ch = char::from_u32(cp).ok_or_else(syntax)?;
                            let mut buf = [0u8; 4];
                            s.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(syntax()),
                    }
                }
                0..=0x1f => return Err(syntax()),
                _ => s.push(c),
            }
        }
        String::from_utf8(s).map_err(|_| syntax())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.b.get(self.i..self.i + 4).ok_or_else(syntax)?;
        let h = std::str::from_utf8(h).map_err(|_| syntax())?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| syntax())
    }

    fn number(&mut self, out: &mut String) -> Result<(), JsonError> {
        let digits = |p: &mut Parser<'_>| {
            let from = p.i;
            while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                p.i += 1;
            }
            p.i - from
        };
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = digits(self);
        // JSON: no leading zeros, at least one digit.
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            return Err(syntax());
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(syntax());
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'-' | b'+')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(syntax());
            }
        }
        // JSON's number grammar is a subset of numeric's: what is left to fail is an exponent
        // past what numeric holds.
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| syntax())?;
        let n = sqlkeeper_sql::numeric::Decimal::parse(text)
            .ok_or_else(|| ("22003", "value overflows numeric format".to_string()))?;
        out.push_str(&n.to_string());
        Ok(())
    }
}

/// A string in JSON quotes, escaped as PostgreSQL escapes it.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::normalize;

    /// What PostgreSQL 15 prints for `'{input}'::jsonb`.
    #[test]
    fn prints_as_postgres_prints_jsonb() {
        let cases = [
            (r#"{"b":1,"a":2}"#, r#"{"a": 2, "b": 1}"#),
            (r#"{"aa":1,"b":2,"a":3}"#, r#"{"a": 3, "b": 2, "aa": 1}"#),
            (r#"{"a":1,"a":2}"#, r#"{"a": 2}"#),
            ("[1, 2.50, 1e3, -0, 1E+2]", "[1, 2.50, 1000, 0, 100]"),
            (
                r#"{"s":"x\"y\\z\u00e9\n\t\u0001"}"#,
                r#"{"s": "x\"y\\zé\n\t\u0001"}"#,
            ),
            (
                r#" { "a" : [ true , false , null ] } "#,
                r#"{"a": [true, false, null]}"#,
            ),
            (r#""str""#, r#""str""#),
            ("12.500", "12.500"),
            (r#"{"é":1,"z":2}"#, r#"{"z": 2, "é": 1}"#),
            (r#"{"a":{"c":1,"b":2}}"#, r#"{"a": {"b": 2, "c": 1}}"#),
            ("[]", "[]"),
            ("{}", "{}"),
            ("1e-2", "0.01"),
            ("-1.5e1", "-15"),
            ("0.000", "0.000"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "",
            "{",
            r#"{"a":}"#,
            "[1,]",
            "01",
            "1.",
            "tru",
            r#""\u0000""#,
            "{} x",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize(&"[".repeat(200)).unwrap_err().0, "54001");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(normalize(&deep).as_deref(), Ok(deep.as_str()));
    }
}
