//! Golden tests for the translator: `testdata/translate.txt` holds cases of Postgres SQL and
//! the SQLite SQL (or error) it must translate to, one case per row of the translation table
//! in `docs/compat.md`. Run with `UPDATE_GOLDEN=1` to rewrite the expected outputs after an
//! intended change, then review the diff.
//!
//! Format: each case is the input SQL, a line `----`, the expected output, and a blank line.
//! Lines starting with `#` before a case are comments.

use std::path::PathBuf;

fn render(sql: &str) -> String {
    match sqlkeeper_sql::translate(sql) {
        Ok(stmts) => stmts
            .iter()
            .map(|t| {
                let mut out = if t.sqlite.is_empty() {
                    format!("{:?}", t.kind)
                } else if t.effect.is_plain() {
                    t.sqlite.join(";\n")
                } else {
                    format!("{};\n-- effect: {:?}", t.sqlite.join(";\n"), t.effect)
                };
                if !t.literals.is_empty() {
                    out.push_str(&format!("\n-- literals: {:?}", t.literals));
                }
                out
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error {}: {}", e.sqlstate, e.message),
    }
}

#[test]
fn translate_golden() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/translate.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut failures = Vec::new();
    for block in text.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.is_empty() {
            continue;
        }
        let (head, expected) = match block.split_once("\n----\n") {
            Some((h, e)) => (h, e.to_string()),
            None => match block.strip_suffix("\n----") {
                Some(h) => (h, String::new()),
                None => panic!("case without ----:\n{block}"),
            },
        };
        let comments: Vec<&str> = head.lines().take_while(|l| l.starts_with('#')).collect();
        let input: Vec<&str> = head.lines().skip(comments.len()).collect();
        let input = input.join("\n");
        let actual = render(&input);
        if actual != expected {
            failures.push(format!(
                "input:    {input}\nexpected: {expected}\nactual:   {actual}\n"
            ));
        }
        for c in comments {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&format!("{input}\n----\n{actual}\n\n"));
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, out.trim_end().to_string() + "\n").unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} golden cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
