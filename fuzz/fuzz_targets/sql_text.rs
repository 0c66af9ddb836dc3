//! The text of a Query or Parse: parsed, classified and translated to SQLite SQL.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let _ = sqlkeeper_sql::translate(sql);
    }
});
