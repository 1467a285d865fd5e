//! The DATA decoder and the dot-stuffer.
//!
//! Input: two split points, then arbitrary bytes.
//!
//! 1. The bytes as what a client sends after `354`, fed in three pieces (the
//!    split points), in both modes:
//!    * `More` until one `Ended`; every later call says `Ended { consumed: 0 }`
//!      and appends nothing; `consumed <= len` of that call;
//!    * the end is exactly after the first real `CRLF . CRLF` (the start of
//!      the data counting as a line start) — the same wherever the input is split;
//!    * the output is the same wherever the input is split;
//!    * Normalize output has no bare CR or LF and, once ended, is empty or
//!      ends in CRLF; Reject output is a prefix of it, equal without violation;
//!    * re-stuffed for the upstream, the decoded message has exactly one end
//!      of data, at its very end: one DATA never yields two upstream messages.
//! 2. The bytes as message content: `DotStuffer` output (encoded in two
//!    pieces) plus its end, decoded in both modes and split anywhere, ends
//!    exactly at the end and equals the content normalised to CRLF lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/oracles.rs"]
mod oracles;
use oracles::{data_end, has_bare, normalize, stuff};
use smtpbind::smtp::data::{BareLineEndings, DataDecoder, Feed};

const MODES: [BareLineEndings; 2] = [BareLineEndings::Normalize, BareLineEndings::Reject];

/// Feeds `input` cut at `cuts` (sorted, within bounds), then once more with
/// trailing garbage; checks the per-call properties; returns the absolute
/// end, the output and whether a bare line ending was seen.
fn decode(mode: BareLineEndings, input: &[u8], cuts: &[usize]) -> (Option<usize>, Vec<u8>, bool) {
    let mut d = DataDecoder::new(mode);
    let mut out = Vec::new();
    let mut end = None;
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = &input[start..cut];
        let before = out.len();
        match d.feed(chunk, &mut out) {
            Feed::Ended { consumed } => {
                assert!(consumed <= chunk.len());
                if end.is_none() {
                    assert!(d.is_ended());
                    end = Some(start + consumed);
                } else {
                    assert_eq!(consumed, 0, "a second end of data");
                    assert_eq!(out.len(), before, "content appended after the end");
                }
            }
            Feed::More => {
                assert!(end.is_none(), "More after Ended");
                assert!(!d.is_ended());
            }
        }
        start = cut;
    }
    if end.is_some() {
        let before = out.len();
        assert_eq!(
            d.feed(b"x\r\n.\r\n\n.\n", &mut out),
            Feed::Ended { consumed: 0 }
        );
        assert_eq!(out.len(), before, "content appended after the end");
    }
    (end, out, d.saw_bare_line_ending())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, input) = data.split_at(4);
    let a = u16::from_le_bytes([head[0], head[1]]) as usize % (input.len() + 1);
    let b = u16::from_le_bytes([head[2], head[3]]) as usize % (input.len() + 1);
    let cuts = [a.min(b), a.max(b)];
    let end = data_end(input);

    // 1. Arbitrary client bytes.
    let mut results = Vec::new();
    for mode in MODES {
        let (e, out, bare) = decode(mode, input, &cuts);
        assert_eq!(e, end, "{mode:?}");
        let (e1, whole, bare1) = decode(mode, input, &[]);
        assert_eq!(e1, end);
        assert_eq!(out, whole, "output depends on the split");
        assert_eq!(bare, bare1);
        results.push((out, bare));
    }
    let (norm, bare_n) = &results[0];
    let (rej, bare_r) = &results[1];
    assert_eq!(bare_n, bare_r);
    assert!(!has_bare(norm), "bare line ending in Normalize output");
    assert!(norm.starts_with(rej), "Reject output is not a prefix");
    if !bare_r {
        assert_eq!(norm, rej);
    }
    if end.is_some() {
        assert!(norm.is_empty() || norm.ends_with(b"\r\n"));
        // What the upstream receives for this one DATA has exactly one end.
        let wire = stuff(norm, a.min(norm.len()));
        assert_eq!(
            data_end(&wire),
            Some(wire.len()),
            "second upstream message"
        );
        for mode in MODES {
            let (e, out, bare) = decode(mode, &wire, &[b.min(wire.len())]);
            assert_eq!(e, Some(wire.len()));
            assert_eq!(&out, norm);
            assert!(!bare);
        }
    }

    // 2. Round trip of arbitrary content.
    let wire = stuff(input, a);
    assert_eq!(wire, stuff(input, b), "stuffing depends on the split");
    assert!(!has_bare(&wire));
    assert_eq!(
        data_end(&wire),
        Some(wire.len()),
        "stuffed content ends early"
    );
    let mut expected = normalize(input);
    if !expected.is_empty() && !expected.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    let cut = b % (wire.len() + 1);
    for mode in MODES {
        let (e, out, bare) = decode(mode, &wire, &[cut]);
        assert_eq!(e, Some(wire.len()), "{mode:?}");
        assert_eq!(out, expected, "{mode:?}");
        assert!(!bare);
    }
});
