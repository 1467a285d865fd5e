//! Command framing and parsing.
//!
//! The input is a script of operations on one [`LineBuffer`]: append a slice
//! of the input (arbitrary chunking), or (in one input of eight) append a
//! large run of filler bytes without a line end, so that the 64 KiB flood
//! limit is reachable. After every
//! append the lines are drained like the session does, and each one is
//! checked against a reference framing of the whole stream:
//!
//! * lines come out in order, each `Ok` line is exactly the stream's line
//!   without its LF (and one CR before it), and is shorter than the limit;
//!   a line over the limit is reported as `TooLong`, never as `Ok`;
//! * after draining, `pending()` holds exactly the unfinished line when it is
//!   within the limit and nothing otherwise (memory stays bounded);
//! * `Flood` is reported exactly when the unfinished line exceeds `MAX_DISCARD`.
//!
//! Every `Ok` line goes through `command::parse` (in
//! `oracles::envelope_agrees`), which must not panic; a MAIL or RCPT is
//! refused or written upstream as exactly what was approved (smtp-proto
//! reads it back).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
#[path = "../../tests/support/oracles.rs"]
mod oracles;
use smtpbind::smtp::line::{Line, LineBuffer, MAX_DISCARD};
use smtpbind::smtp::{MAX_AUTH_LINE, MAX_COMMAND_LINE};

/// Reference framing: the stream's complete lines, and the unfinished one
/// (its length, and its bytes while it is within the limit).
struct Reference {
    limit: usize,
    partial_len: usize,
    partial: Vec<u8>,
    /// Each complete line: its bytes, or `Err(Line::TooLong)`.
    expected: std::collections::VecDeque<Result<Vec<u8>, Line>>,
}

impl Reference {
    fn push(&mut self, mut bytes: &[u8]) {
        loop {
            let (piece, rest) = match memchr::memchr(b'\n', bytes) {
                Some(lf) => (&bytes[..lf], Some(&bytes[lf + 1..])),
                None => (bytes, None),
            };
            self.partial_len += piece.len();
            if self.partial_len <= self.limit {
                self.partial.extend_from_slice(piece);
            } else {
                self.partial.clear();
            }
            let Some(rest) = rest else { return };
            let line = if self.partial_len + 1 > self.limit {
                Err(Line::TooLong)
            } else {
                let l = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
                Ok(l.to_vec())
            };
            self.expected.push_back(line);
            self.partial.clear();
            self.partial_len = 0;
            bytes = rest;
        }
    }
}

fn check_parsed(line: &[u8]) {
    // MAIL and RCPT are the only client commands whose values smtpbind
    // writes to the upstream: refused, or read back by smtp-proto as exactly
    // what was approved (the `envelope` target explores this in depth).
    if let Err(e) = oracles::envelope_agrees(line) {
        panic!("{e} (from {line:?})");
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let limit = match u.int_in_range(0u8..=3)? {
        0 => MAX_COMMAND_LINE,
        1 => MAX_AUTH_LINE,
        _ => u.int_in_range(1usize..=600)?,
    };
    // Large runs cost a lot under coverage instrumentation (every byte
    // scanned is a traced comparison): only one input in eight has them.
    let floods = u.int_in_range(0u8..=7)? == 0;
    let mut buf = LineBuffer::new();
    let mut out = Vec::new();
    let mut reference = Reference {
        limit,
        partial_len: 0,
        partial: Vec::new(),
        expected: Default::default(),
    };
    while !u.is_empty() {
        let op = u.int_in_range(0u8..=15)?;
        let bytes: Vec<u8> = if op == 0 && floods {
            // A large run without a line end.
            let kib = u.int_in_range(1usize..=20)?;
            let filler = u.arbitrary::<u8>()?;
            let filler = if filler == b'\n' { b'x' } else { filler };
            vec![filler; kib * 1024]
        } else {
            let n = u.int_in_range(0usize..=64 * (op as usize + 1))?;
            u.bytes(n.min(u.len()))?.to_vec()
        };
        buf.extend(&bytes);
        reference.push(&bytes);
        loop {
            // One buffer for every line, as the session reuses it: a line
            // must replace what the previous one left there.
            match buf.next_line(limit, &mut out) {
                Line::NeedMore => {
                    assert!(reference.expected.is_empty(), "line not delivered");
                    assert!(reference.partial_len <= MAX_DISCARD, "flood not reported");
                    if reference.partial_len <= limit {
                        assert_eq!(buf.pending(), &reference.partial[..]);
                    } else {
                        assert!(buf.pending().is_empty(), "over-long line kept");
                    }
                    break;
                }
                Line::Flood => {
                    assert!(reference.expected.is_empty(), "line lost before flood");
                    assert!(reference.partial_len > MAX_DISCARD, "early flood");
                    // The session disconnects.
                    return Ok(());
                }
                got => {
                    let got = match got {
                        Line::Ok => Ok(out.clone()),
                        other => Err(other),
                    };
                    let want = reference.expected.pop_front();
                    assert_eq!(Some(&got), want.as_ref());
                    if let Ok(line) = got {
                        assert!(line.len() < limit);
                        assert!(!line.contains(&b'\n'));
                        check_parsed(&line);
                    }
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Every line of the raw input is also parsed directly, whatever its length.
    for line in data.split(|&b| b == b'\n') {
        check_parsed(line.strip_suffix(b"\r").unwrap_or(line));
    }
    let _ = run(&mut Unstructured::new(data));
});
