//! DATA decoding (client → smtpbind) and dot-stuffing (smtpbind → upstream).
//!
//! This module is the anti-SMTP-smuggling core. SMTP smuggling works when two
//! SMTP implementations disagree about where a message ends: a client hides
//! `<LF>.<LF>` (or `<CR>.<CR>`, `<LF>.<CR><LF>`, …) inside one message; a
//! lenient hop takes it as the end of data and reads the rest as a second,
//! forged transaction, while a strict hop keeps it as content. smtpbind
//! therefore recognises exactly one end-of-data sequence and re-encodes every
//! message before the upstream sees it, so the upstream receives exactly the
//! messages the client sent, never more.
//!
//! [`DataDecoder`] rules (RFC 5321 §4.1.1.4, §4.5.2):
//!
//! * The end of data is **only** `CRLF . CRLF` whose first CRLF is a real CRLF.
//!   The start of the data counts as a line start, so `.\r\n` immediately after
//!   the 354 is an empty message.
//! * A line begun by a real CRLF (or the start of data) whose first byte is `.`
//!   loses that one dot (dot-unstuffing).
//! * A bare LF (LF not preceded by CR) or a bare CR (CR not followed by LF) is a
//!   violation:
//!   * [`BareLineEndings::Reject`]: from the violating byte on nothing more is
//!     appended to the output, but scanning continues until the real end of
//!     data so that the caller can answer `550 5.6.11` at the right place and
//!     resynchronise with the command stream.
//!   * [`BareLineEndings::Normalize`]: the bare CR or LF becomes CRLF in the
//!     content. The line that follows it was *not* begun by a real CRLF, so it
//!     is neither dot-unstuffed nor able to end the data: `\n.\n`, `\n.\r\n`,
//!     `\r.\r`, `\r\n.\r` and `\r\n.\n` never end a message. A line `.` that
//!     results from normalisation is plain content, which [`DotStuffer`]
//!     stuffs again for the upstream.
//!
//! The decoder is streaming: it holds O(1) state (at most one pending CR and
//! whether a line start/dot was just seen) and never buffers the message.
//! State carries across [`DataDecoder::feed`] calls byte-exactly, so a CR at the
//! end of one read followed by an LF at the start of the next is a real CRLF.
//! Runs of ordinary bytes are located with `memchr` and copied as slices.
//!
//! [`DotStuffer`] is the inverse for the upstream: it doubles a `.` at the start
//! of every line, and (as defence in depth, a no-op for decoder output) turns
//! any bare CR or LF into CRLF so that the bytes it emits are always
//! unambiguous SMTP DATA wire form whatever content it is handed.

use memchr::memchr2;

const CRLF: &[u8] = b"\r\n";

/// What to do with a bare LF or bare CR inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// The message is refused (`550 5.6.11`); nothing after the violation is
    /// appended to the decoded content.
    Reject,
    /// The bare line ending is re-encoded as CRLF.
    Normalize,
}

/// Result of one [`DataDecoder::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// End-of-data seen; `consumed` bytes of the input belonged to this
    /// message (the rest is the next command).
    Ended {
        /// Bytes of this call's input that belong to the message, the final
        /// `.\r\n` included.
        consumed: usize,
    },
    /// All input consumed, message continues.
    More,
}

/// Where the decoder stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    /// At the start of the data or right after a real CRLF.
    LineStart,
    /// `.` seen at a real line start; the dot has been dropped (unstuffed).
    Dot,
    /// `.` then CR at a real line start; the CR is pending (not yet output).
    DotCr,
    /// Inside a line, or at a line start that was not begun by a real CRLF.
    Mid,
    /// CR seen inside a line; it is pending until the next byte decides
    /// whether it is half of a CRLF or a bare CR.
    Cr,
    /// End of data seen; the decoder accepts nothing more.
    Ended,
}

/// Streaming decoder for the bytes a client sends after `354`.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    mode: BareLineEndings,
    state: DecState,
    violation: bool,
}

impl DataDecoder {
    /// A decoder positioned at the start of the data (a line start).
    pub fn new(mode: BareLineEndings) -> Self {
        Self {
            mode,
            state: DecState::LineStart,
            violation: false,
        }
    }

    /// Consume raw client bytes after the 354; append the decoded message
    /// content (dot-unstuffed, lines ending in CRLF) to `out`.
    ///
    /// Once [`Feed::Ended`] has been returned the message is complete and
    /// further calls return `Ended { consumed: 0 }` without appending anything:
    /// all of their input belongs to the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let n = input.len();
        let mut i = 0;
        // input[run..i] is still to be copied verbatim to `out`.
        let mut run = 0;
        while i < n {
            match self.state {
                DecState::Ended => return Feed::Ended { consumed: 0 },
                DecState::LineStart => {
                    if input[i] == b'.' {
                        // Unstuff: drop this one dot.
                        self.emit(&input[run..i], out);
                        i += 1;
                        run = i;
                        self.state = DecState::Dot;
                    } else {
                        self.state = DecState::Mid;
                    }
                }
                DecState::Dot => {
                    if input[i] == b'\r' {
                        // Hold the CR back: it is either part of the final
                        // `.\r\n` or a bare CR that needs normalising.
                        i += 1;
                        run = i;
                        self.state = DecState::DotCr;
                    } else {
                        // Ordinary (unstuffed) line; a bare LF here is seen by `Mid`.
                        self.state = DecState::Mid;
                    }
                }
                DecState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = DecState::Ended;
                        return Feed::Ended { consumed: i + 1 };
                    }
                    // The CR after the dot was bare. The next byte starts a line
                    // that was not begun by a real CRLF; `Mid` handles it
                    // (including another CR).
                    self.bare_line_ending(out);
                    self.state = DecState::Mid;
                }
                DecState::Cr => {
                    // Only reached when the CR was the last byte of a previous call.
                    if input[i] == b'\n' {
                        self.emit(CRLF, out);
                        i += 1;
                        run = i;
                        self.state = DecState::LineStart;
                    } else {
                        self.bare_line_ending(out);
                        self.state = DecState::Mid;
                    }
                }
                DecState::Mid => match memchr2(b'\r', b'\n', &input[i..]) {
                    None => i = n,
                    Some(k) => {
                        let j = i + k;
                        if input[j] == b'\r' {
                            match input.get(j + 1) {
                                Some(b'\n') => {
                                    // Real CRLF: stays part of the verbatim run.
                                    i = j + 2;
                                    self.state = DecState::LineStart;
                                }
                                Some(_) => {
                                    self.emit(&input[run..j], out);
                                    self.bare_line_ending(out);
                                    i = j + 1;
                                    run = i;
                                }
                                None => {
                                    self.emit(&input[run..j], out);
                                    i = n;
                                    run = n;
                                    self.state = DecState::Cr;
                                }
                            }
                        } else {
                            // LF not preceded by CR (a CRLF pair is consumed above).
                            self.emit(&input[run..j], out);
                            self.bare_line_ending(out);
                            i = j + 1;
                            run = i;
                        }
                    }
                },
            }
        }
        if self.state == DecState::Ended {
            return Feed::Ended { consumed: 0 };
        }
        self.emit(&input[run..n], out);
        Feed::More
    }

    /// True once a bare LF or bare CR was seen (in Reject mode nothing is
    /// appended to `out` from that byte on).
    pub fn saw_bare_line_ending(&self) -> bool {
        self.violation
    }

    /// True once the end of data has been seen.
    pub fn is_ended(&self) -> bool {
        self.state == DecState::Ended
    }

    /// The mode this decoder was built with.
    pub fn mode(&self) -> BareLineEndings {
        self.mode
    }

    #[inline]
    fn emit(&self, bytes: &[u8], out: &mut Vec<u8>) {
        if !(self.violation && self.mode == BareLineEndings::Reject) {
            out.extend_from_slice(bytes);
        }
    }

    /// A bare CR or LF was found at the current position (its byte is not in
    /// any pending run).
    #[inline]
    fn bare_line_ending(&mut self, out: &mut Vec<u8>) {
        self.violation = true;
        self.emit(CRLF, out);
    }
}

/// Where the stuffer stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StuffState {
    LineStart,
    Mid,
    /// A CR ended the previous `encode` call and has not been written yet.
    Cr,
}

/// Re-encodes decoded content into SMTP DATA wire form for the upstream.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    state: StuffState,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer positioned at the start of the message (a line start).
    pub fn new() -> Self {
        Self {
            state: StuffState::LineStart,
        }
    }

    /// Append the wire form of `content` to `out`: a `.` at the start of any
    /// line is doubled; a bare CR or LF is written as CRLF. State carries
    /// across calls.
    pub fn encode(&mut self, content: &[u8], out: &mut Vec<u8>) {
        let n = content.len();
        let mut i = 0;
        let mut run = 0;
        while i < n {
            match self.state {
                StuffState::LineStart => {
                    if content[i] == b'.' {
                        out.extend_from_slice(&content[run..i]);
                        out.push(b'.');
                        // The original dot stays in the next run.
                        run = i;
                    }
                    self.state = StuffState::Mid;
                }
                StuffState::Cr => {
                    out.extend_from_slice(CRLF);
                    if content[i] == b'\n' {
                        i += 1;
                        run = i;
                    }
                    self.state = StuffState::LineStart;
                }
                StuffState::Mid => match memchr2(b'\r', b'\n', &content[i..]) {
                    None => i = n,
                    Some(k) => {
                        let j = i + k;
                        if content[j] == b'\r' {
                            match content.get(j + 1) {
                                Some(b'\n') => i = j + 2,
                                Some(_) => {
                                    out.extend_from_slice(&content[run..j]);
                                    out.extend_from_slice(CRLF);
                                    i = j + 1;
                                    run = i;
                                }
                                None => {
                                    out.extend_from_slice(&content[run..j]);
                                    self.state = StuffState::Cr;
                                    return;
                                }
                            }
                        } else {
                            out.extend_from_slice(&content[run..j]);
                            out.extend_from_slice(CRLF);
                            i = j + 1;
                            run = i;
                        }
                        self.state = StuffState::LineStart;
                    }
                },
            }
        }
        out.extend_from_slice(&content[run..n]);
    }

    /// Appends CRLF if the content did not end with one, then `.\r\n`.
    /// The stuffer is then ready for a new message.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            StuffState::LineStart => {}
            StuffState::Mid | StuffState::Cr => out.extend_from_slice(CRLF),
        }
        out.extend_from_slice(b".\r\n");
        self.state = StuffState::LineStart;
    }
}

/// Line-ending policy for BDAT chunks, which carry message bytes as they
/// are (no dot-stuffing, no end marker): a bare LF or bare CR is refused
/// (`Reject`: nothing more is appended from it on) or turned into CRLF
/// (`Normalize`). A CR at the end of one chunk followed by LF at the start
/// of the next is a real CRLF.
#[derive(Debug, Clone)]
pub struct LineEndingFilter {
    mode: BareLineEndings,
    pending_cr: bool,
    saw_bare: bool,
}

impl LineEndingFilter {
    pub fn new(mode: BareLineEndings) -> Self {
        LineEndingFilter {
            mode,
            pending_cr: false,
            saw_bare: false,
        }
    }

    pub fn saw_bare_line_ending(&self) -> bool {
        self.saw_bare
    }

    fn bare(&mut self, out: &mut Vec<u8>) {
        self.saw_bare = true;
        if self.mode == BareLineEndings::Normalize {
            out.extend_from_slice(b"\r\n");
        }
    }

    fn rejecting(&self) -> bool {
        self.saw_bare && self.mode == BareLineEndings::Reject
    }

    /// Appends the filtered bytes of `input` to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() && !self.rejecting() {
            if self.pending_cr {
                self.pending_cr = false;
                if rest[0] == b'\n' {
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[1..];
                } else {
                    self.bare(out);
                }
                continue;
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
                Some(i) => {
                    out.extend_from_slice(&rest[..i]);
                    if rest[i] == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.bare(out);
                    }
                    rest = &rest[i + 1..];
                }
            }
        }
    }

    /// The last chunk ended: a CR still pending was bare.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr && !self.rejecting() {
            self.pending_cr = false;
            self.bare(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEXT: &[u8] =
        b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@x.example>\r\nDATA\r\n";

    /// Feed `input` in one call; return (all Ended results, output).
    fn decode_once(mode: BareLineEndings, input: &[u8]) -> (Feed, Vec<u8>, DataDecoder) {
        let mut d = DataDecoder::new(mode);
        let mut out = Vec::new();
        let f = d.feed(input, &mut out);
        (f, out, d)
    }

    /// Feed `input` in pieces; return the absolute end offset (if any), the
    /// number of Ended results with consumed > 0 before the end and the output.
    fn decode_chunks(
        mode: BareLineEndings,
        input: &[u8],
        splits: &[usize],
    ) -> (Option<usize>, Vec<u8>, bool) {
        let mut d = DataDecoder::new(mode);
        let mut out = Vec::new();
        let mut end = None;
        let mut start = 0;
        let mut cuts: Vec<usize> = splits
            .iter()
            .copied()
            .filter(|&s| s <= input.len())
            .collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for cut in cuts {
            if cut < start {
                continue;
            }
            let chunk = &input[start..cut];
            match d.feed(chunk, &mut out) {
                Feed::Ended { consumed } => {
                    assert!(consumed <= chunk.len());
                    if end.is_none() {
                        end = Some(start + consumed);
                    } else {
                        assert_eq!(consumed, 0, "second end reported");
                    }
                }
                Feed::More => assert!(end.is_none(), "More after Ended"),
            }
            start = cut;
        }
        (end, out, d.saw_bare_line_ending())
    }

    /// Reference: the end is the first `\r\n.\r\n` in `\r\n` + input.
    fn reference_end(input: &[u8]) -> Option<usize> {
        let mut v = b"\r\n".to_vec();
        v.extend_from_slice(input);
        v.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 3)
    }

    fn normalize(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < content.len() {
            match content[i] {
                b'\r' if content.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        out
    }

    fn stuff(content: &[u8]) -> Vec<u8> {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.encode(content, &mut out);
        s.finish(&mut out);
        out
    }

    fn has_bare(v: &[u8]) -> bool {
        v.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && v.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || v[i - 1] != b'\r'))
        })
    }

    /// Each smuggling variant: `body1 <variant> smuggled-transaction \r\n.\r\n NEXT`.
    /// The only end is the final real CRLF.CRLF; the smuggled transaction is
    /// content of the one message in Normalize mode.
    fn smuggle_case(variant: &[u8], expected_norm_variant: &[u8]) {
        let smuggled = b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@x.example>\r\nDATA\r\nSubject: forged\r\n\r\nPay now\r\n";
        let mut input = b"Subject: hi\r\n\r\nhello".to_vec();
        input.extend_from_slice(variant);
        input.extend_from_slice(smuggled);
        input.extend_from_slice(b".\r\n");
        let end = input.len();
        input.extend_from_slice(NEXT);

        let mut expected = b"Subject: hi\r\n\r\nhello".to_vec();
        expected.extend_from_slice(expected_norm_variant);
        expected.extend_from_slice(smuggled);

        let (f, out, d) = decode_once(BareLineEndings::Normalize, &input);
        assert_eq!(f, Feed::Ended { consumed: end }, "variant {variant:?}");
        assert_eq!(out, expected, "variant {variant:?}");
        assert!(d.saw_bare_line_ending());
        assert!(!has_bare(&out));
        // Re-stuffed for the upstream: exactly one end, at the very end.
        let wire = stuff(&out);
        assert_eq!(reference_end(&wire), Some(wire.len()));
        let (f2, out2, _) = decode_once(BareLineEndings::Normalize, &wire);
        assert_eq!(
            f2,
            Feed::Ended {
                consumed: wire.len()
            }
        );
        assert_eq!(out2, out);

        let (f, out, d) = decode_once(BareLineEndings::Reject, &input);
        assert_eq!(f, Feed::Ended { consumed: end }, "variant {variant:?}");
        assert!(d.saw_bare_line_ending());
        // Content up to (not including) the violating byte; a leading real CRLF
        // and the unstuffed dot's line start are still content.
        let mut before = b"Subject: hi\r\n\r\nhello".to_vec();
        if variant.starts_with(b"\r\n") {
            before.extend_from_slice(b"\r\n");
        }
        assert_eq!(out, before, "variant {variant:?}");

        // Every split point gives the same answer.
        for s in 0..=input.len() {
            for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
                let (e, o, v) = decode_chunks(mode, &input, &[s]);
                assert_eq!(e, Some(end));
                assert!(v);
                let (_, o1, _) = decode_once(mode, &input);
                assert_eq!(o, o1, "split {s}");
            }
        }
    }

    #[test]
    fn smuggle_lf_dot_lf() {
        smuggle_case(b"\n.\n", b"\r\n.\r\n");
    }

    #[test]
    fn smuggle_lf_dot_crlf() {
        smuggle_case(b"\n.\r\n", b"\r\n.\r\n");
    }

    #[test]
    fn smuggle_cr_dot_cr() {
        smuggle_case(b"\r.\r", b"\r\n.\r\n");
    }

    #[test]
    fn smuggle_crlf_dot_cr() {
        // Real CRLF, so the dot is unstuffed; the CR after it is bare.
        smuggle_case(b"\r\n.\r", b"\r\n\r\n");
    }

    #[test]
    fn smuggle_crlf_dot_lf() {
        smuggle_case(b"\r\n.\n", b"\r\n\r\n");
    }

    #[test]
    fn smuggle_cr_dot_crlf() {
        smuggle_case(b"\r.\r\n", b"\r\n.\r\n");
    }

    #[test]
    fn smuggle_crlf_dot_cr_cr_lf() {
        // `.\r\r\n`: the first CR is bare, the second pairs with the LF.
        smuggle_case(b"\r\n.\r\r\n", b"\r\n\r\n\r\n");
    }

    #[test]
    fn smuggle_lf_dot_cr() {
        smuggle_case(b"\n.\r", b"\r\n.\r\n");
    }

    #[test]
    fn empty_message() {
        let mut input = b".\r\n".to_vec();
        input.extend_from_slice(NEXT);
        for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
            let (f, out, d) = decode_once(mode, &input);
            assert_eq!(f, Feed::Ended { consumed: 3 });
            assert!(out.is_empty());
            assert!(!d.saw_bare_line_ending());
        }
        let mut s = DotStuffer::new();
        let mut w = Vec::new();
        s.finish(&mut w);
        assert_eq!(w, b".\r\n");
    }

    #[test]
    fn plain_message() {
        let input = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n.\r\nQUIT\r\n";
        let (f, out, d) = decode_once(BareLineEndings::Reject, input);
        assert_eq!(
            f,
            Feed::Ended {
                consumed: input.len() - 6
            }
        );
        assert_eq!(out, b"Subject: x\r\n\r\nline 1\r\nline 2\r\n");
        assert!(!d.saw_bare_line_ending());
    }

    #[test]
    fn dot_unstuffing() {
        let input = b"..\r\n..x\r\n.y\r\na.b\r\n...\r\n.\r\n";
        let (f, out, d) = decode_once(BareLineEndings::Reject, input);
        assert_eq!(
            f,
            Feed::Ended {
                consumed: input.len()
            }
        );
        assert_eq!(out, b".\r\n.x\r\ny\r\na.b\r\n..\r\n");
        assert!(!d.saw_bare_line_ending());
        assert_eq!(stuff(&out), b"..\r\n..x\r\ny\r\na.b\r\n...\r\n.\r\n");
    }

    #[test]
    fn dot_stuffer_lines() {
        assert_eq!(stuff(b".a\r\n.\r\nb."), b"..a\r\n..\r\nb.\r\n.\r\n");
        assert_eq!(stuff(b"x\r\n"), b"x\r\n.\r\n");
        // Defence in depth: bare endings become CRLF and the line after is stuffed.
        assert_eq!(stuff(b"a\n.\rb\r"), b"a\r\n..\r\nb\r\n.\r\n");
        // State across calls.
        let mut s = DotStuffer::new();
        let mut w = Vec::new();
        for piece in [&b"a\r"[..], b"\n", b".", b"b\r\n", b"", b".\r", b"\n"] {
            s.encode(piece, &mut w);
        }
        s.finish(&mut w);
        assert_eq!(w, b"a\r\n..b\r\n..\r\n.\r\n");
    }

    #[test]
    fn no_end_without_final_crlf() {
        for input in [
            &b"abc\r\n."[..],
            b"abc\r\n.\r",
            b"abc\r\n.x\r\n",
            b"abc\n.\r\n",
            b".x\r\n",
        ] {
            for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
                let (f, _, _) = decode_once(mode, input);
                assert_eq!(f, Feed::More, "{input:?}");
            }
        }
    }

    #[test]
    fn cr_lf_across_calls_is_real() {
        let mut d = DataDecoder::new(BareLineEndings::Reject);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"abc\r", &mut out), Feed::More);
        assert_eq!(d.feed(b"\n.", &mut out), Feed::More);
        assert_eq!(d.feed(b"\r", &mut out), Feed::More);
        assert_eq!(d.feed(b"\nNOOP\r\n", &mut out), Feed::Ended { consumed: 1 });
        assert!(!d.saw_bare_line_ending());
        assert_eq!(out, b"abc\r\n");
        // After the end nothing more is taken.
        assert_eq!(d.feed(b"x\r\n.\r\n", &mut out), Feed::Ended { consumed: 0 });
        assert!(d.is_ended());
        assert_eq!(out, b"abc\r\n");
    }

    #[test]
    fn reject_keeps_content_before_violation_only() {
        let input = b"ok line\r\nbad\nline\r\n.\r\n";
        let (f, out, d) = decode_once(BareLineEndings::Reject, input);
        assert_eq!(
            f,
            Feed::Ended {
                consumed: input.len()
            }
        );
        assert!(d.saw_bare_line_ending());
        assert_eq!(out, b"ok line\r\nbad");
        let (_, out, _) = decode_once(BareLineEndings::Normalize, input);
        assert_eq!(out, b"ok line\r\nbad\r\nline\r\n");
    }

    #[test]
    fn every_split_point_of_a_mixed_message() {
        let input: &[u8] = b"A\r\n..b\r\n.\rc\n\r\r\n.\n.x\r\n\r\n..\r\nend\r\r\n.\r\nNEXT\r\n";
        let end = reference_end(input);
        assert!(end.is_some());
        for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
            let (_, whole, _) = decode_once(mode, input);
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    let (e, out, v) = decode_chunks(mode, input, &[a, b]);
                    assert_eq!(e, end, "split {a},{b}");
                    assert_eq!(out, whole, "split {a},{b}");
                    assert!(v);
                }
            }
            // Byte by byte.
            let all: Vec<usize> = (0..=input.len()).collect();
            let (e, out, _) = decode_chunks(mode, input, &all);
            assert_eq!(e, end);
            assert_eq!(out, whole);
        }
    }

    fn content_strategy() -> impl Strategy<Value = Vec<u8>> {
        // Heavy on the interesting bytes.
        proptest::collection::vec(
            prop_oneof![
                4 => Just(b'.'),
                4 => Just(b'\r'),
                4 => Just(b'\n'),
                2 => Just(b'a'),
                1 => any::<u8>(),
            ],
            0..200,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// (a) decode(stuff(content)) == normalized content, ended exactly at the end.
        #[test]
        fn prop_roundtrip(content in content_strategy(), split in any::<prop::sample::Index>()) {
            let wire = stuff(&content);
            let mut expected = normalize(&content);
            if !expected.is_empty() && !expected.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
                let (f, out, d) = decode_once(mode, &wire);
                prop_assert_eq!(f, Feed::Ended { consumed: wire.len() });
                prop_assert_eq!(&out, &expected);
                prop_assert!(!d.saw_bare_line_ending());
                let s = split.index(wire.len() + 1);
                let (e, out2, _) = decode_chunks(mode, &wire, &[s]);
                prop_assert_eq!(e, Some(wire.len()));
                prop_assert_eq!(&out2, &expected);
            }
            // Stuffing in pieces is the same as in one go.
            let s = split.index(content.len() + 1);
            let mut st = DotStuffer::new();
            let mut w = Vec::new();
            st.encode(&content[..s], &mut w);
            st.encode(&content[s..], &mut w);
            st.finish(&mut w);
            prop_assert_eq!(w, wire);
        }

        /// (b) arbitrary input: at most one end, consumed <= len, and the end is
        /// exactly the first real CRLF.CRLF, whatever the split points.
        #[test]
        fn prop_single_end(input in content_strategy(), splits in proptest::collection::vec(0usize..220, 0..6)) {
            let end = reference_end(&input);
            for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
                let (f, whole, d) = decode_once(mode, &input);
                match f {
                    Feed::Ended { consumed } => {
                        prop_assert!(consumed <= input.len());
                        prop_assert_eq!(Some(consumed), end);
                    }
                    Feed::More => prop_assert_eq!(end, None),
                }
                let (e, out, v) = decode_chunks(mode, &input, &splits);
                prop_assert_eq!(e, end);
                prop_assert_eq!(&out, &whole);
                prop_assert_eq!(v, d.saw_bare_line_ending());
            }
        }

        /// (c) Normalize output never contains a bare CR or LF; Reject output
        /// is a prefix of it and is complete when no violation was seen.
        #[test]
        fn prop_normalize_clean(input in content_strategy(), splits in proptest::collection::vec(0usize..220, 0..6)) {
            let (_, norm, _) = decode_chunks(BareLineEndings::Normalize, &input, &splits);
            prop_assert!(!has_bare(&norm));
            let (_, rej, v) = decode_chunks(BareLineEndings::Reject, &input, &splits);
            prop_assert!(norm.starts_with(&rej));
            if !v {
                prop_assert_eq!(rej, norm);
            }
        }

        /// Arbitrary bytes through the stuffer always yield wire form whose only
        /// end is the final one.
        #[test]
        fn prop_stuffer_single_end(content in content_strategy()) {
            let wire = stuff(&content);
            prop_assert_eq!(reference_end(&wire), Some(wire.len()));
            prop_assert!(!has_bare(&wire));
        }
    }

    #[test]
    fn bdat_filter_keeps_crlf_across_chunks_and_handles_bare_endings() {
        let mut f = LineEndingFilter::new(BareLineEndings::Reject);
        let mut out = Vec::new();
        f.feed(b"a\r", &mut out);
        f.feed(b"\nb\r\n.\r\n", &mut out);
        f.finish(&mut out);
        assert_eq!(out, b"a\r\nb\r\n.\r\n");
        assert!(!f.saw_bare_line_ending());

        let mut f = LineEndingFilter::new(BareLineEndings::Reject);
        let mut out = Vec::new();
        f.feed(b"x\n.\nMAIL", &mut out);
        assert!(f.saw_bare_line_ending());
        assert_eq!(out, b"x", "nothing appended from the bare LF on");

        let mut f = LineEndingFilter::new(BareLineEndings::Normalize);
        let mut out = Vec::new();
        f.feed(b"x\n.\ry\r", &mut out);
        f.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\ny\r\n");
        assert!(f.saw_bare_line_ending());
    }
}
