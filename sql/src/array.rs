//! PostgreSQL's text form of one-dimensional arrays (`{a,"b c",NULL}`), the form arrays have
//! here (there is no array storage type): printing an element as `array_out` does, and reading
//! the elements back (`array_to_string`, the binary wire form of `text[]`).

/// The engine's function an `ARRAY[a, b, …]` constructor becomes: the text form of its
/// elements.
pub const CONSTRUCT_FUNCTION: &str = "_sqlkeeper_array";
/// `x op ANY (a)`, `x op ALL (a)` of an array (not a subquery):
/// `_sqlkeeper_array_cmp(x, 'op', all, a)`.
pub const COMPARE_FUNCTION: &str = "_sqlkeeper_array_cmp";
/// `a && b` of arrays.
pub const OVERLAPS_FUNCTION: &str = "_sqlkeeper_array_overlaps";

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
/// `None` when the text is not one ([`parse`] says why).
pub fn elements(s: &str) -> Option<Vec<Option<String>>> {
    parse(s).ok()
}

/// Why a text is not a one-dimensional array: PostgreSQL's SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayError {
    /// 22P02 for a malformed literal, 0A000 for a form PostgreSQL has and this node has not
    /// (several dimensions, explicit bounds).
    pub sqlstate: &'static str,
    /// The message, as PostgreSQL's `array_in` words it.
    pub message: String,
    /// Why, as PostgreSQL's DETAIL says it (`Unexpected end of input.`).
    pub detail: Option<String>,
}

/// The elements of an array's text form, read as PostgreSQL's `array_in` reads a
/// one-dimensional array: `{` elements separated by `,` `}`, white space around them ignored;
/// an element is double-quoted (a backslash escapes the next character) or not (a backslash
/// escapes, the unquoted word `NULL` in any case is a NULL). Several dimensions and explicit
/// bounds (`[0:1]={…}`) are refused (0A000): arrays here have one dimension, from 1.
pub fn parse(s: &str) -> Result<Vec<Option<String>>, ArrayError> {
    let malformed = |why: &str| ArrayError {
        sqlstate: "22P02",
        message: format!("malformed array literal: \"{s}\""),
        detail: Some(why.to_string()),
    };
    let space = |c: char| c.is_ascii_whitespace();
    let t = s.trim_matches(space);
    if t.starts_with('[') {
        return Err(unsupported("arrays with explicit bounds"));
    }
    let Some(rest) = t.strip_prefix('{') else {
        return Err(malformed(
            "Array value must start with \"{\" or dimension information.",
        ));
    };
    let mut out = Vec::new();
    let mut rest = rest.trim_start_matches(space);
    if let Some(after) = rest.strip_prefix('}') {
        return match after.is_empty() {
            true => Ok(out),
            false => Err(malformed("Junk after closing right brace.")),
        };
    }
    loop {
        rest = rest.trim_start_matches(space);
        let mut item = String::new();
        let mut chars = rest.char_indices();
        let mut quoted = false;
        let mut escaped = false;
        // The element's length without the white space after it (unquoted elements).
        let mut end_of_text = 0usize;
        let (at, delimiter) = loop {
            let Some((i, c)) = chars.next() else {
                return Err(malformed("Unexpected end of input."));
            };
            match c {
                '{' if i == 0 => return Err(unsupported("multidimensional arrays")),
                '"' if i == 0 => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err(malformed("Unexpected end of input.")),
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, e)) => item.push(e),
                                None => return Err(malformed("Unexpected end of input.")),
                            },
                            Some((_, e)) => item.push(e),
                        }
                    }
                    end_of_text = item.len();
                }
                ',' | '}' => break (i, c),
                _ if quoted && space(c) => {}
                _ if quoted => return Err(malformed("Incorrectly quoted array element.")),
                '{' | '"' => return Err(malformed(&format!("Unexpected \"{c}\" character."))),
                '\\' => match chars.next() {
                    Some((_, e)) => {
                        escaped = true;
                        item.push(e);
                        end_of_text = item.len();
                    }
                    None => return Err(malformed("Unexpected end of input.")),
                },
                _ => {
                    item.push(c);
                    if !space(c) {
                        end_of_text = item.len();
                    }
                }
            }
        };
        if !quoted && end_of_text == 0 {
            return Err(malformed(&format!("Unexpected \"{delimiter}\" character.")));
        }
        item.truncate(end_of_text);
        out.push((quoted || escaped || !item.eq_ignore_ascii_case("null")).then_some(item));
        rest = &rest[at + 1..];
        if delimiter == '}' {
            return match rest.is_empty() {
                true => Ok(out),
                false => Err(malformed("Junk after closing right brace.")),
            };
        }
    }
}

fn unsupported(what: &str) -> ArrayError {
    ArrayError {
        sqlstate: "0A000",
        message: format!("{what} are not supported: arrays have one dimension here, from 1"),
        detail: None,
    }
}

/// The text form of an array of `items` (each already in its element type's text form), as
/// PostgreSQL's `array_out` prints it.
pub fn text<'a>(items: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut out = String::from("{");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&element(item));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn reads_arrays_as_array_in_does() {
        assert_eq!(parse("{}"), Ok(vec![]));
        assert_eq!(parse(" { } "), Ok(vec![]));
        assert_eq!(parse("{a,b}"), Ok(some(&["a", "b"])));
        assert_eq!(parse("{ a b , c }"), Ok(some(&["a b", "c"])));
        assert_eq!(
            parse(r#"{"a,b","",NULL,"NULL",null,\NULL}"#),
            Ok(vec![
                Some("a,b".into()),
                Some(String::new()),
                None,
                Some("NULL".into()),
                None,
                Some("NULL".into())
            ])
        );
        assert_eq!(parse(r#"{"a\"b\\c"}"#), Ok(some(&[r#"a"b\c"#])));
        assert_eq!(parse("{1, 2 ,3}"), Ok(some(&["1", "2", "3"])));
        assert_eq!(parse("{\"\u{2603}\",é}"), Ok(some(&["\u{2603}", "é"])));
    }

    #[test]
    fn refuses_what_array_in_refuses() {
        for bad in [
            "", "a,b", "{a", "{a,}", "{,a}", "{a}x", "{a\"b}", "{\"a\"b}", "{a,,b}", "{", "{\"a",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.sqlstate, "22P02", "{bad}: {e:?}");
            assert!(e
                .message
                .starts_with(&format!("malformed array literal: \"{bad}\"")));
        }
        assert_eq!(parse("{{1,2},{3,4}}").unwrap_err().sqlstate, "0A000");
        assert_eq!(parse("[0:1]={1,2}").unwrap_err().sqlstate, "0A000");
    }

    #[test]
    fn prints_what_it_reads() {
        for v in [
            vec![],
            some(&["a", "b c", "", "NULL", "x\"y\\"]),
            vec![None],
        ] {
            let t = text(v.iter().map(Option::as_deref));
            assert_eq!(parse(&t), Ok(v), "{t}");
        }
        assert_eq!(text([Some("a"), None, Some("b c")]), r#"{a,NULL,"b c"}"#);
    }
}
