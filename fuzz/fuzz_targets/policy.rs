//! The policy loader on arbitrary text.
//!
//! `policy::parse` never panics, never hangs, and either returns a policy or
//! a non-empty list of errors, each naming the file it was given, at a
//! 1-based line and column within the text (or the file-level 0:0), with a
//! non-empty key, and shown on one line without control characters whatever
//! the text holds; the list is in file order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// An upper bound on the line numbers a YAML parser may report: the lines
/// of the text (every character YAML may treat as a line break counted), plus
/// one, because libyaml reports an error at the end of the input on the line
/// after the last one (`{` alone is an error at 2:1).
fn max_line(text: &str) -> usize {
    text.chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
        + 2
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("fuzz.yaml");
    let result = smtpbind::policy::parse(&text, file);
    if let Err(errors) = &result {
        assert!(!errors.0.is_empty(), "an error result without errors");
        let limit = max_line(&text);
        for e in &errors.0 {
            assert_eq!(e.file, file);
            assert!(
                (e.line >= 1 && e.col >= 1) || (e.line == 0 && e.col == 0),
                "position {}:{} for {e}",
                e.line,
                e.col
            );
            assert!(
                e.line <= limit,
                "line {} past the end ({limit}) for {e}",
                e.line
            );
            assert!(!e.key.is_empty(), "empty key for {e}");
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml:"), "{shown}");
            // One error per line: nothing from the text may break the line.
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        assert!(errors
            .0
            .windows(2)
            .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)));
        let _ = errors.to_string();
    }
});
