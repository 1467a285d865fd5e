//! The upstream reply parser and the EHLO capability reader.
//!
//! Input: one byte for the read size, then what an upstream sends.
//!
//! * `reply::parse` never panics; a reply uses `0 < used <= len` bytes
//!   ending in LF, has 1..=MAX_REPLY_LINES lines, a code in 200..=599 and no
//!   control characters in its text (it is passed back to the client);
//! * every shorter prefix of those bytes needs more (`Ok(None)`);
//! * reading the way `Upstream::read_reply` does (one parser, the buffer
//!   growing by reads) gives the same answer as parsing all of it at once;
//! * the reply's wire form parses back to the same reply (when it fits the
//!   line limit: sanitising may lengthen a line);
//! * pipelined replies are read one after the other until the bytes run out;
//! * `Capabilities::from_ehlo` runs on every reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpbind::smtp::reply::{parse as parse_reply, Reply, MAX_REPLY_LINE, MAX_REPLY_LINES};
use smtpbind::upstream::caps::Capabilities;

fn check_reply(buf: &[u8], reply: &Reply, used: usize) {
    assert!(used > 0 && used <= buf.len());
    assert_eq!(buf[used - 1], b'\n');
    assert!((200..600).contains(&reply.code));
    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    for line in &reply.lines {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    // Sanitising may lengthen a line (U+FFFD for an invalid byte, CR added):
    // the round trip holds while the wire form stays within the line limit.
    let wire = reply.to_bytes();
    if wire
        .split_inclusive(|&b| b == b'\n')
        .all(|l| l.len() <= MAX_REPLY_LINE)
    {
        let back = parse_reply(&wire);
        assert_eq!(
            back,
            Ok(Some((reply.clone(), wire.len()))),
            "wire form round trip"
        );
    }
    let caps = Capabilities::from_ehlo(reply);
    assert_eq!(caps, Capabilities::from_ehlo(reply));
}

fuzz_target!(|data: &[u8]| {
    let Some((&read, buf)) = data.split_first() else {
        return;
    };
    // At most 16 reads: every read re-parses the buffer from its start, as
    // `read_reply` does, and that is quadratic under instrumentation.
    let read = (usize::from(read) + 1).max(buf.len() / 16);

    let whole = parse_reply(buf);
    if let Ok(Some((reply, used))) = &whole {
        check_reply(buf, reply, *used);
        for k in [0, used / 2, used - 1] {
            assert_eq!(parse_reply(&buf[..k]), Ok(None), "prefix {k}");
        }
        assert_eq!(parse_reply(&buf[..*used]), whole);
    }

    // As `read_reply` does: one parser, a buffer that grows by reads.
    let mut len = 0;
    loop {
        len = (len + read).min(buf.len());
        match parse_reply(&buf[..len]) {
            Ok(None) if len < buf.len() => continue,
            got => {
                assert_eq!(got, whole, "incremental read differs at {len}");
                break;
            }
        }
    }

    // Pipelined replies, one after the other.
    let mut rest = buf;
    while let Ok(Some((reply, used))) = parse_reply(rest) {
        check_reply(rest, &reply, used);
        rest = &rest[used..];
    }
});
