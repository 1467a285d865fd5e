//! The typed envelope: MAIL FROM / RCPT TO parsed, checked and written.
//!
//! Input: a selector byte (MAIL or RCPT, with or without the opening
//! bracket), then the rest of the command line. Property, for every input:
//! `command::parse` never panics, and either smtpbind refuses the line or
//! the command it writes upstream parses, by smtp-proto (an independent
//! parser), to exactly the path and parameters it approved, on one line,
//! without control characters, `AUTH=` or any other parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/oracles.rs"]
mod oracles;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let verb: &[u8] = match sel % 4 {
        0 => b"MAIL FROM:<",
        1 => b"RCPT TO:<",
        2 => b"MAIL FROM:",
        _ => b"RCPT TO:",
    };
    let mut line = verb.to_vec();
    line.extend_from_slice(&rest[..rest.len().min(600)]);
    if let Err(e) = oracles::envelope_agrees(&line) {
        panic!("{e} (from {line:?})");
    }
});
