//! The header gate and header-From extraction.
//!
//! Input: a limit byte, a chunk-size byte, then decoded message content.
//!
//! * `HeaderGate` agrees with a reference, whatever the chunking: the header
//!   block ends after a leading CRLF or after the first CRLF CRLF; `Complete`
//!   exactly when that end is within the limit, `TooLarge` when it (or, with
//!   no end, all of the content) is past the limit; `headers()` is that
//!   prefix of the content; the buffer is a prefix of the content and never
//!   holds more than the limit plus one chunk; after the answer it stays.
//! * `header_from_addresses` never panics, on the gate's header block and on
//!   the raw bytes; an `Ok` is a non-empty list of `local@domain` addresses
//!   with a lowercase domain and no control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/oracles.rs"]
mod oracles;
use oracles::header_end;
use smtpbind::smtp::header::{header_from_addresses, Gate, HeaderGate};

fn check_from(headers: &[u8]) {
    let result = header_from_addresses(headers);
    if let Ok(addresses) = &result {
        assert!(!addresses.is_empty());
        for a in addresses {
            let (_, domain) = a.rsplit_once('@').expect("an address has an @");
            assert!(!domain.is_empty(), "{a:?}");
            assert_eq!(domain, domain.to_lowercase(), "{a:?}");
            assert!(!a.chars().any(char::is_control), "{a:?}");
        }
    }
    assert_eq!(result, header_from_addresses(headers), "not deterministic");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = usize::from(data[0]) * 16 + 1;
    let chunk = usize::from(data[1]) + 1;
    let content = &data[2..];

    let end = header_end(content);
    let expected = match end {
        Some(e) if e <= limit => Gate::Complete,
        Some(_) => Gate::TooLarge,
        None if content.len() > limit => Gate::TooLarge,
        None => Gate::NeedMore,
    };

    let mut gate = HeaderGate::new(limit);
    let mut state = Gate::NeedMore;
    let mut pushed = 0;
    for piece in content.chunks(chunk) {
        let before = gate.buffered().len();
        let was = state;
        state = gate.push(piece);
        pushed += piece.len();
        if state == Gate::NeedMore {
            assert_eq!(gate.buffered(), &content[..pushed]);
            assert!(gate.headers().is_empty());
        } else if was == Gate::NeedMore {
            assert!(before <= limit, "buffered past the limit before this chunk");
            assert_eq!(gate.buffered(), &content[..pushed]);
        } else {
            assert_eq!(state, was, "the answer changed");
            assert_eq!(gate.buffered().len(), before, "buffered after the answer");
        }
        assert!(content.starts_with(gate.buffered()));
    }
    assert_eq!(state, expected, "limit {limit}, end {end:?}");
    assert_eq!(gate.state(), expected);
    let finished = gate.finish();
    match expected {
        Gate::Complete => {
            assert_eq!(finished, Gate::Complete);
            assert_eq!(gate.headers(), &content[..end.unwrap()]);
        }
        Gate::TooLarge => {
            assert_eq!(finished, Gate::TooLarge);
            assert!(gate.headers().is_empty());
        }
        Gate::NeedMore => {
            // The message ended inside the headers: all of it is the header block.
            assert_eq!(finished, Gate::Complete);
            assert_eq!(gate.headers(), content);
        }
    }
    // The answer stays.
    assert_eq!(gate.push(b"\r\n\r\n"), finished);
    assert_eq!(gate.finish(), finished);

    check_from(gate.headers());
    check_from(content);
});
