//! PostgreSQL's text form of one-dimensional arrays (`{a,"b c",NULL}`), the form arrays have
//! here (there is no array storage type): printing an element as `array_out` does, and reading
//! the elements back (`array_to_string`, the binary wire form of `text[]`).

/// An element in PostgreSQL's text form of an array (`array_out`): double-quoted when it is
/// empty, `NULL` in any case, or holds a brace, quote, comma, backslash or white space.
pub fn element(v: Option<&str>) -> String {
    let Some(s) = v else {
        return "NULL".into();
    };
    let plain = !s.is_empty()
        && !s.eq_ignore_ascii_case("null")
        && !s
            .chars()
            .any(|c| matches!(c, '{' | '}' | '"' | ',' | '\\') || c.is_ascii_whitespace());
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The elements of a one-dimensional array in PostgreSQL's text form (`{a,"b c",NULL}`);
/// `None` when the text is not one.
pub fn elements(s: &str) -> Option<Vec<Option<String>>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut item = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        if quoted {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if matches!(c, '{' | '}' | '"') {
                    return None;
                }
                item.push(c);
            }
            item = item.trim_end().to_string();
        }
        out.push((quoted || !item.eq_ignore_ascii_case("null")).then_some(item));
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}
