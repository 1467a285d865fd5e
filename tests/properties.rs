//! The fuzz targets' properties (`fuzz/`) as proptest tests that run in CI:
//! command framing and parsing, the DATA decoder and dot-stuffer, the
//! upstream reply parser and EHLO capabilities, the policy loader and the
//! header gate / header-From extraction. Each property is a specific claim
//! (a reference model, a round trip, an invariant), not only "no panic".
//!
//! Case counts keep the whole file well under 30 s in a debug build; set
//! `PROPTEST_CASES` to run more.

use std::collections::VecDeque;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use smtpbind::smtp::command::{self, Command};
use smtpbind::smtp::data::{BareLineEndings, DataDecoder, Feed};
use smtpbind::smtp::header::{header_from_addresses, Gate, HeaderGate};
use smtpbind::smtp::line::{Line, LineBuffer, MAX_DISCARD};
use smtpbind::smtp::reply::{parse as parse_reply, Reply, MAX_REPLY_LINE, MAX_REPLY_LINES};
use smtpbind::smtp::{MAX_AUTH_LINE, MAX_COMMAND_LINE};
use smtpbind::upstream::caps::Capabilities;

#[path = "support/oracles.rs"]
mod oracles;
use oracles::{data_end, has_bare, header_end, normalize, stuff};

#[path = "support/proptest_runner.rs"]
mod proptest_runner;
use proptest_runner::config;

const MODES: [BareLineEndings; 2] = [BareLineEndings::Normalize, BareLineEndings::Reject];

/// Bytes heavy on the ones that matter to SMTP framing.
fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(b'.'),
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            3 => Just(b'a'),
            1 => Just(b' '),
            1 => Just(0u8),
            2 => any::<u8>(),
        ],
        0..max,
    )
}

/// Cut points (sorted, within `len`) from arbitrary indices.
fn cuts(len: usize, idx: &[Index]) -> Vec<usize> {
    let mut c: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

// ---------------------------------------------------------------------------
// Command framing and parsing

#[derive(Debug, Clone)]
enum Op {
    Bytes(Vec<u8>),
    /// A run of this many KiB of `x`, without a line end.
    Filler(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let line_bytes = proptest::collection::vec(
        prop_oneof![
            6 => Just(b'a'),
            3 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..300,
    );
    proptest::collection::vec(
        prop_oneof![
            12 => line_bytes.prop_map(Op::Bytes),
            1 => (1usize..=70).prop_map(Op::Filler),
        ],
        0..12,
    )
}

/// The stream's complete lines as the framing must report them (`Some`
/// line, or `None` for one too long), and the unfinished line (its length;
/// its bytes while within the limit).
struct RefFraming {
    limit: usize,
    partial_len: usize,
    partial: Vec<u8>,
    expected: VecDeque<Option<Vec<u8>>>,
}

impl RefFraming {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.expected
                    .push_back(if self.partial_len + 1 > self.limit {
                        None
                    } else {
                        let l = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
                        Some(l.to_vec())
                    });
                self.partial.clear();
                self.partial_len = 0;
            } else {
                self.partial_len += 1;
                if self.partial_len <= self.limit {
                    self.partial.push(b);
                } else {
                    self.partial.clear();
                }
            }
        }
    }
}

fn command_verb() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(&b"MAIL FROM:<"[..]),
        Just(&b"RCPT TO:<"[..]),
        Just(&b"mail from:"[..]),
        Just(&b"EHLO "[..]),
        Just(&b"HELO "[..]),
        Just(&b"AUTH PLAIN "[..]),
        Just(&b"AUTH LOGIN"[..]),
        Just(&b"DATA"[..]),
        Just(&b"BDAT "[..]),
        Just(&b"RSET"[..]),
        Just(&b"NOOP "[..]),
        Just(&b"QUIT"[..]),
        Just(&b"VRFY "[..]),
        Just(&b"STARTTLS"[..]),
        Just(&b"EXPN "[..]),
        Just(&b""[..]),
    ]
    .prop_map(<[u8]>::to_vec)
}

fn atom() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_+-]{0,10}"
}

fn mailbox() -> impl Strategy<Value = (String, String)> {
    (
        proptest::collection::vec(atom(), 1..3).prop_map(|a| a.join(".")),
        proptest::collection::vec("[a-z0-9]{1,8}", 2..4).prop_map(|d| d.join(".")),
    )
}

proptest! {
    #![proptest_config(config(512))]

    /// LineBuffer over arbitrary chunking agrees with a reference framing of
    /// the whole stream: lines in order, `Ok` exactly for lines within the
    /// limit, `pending()` bounded by the limit, `Flood` exactly when the
    /// unfinished line passes MAX_DISCARD.
    #[test]
    fn framing_matches_reference(limit_sel in 0usize..4, small in 1usize..40, ops in ops()) {
        let limit = [MAX_COMMAND_LINE, MAX_AUTH_LINE, small, small * 8][limit_sel];
        let mut buf = LineBuffer::new();
        let mut r = RefFraming { limit, partial_len: 0, partial: Vec::new(), expected: VecDeque::new() };
        // One line buffer for the whole stream, as a session reuses it.
        let mut line = Vec::new();
        'ops: for op in ops {
            let bytes = match op {
                Op::Bytes(b) => b,
                Op::Filler(kib) => vec![b'x'; kib * 1024],
            };
            buf.extend(&bytes);
            r.push(&bytes);
            loop {
                match buf.next_line(limit, &mut line) {
                    Line::NeedMore => {
                        prop_assert!(r.expected.is_empty(), "a complete line was not delivered");
                        prop_assert!(r.partial_len <= MAX_DISCARD, "flood not reported");
                        if r.partial_len <= limit {
                            prop_assert_eq!(buf.pending(), &r.partial[..]);
                        } else {
                            prop_assert!(buf.pending().is_empty(), "over-long line kept");
                        }
                        break;
                    }
                    Line::Flood => {
                        prop_assert!(r.expected.is_empty());
                        prop_assert!(r.partial_len > MAX_DISCARD, "early flood");
                        break 'ops;
                    }
                    Line::TooLong => {
                        prop_assert_eq!(Some(&None), r.expected.front());
                        r.expected.pop_front();
                    }
                    Line::Ok => {
                        prop_assert_eq!(Some(&Some(line.clone())), r.expected.front());
                        r.expected.pop_front();
                        prop_assert!(line.len() < limit);
                        prop_assert!(!line.contains(&b'\n'));
                    }
                }
            }
        }
    }

    /// Arbitrary command lines never panic the parser; for MAIL and RCPT,
    /// either smtpbind refuses the line or the command it writes upstream
    /// reads back (by smtp-proto, an independent parser) as exactly the path
    /// and parameters it approved.
    #[test]
    fn command_parse_is_total_and_envelopes_agree(verb in command_verb(), rest in wire_bytes(120)) {
        let mut line = verb;
        line.extend_from_slice(&rest);
        if let Err(e) = oracles::envelope_agrees(&line) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Hostile paths built from the pieces of the reported injections
    /// (quotes, brackets, spaces, `@`, backslashes, NUL, TAB, DSN and AUTH
    /// parameters, 8-bit): refused, or relayed as exactly what was approved.
    #[test]
    fn hostile_envelopes_agree_with_an_independent_parser(
        rcpt in any::<bool>(),
        pieces in proptest::collection::vec(hostile_piece(), 0..14),
        quoted in proptest::collection::vec(hostile_piece(), 0..10),
        domain in prop_oneof![Just("example.net"), Just("acme.example"), Just("b\u{fc}cher.example")],
        params in proptest::collection::vec(hostile_piece(), 0..4),
    ) {
        let verb: &[u8] = if rcpt { b"RCPT TO:<" } else { b"MAIL FROM:<" };
        // Free-form: any sequence of the pieces.
        let mut line = verb.to_vec();
        pieces.iter().for_each(|p| line.extend_from_slice(p));
        if let Err(e) = oracles::envelope_agrees(&line) {
            return Err(TestCaseError::fail(e));
        }
        // Shaped like the reports: a quoted local part full of pieces, a
        // domain, then parameters.
        let mut line = verb.to_vec();
        line.push(b'"');
        quoted.iter().for_each(|p| line.extend_from_slice(p));
        line.extend_from_slice(b"\"@");
        line.extend_from_slice(domain.as_bytes());
        line.push(b'>');
        for p in &params {
            line.push(b' ');
            line.extend_from_slice(p);
        }
        if let Err(e) = oracles::envelope_agrees(&line) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Well-formed MAIL and RCPT commands are accepted and relayed as sent.
    #[test]
    fn command_parse_round_trips_addresses(
        (local, domain) in mailbox(),
        size in proptest::option::of(prop_oneof![1u64..=16, 17u64..100_000_000]),
        eight_bit in any::<bool>(),
        lower in any::<bool>(),
    ) {
        let address = format!("{local}@{domain}");
        let mut mail = format!("MAIL FROM:<{address}>");
        if let Some(n) = size {
            mail.push_str(&format!(" SIZE={n}"));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        let mail = if lower { mail.to_lowercase() } else { mail };
        let parsed = command::parse(mail.as_bytes());
        let Ok(Command::Mail(m)) = parsed else {
            return Err(TestCaseError::fail(format!("{mail:?} refused: {parsed:?}")));
        };
        prop_assert_eq!(m.to_command(true), format!("{mail}\r\n").replace("mail from:", "MAIL FROM:").replace("body=8bitmime", "BODY=8BITMIME").replace("size=", "SIZE="));
        let rcpt = format!("RCPT TO:<{address}>");
        let Ok(Command::Rcpt(r)) = command::parse(rcpt.as_bytes()) else {
            return Err(TestCaseError::fail(format!("{rcpt:?} refused")));
        };
        prop_assert_eq!(r.to_command(), format!("{rcpt}\r\n"));
    }
}

/// Pieces of hostile MAIL/RCPT arguments.
fn hostile_piece() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        Just(&b"\""[..]),
        Just(&b">"[..]),
        Just(&b"<"[..]),
        Just(&b" "[..]),
        Just(&b"@"[..]),
        Just(&b"\\"[..]),
        Just(&b"."[..]),
        Just(&b"x"[..]),
        Just(&b"evil.example"[..]),
        Just(&b"example.net"[..]),
        Just(&b"\x00"[..]),
        Just(&b"\t"[..]),
        Just(&b"\r"[..]),
        Just(&b"\x7f"[..]),
        Just(&b"\xc3\xa9"[..]),
        Just(&b"\xff"[..]),
        Just(&b"NOTIFY=NEVER"[..]),
        Just(&b"ORCPT=rfc822;z"[..]),
        Just(&b"AUTH=victim+40globex.example"[..]),
        Just(&b"ENVID=x"[..]),
        Just(&b"SIZE=10"[..]),
        Just(&b"BODY=8BITMIME"[..]),
        Just(&b"SMTPUTF8"[..]),
        Just(&b"@r.example,@s.example:"[..]),
        Just(&b":"[..]),
        Just(&b","[..]),
        Just(&b"="[..]),
    ]
}

// ---------------------------------------------------------------------------
// DATA decoder and dot-stuffer

/// Decodes `input` cut at `cuts`; returns (absolute end, output, violation),
/// or the first broken per-call property.
fn decode(
    mode: BareLineEndings,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Option<usize>, Vec<u8>, bool), TestCaseError> {
    let mut d = DataDecoder::new(mode);
    let mut out = Vec::new();
    let mut end = None;
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = &input[start..cut];
        let before = out.len();
        match d.feed(chunk, &mut out) {
            Feed::Ended { consumed } => {
                prop_assert!(consumed <= chunk.len());
                if end.is_none() {
                    end = Some(start + consumed);
                } else {
                    prop_assert_eq!(consumed, 0, "a second end of data");
                    prop_assert_eq!(out.len(), before, "content after the end");
                }
            }
            Feed::More => prop_assert!(end.is_none(), "More after Ended"),
        }
        start = cut;
    }
    if end.is_some() {
        let before = out.len();
        prop_assert_eq!(d.feed(b"x\r\n.\r\n", &mut out), Feed::Ended { consumed: 0 });
        prop_assert_eq!(out.len(), before, "content after the end");
    }
    Ok((end, out, d.saw_bare_line_ending()))
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary client bytes after 354, cut anywhere, in both modes: one end
    /// at most, exactly after the first real CRLF.CRLF; output independent
    /// of the cuts; Normalize output clean, Reject output a prefix of it; and
    /// the message re-stuffed for the upstream has exactly one end, its last.
    #[test]
    fn data_decoder_properties(input in wire_bytes(300), idx in proptest::collection::vec(any::<Index>(), 0..4)) {
        let end = data_end(&input);
        let cuts = cuts(input.len(), &idx);
        let mut outs = Vec::new();
        for mode in MODES {
            let (e, out, bare) = decode(mode, &input, &cuts)?;
            prop_assert_eq!(e, end, "{:?}", mode);
            let (_, whole, bare1) = decode(mode, &input, &[])?;
            prop_assert_eq!(&out, &whole, "output depends on the cuts");
            prop_assert_eq!(bare, bare1);
            outs.push((out, bare));
        }
        let (norm, bare_n) = &outs[0];
        let (rej, bare_r) = &outs[1];
        prop_assert_eq!(bare_n, bare_r);
        prop_assert!(!has_bare(norm), "bare line ending in {:?}", norm);
        prop_assert!(norm.starts_with(rej));
        if !bare_r {
            prop_assert_eq!(norm, rej);
        }
        if end.is_some() {
            prop_assert!(norm.is_empty() || norm.ends_with(b"\r\n"));
            let wire = stuff(norm, norm.len() / 2);
            prop_assert_eq!(data_end(&wire), Some(wire.len()), "a second upstream message");
        }
    }

    /// Round trip: DotStuffer output of arbitrary content (encoded in two
    /// pieces) plus its end decodes, cut anywhere, to the content normalised
    /// to CRLF lines, ending exactly at the end, with no violation.
    #[test]
    fn data_stuff_then_decode_round_trips(content in wire_bytes(300), a in any::<Index>(), b in any::<Index>()) {
        let wire = stuff(&content, a.index(content.len() + 1));
        prop_assert_eq!(&wire, &stuff(&content, b.index(content.len() + 1)));
        prop_assert!(!has_bare(&wire));
        let mut expected = normalize(&content);
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        for mode in MODES {
            let (e, out, bare) = decode(mode, &wire, &[b.index(wire.len() + 1)])?;
            prop_assert_eq!(e, Some(wire.len()));
            prop_assert_eq!(&out, &expected);
            prop_assert!(!bare);
        }
    }
}

// ---------------------------------------------------------------------------
// Upstream replies and EHLO capabilities

fn reply_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            6 => Just(&b"250-"[..]),
            6 => Just(&b"250 "[..]),
            2 => Just(&b"220 "[..]),
            1 => Just(&b"550-"[..]),
            6 => Just(&b"\r\n"[..]),
            2 => Just(&b"\n"[..]),
            3 => Just(&b"AUTH PLAIN"[..]),
            3 => Just(&b"ok"[..]),
            1 => Just(&b"\x1b[31m"[..]),
            1 => Just(&b"\xff\xfe"[..]),
            1 => Just(&b"1"[..]),
            1 => Just(&b"-"[..]),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn check_reply(buf: &[u8], reply: &Reply, used: usize) -> Result<(), TestCaseError> {
    prop_assert!(used > 0 && used <= buf.len());
    prop_assert_eq!(buf[used - 1], b'\n');
    prop_assert!((200..600).contains(&reply.code));
    prop_assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    for line in &reply.lines {
        prop_assert!(!line.chars().any(char::is_control), "{:?}", line);
    }
    let wire = reply.to_bytes();
    if wire
        .split_inclusive(|&b| b == b'\n')
        .all(|l| l.len() <= MAX_REPLY_LINE)
    {
        prop_assert_eq!(parse_reply(&wire), Ok(Some((reply.clone(), wire.len()))));
    }
    let _ = Capabilities::from_ehlo(reply);
    Ok(())
}

#[derive(Debug, Clone)]
struct Offer {
    starttls: bool,
    pipelining: bool,
    chunking: bool,
    eight_bit: bool,
    size: Option<u64>,
    auth_plain: bool,
    auth_login: bool,
    legacy_auth: bool,
    lowercase: bool,
}

fn offer() -> impl Strategy<Value = Offer> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of(0u64..100_000_000),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (starttls, pipelining, chunking, eight_bit),
                size,
                (auth_plain, auth_login, legacy_auth, lowercase),
            )| Offer {
                starttls,
                pipelining,
                chunking,
                eight_bit,
                size,
                auth_plain,
                auth_login,
                legacy_auth,
                lowercase,
            },
        )
}

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary upstream bytes: the parser never panics; a reply uses
    /// 0 < used <= len bytes ending in LF and is well formed; every shorter
    /// prefix needs more; reading by growing chunks with one parser (as
    /// `read_reply` does) gives the same answer; pipelined replies are read
    /// in turn.
    #[test]
    fn reply_parser_properties(buf in reply_bytes(), read in 1usize..64) {
        let whole = parse_reply(&buf);
        if let Ok(Some((reply, used))) = &whole {
            check_reply(&buf, reply, *used)?;
            for k in [0, used / 2, used - 1] {
                prop_assert_eq!(parse_reply(&buf[..k]), Ok(None), "prefix {}", k);
            }
        }
        let mut len = 0;
        loop {
            len = (len + read).min(buf.len());
            match parse_reply(&buf[..len]) {
                Ok(None) if len < buf.len() => continue,
                got => {
                    prop_assert_eq!(got, whole.clone(), "incremental read differs at {}", len);
                    break;
                }
            }
        }
        let mut rest = &buf[..];
        while let Ok(Some((reply, used))) = parse_reply(rest) {
            check_reply(rest, &reply, used)?;
            rest = &rest[used..];
        }
    }

    /// An EHLO reply built from a set of offers, through the wire and the
    /// parser, yields exactly those capabilities.
    #[test]
    fn ehlo_capabilities_round_trip(o in offer(), greeting in "[a-z]{1,10}\\.example") {
        let mut lines = vec![greeting];
        let case = |s: &str| if o.lowercase { s.to_lowercase() } else { s.to_string() };
        if o.starttls { lines.push(case("STARTTLS")); }
        if o.pipelining { lines.push(case("PIPELINING")); }
        if o.chunking { lines.push(case("CHUNKING")); }
        if o.eight_bit { lines.push(case("8BITMIME")); }
        if let Some(n) = o.size {
            lines.push(if n == 0 { case("SIZE") } else { format!("{} {n}", case("SIZE")) });
        }
        let mechs: Vec<&str> = [(o.auth_plain, "PLAIN"), (o.auth_login, "LOGIN")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .chain(["CRAM-MD5"])
            .collect();
        let sep = if o.legacy_auth { "=" } else { " " };
        lines.push(case(&format!("AUTH{sep}{}", mechs.join(" "))));
        lines.push("X-UNKNOWN whatever".into());
        let wire = Reply { code: 250, lines }.to_bytes();
        let (reply, used) = parse_reply(&wire).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        let caps = Capabilities::from_ehlo(&reply);
        prop_assert_eq!(caps, Capabilities {
            starttls: o.starttls,
            pipelining: o.pipelining,
            chunking: o.chunking,
            eight_bit_mime: o.eight_bit,
            size: o.size,
            auth_plain: o.auth_plain,
            auth_login: o.auth_login,
            auth_xoauth2: false,
            smtputf8: false,
        });
    }
}

// ---------------------------------------------------------------------------
// Policy loader

const SHIPPED: [&str; 6] = [
    include_str!("../policies/demo.yaml"),
    include_str!("../policies/sendgrid.yaml"),
    include_str!("../policies/mailgun.yaml"),
    include_str!("../policies/ses.yaml"),
    include_str!("../policies/microsoft365.yaml"),
    include_str!("../policies/google-workspace.yaml"),
];

fn yaml_token() -> impl Strategy<Value = String> {
    let keys = [
        "version",
        "tenant",
        "listen",
        "listen_insecure_ok",
        "admin",
        "upstream",
        "address",
        "tls",
        "insecure",
        "ca_file",
        "server_name",
        "ehlo_name",
        "connect_timeout",
        "reply_timeout",
        "reuse",
        "max_idle",
        "idle_timeout",
        "credential",
        "secret_dir",
        "mechanism",
        "pins",
        "client",
        "auth",
        "accept",
        "username",
        "password",
        "senders",
        "header_from",
        "recipients",
        "max_per_message",
        "domains",
        "limits",
        "max_message_bytes",
        "max_sessions",
        "command_timeout",
        "data_timeout",
        "data",
        "bare_lf",
        "shutdown",
        "drain",
        "oauth2",
        "flow",
        "token_url",
        "scope",
        "user",
        "refresh_before",
        "ses",
        "region",
        "rate",
        "messages_per_second",
        "burst",
        "max_wait",
        "",
    ];
    let values = [
        "1",
        "0",
        "-1",
        "99999999999999999999",
        "acme",
        "starttls",
        "implicit",
        "none",
        "auto",
        "plain",
        "login",
        "required",
        "mounted",
        "any",
        "enforce",
        "ignore",
        "reject",
        "normalize",
        "true",
        "false",
        "~",
        "null",
        "10s",
        "0ms",
        "25h",
        "5m",
        "1.5",
        "127.0.0.1:2525",
        "[::1]:25",
        "smtp.example.com:587",
        "a:b:c",
        "\"*@acme.example\"",
        "sha256:00",
        "\"\\n\"",
        "\"\\u001b\"",
        "'it''s'",
        "/etc/hostname",
        "/",
        "\"\"",
    ];
    let syntax = [
        ": ",
        "\n",
        "\n  ",
        "\n    ",
        "\n- ",
        "\n  - ",
        "- ",
        ", ",
        "[",
        "]",
        "{",
        "}",
        "&a ",
        "*a",
        "!!str ",
        "!",
        "? ",
        "|\n  x",
        ">",
        "---\n",
        "...\n",
        "# c",
        "'",
        "\"",
        "\t",
        "\r",
        "\r\n",
        "<<: *a",
        "%YAML 1.1\n",
        " ",
        "é",
        "\u{2028}",
        "\u{85}",
    ];
    prop_oneof![
        3 => proptest::sample::select(keys.to_vec()).prop_map(|k| format!("{k}: ")),
        2 => proptest::sample::select(values.to_vec()).prop_map(str::to_string),
        4 => proptest::sample::select(syntax.to_vec()).prop_map(str::to_string),
        1 => "[ -~]{0,6}",
    ]
}

fn yaml_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(yaml_token(), 0..40).prop_map(|t| t.concat()),
        // A shipped policy with a random edit: a span replaced by tokens.
        (
            proptest::sample::select(SHIPPED.to_vec()),
            any::<Index>(),
            0usize..40,
            proptest::collection::vec(yaml_token(), 0..4),
        )
            .prop_map(|(text, at, del, ins)| {
                let mut start = at.index(text.len() + 1);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + del).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}{}{}", &text[..start], ins.concat(), &text[end..])
            }),
    ]
}

/// A policy whose every value is drawn from valid and invalid choices (so the
/// validator, not only the YAML parser, reports). Passwords, and a string
/// where serde expects a number, carry a marker that no error may echo.
fn policy_from_choices() -> impl Strategy<Value = String> {
    fn pick(choices: &'static [&'static str]) -> proptest::sample::Select<&'static str> {
        proptest::sample::select(choices)
    }
    const WEIRD: &[&str] = &[
        "\"a\\nb\"",
        "\"x\\u001by\"",
        "\"\\r\"",
        "\"\"",
        "~",
        "[]",
        "{}",
        "7",
    ];
    let scalar = |valid: &'static [&'static str]| prop_oneof![3 => pick(valid), 1 => pick(WEIRD)];
    (
        (
            scalar(&["1", "2", "\"Xyzzy42\""]),
            scalar(&["acme", "Acme!", "a.b-c_d"]),
            scalar(&["smtp.example.com:587", "[::1]:25", "host", "a b:25", "\"h\\n:25\""]),
            scalar(&["starttls", "implicit", "none", "tls"]),
            scalar(&["smtp.example.com", "-bad-", "\"a\\tb\""]),
        ),
        (
            scalar(&["10s", "0s", "25h", "5x"]),
            scalar(&[
                "\"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
                "\"sha256:00\"",
                "\"md5:x\"",
            ]),
            pick(&[
                "mounted",
                "any",
                "Xyzzy42",
                "\"sha256:Xyzzy42\"",
                "\"Xyzzy42\\nXyzzy42\"",
                "[ Xyzzy42 ]",
                "{ Xyzzy42: 1 }",
                "!!binary Xyzzy42",
            ]),
            scalar(&["\"*@acme.example\"", "\"<>\"", "\"*@*\"", "\"a@@b\"", "\"*@a\\nb\""]),
            scalar(&["reject", "normalize", "lf"]),
        ),
    )
        .prop_map(|((version, tenant, address, tls, server), (timeout, pin, password, sender, bare))| {
            format!(
                "version: {version}\ntenant: {tenant}\nupstream:\n  address: {address}\n  tls: {tls}\n  \
                 server_name: {server}\n  connect_timeout: {timeout}\ncredential:\n  \
                 secret_dir: /var/run/secrets/smtpbind\n  pins: [ {pin} ]\nclient:\n  accept:\n    \
                 - username: apikey\n      password: {password}\nsenders: [ {sender} ]\n\
                 data:\n  bare_lf: {bare}\n"
            )
        })
}

fn check_policy(text: &str) -> Result<(), TestCaseError> {
    let file = Path::new("prop.yaml");
    let Err(errors) = smtpbind::policy::parse(text, file) else {
        return Ok(());
    };
    prop_assert!(!errors.0.is_empty());
    let breaks = text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    for e in &errors.0 {
        prop_assert_eq!(&e.file, file);
        prop_assert!(e.line >= 1 && e.col >= 1, "{}", e);
        // libyaml places an error at the end of the input on the line after
        // the last one.
        prop_assert!(e.line <= breaks + 2, "{}", e);
        prop_assert!(!e.key.is_empty(), "{}", e);
        let shown = e.to_string();
        prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        prop_assert!(
            !shown.contains("Xyzzy42"),
            "a string value echoed: {}",
            shown
        );
    }
    prop_assert!(errors
        .0
        .windows(2)
        .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)));
    Ok(())
}

#[test]
fn shipped_policies_parse() {
    for text in SHIPPED {
        // `ca_file`/`secret_dir` are not checked against the filesystem
        // beyond `ca_file`, which the shipped policies do not set.
        if let Err(e) = smtpbind::policy::parse(text, Path::new("shipped.yaml")) {
            panic!("{e}");
        }
    }
}

proptest! {
    #![proptest_config(config(768))]

    /// YAML-ish text never panics the loader; every error is at a 1-based
    /// position within the text, names a key, stays on one line, in order.
    #[test]
    fn policy_parse_errors_are_well_formed(text in yaml_ish()) {
        check_policy(&text)?;
    }

    /// The same for policies whose values are valid or not (validator errors).
    #[test]
    fn policy_validation_errors_are_well_formed(text in policy_from_choices()) {
        check_policy(&text)?;
    }
}

// ---------------------------------------------------------------------------
// Header gate and header From

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(&b"From: "[..]),
            2 => Just(&b"Subject: x"[..]),
            6 => Just(&b"\r\n"[..]),
            1 => Just(&b"\n"[..]),
            2 => Just(&b" "[..]),
            3 => Just(&b"a@x.example"[..]),
            2 => Just(&b"<b@Y.Example>"[..]),
            1 => Just(&b"\""[..]),
            1 => Just(&b"("[..]),
            1 => Just(&b")"[..]),
            1 => Just(&b","[..]),
            1 => Just(&b":"[..]),
            1 => Just(&b";"[..]),
            1 => Just(&b"=?UTF-8?B?SsO2cmc=?="[..]),
            1 => Just(&b"\x00\xff"[..]),
        ],
        0..30,
    )
    .prop_map(|p| p.concat())
}

fn check_from(headers: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(addresses) = header_from_addresses(headers) {
        prop_assert!(!addresses.is_empty());
        for a in &addresses {
            let (_, domain) = a.rsplit_once('@').expect("an address has an @");
            prop_assert!(!domain.is_empty(), "{:?}", a);
            prop_assert_eq!(domain.to_string(), domain.to_lowercase());
            prop_assert!(!a.chars().any(char::is_control), "{:?}", a);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    /// HeaderGate agrees with a reference whatever the chunking: Complete
    /// exactly when the header block (leading CRLF, or up to the first
    /// CRLF CRLF) is within the limit, TooLarge when it or all of an
    /// unterminated header section is past it; the buffer is a prefix of the
    /// content; the answer stays. header_from_addresses never panics and
    /// returns well-formed addresses.
    #[test]
    fn header_gate_matches_reference(content in header_bytes(), limit in 1usize..200, chunk in 1usize..64) {
        let end = header_end(&content);
        let expected = match end {
            Some(e) if e <= limit => Gate::Complete,
            Some(_) => Gate::TooLarge,
            None if content.len() > limit => Gate::TooLarge,
            None => Gate::NeedMore,
        };
        let mut gate = HeaderGate::new(limit);
        let mut state = Gate::NeedMore;
        for piece in content.chunks(chunk) {
            state = gate.push(piece);
            prop_assert!(content.starts_with(gate.buffered()));
        }
        prop_assert_eq!(state, expected);
        let finished = gate.finish();
        match expected {
            Gate::Complete => prop_assert_eq!(gate.headers(), &content[..end.unwrap()]),
            Gate::TooLarge => {
                prop_assert_eq!(finished, Gate::TooLarge);
                prop_assert!(gate.headers().is_empty());
            }
            Gate::NeedMore => {
                prop_assert_eq!(finished, Gate::Complete);
                prop_assert_eq!(gate.headers(), &content[..]);
            }
        }
        prop_assert_eq!(gate.push(b"\r\n\r\n"), finished);
        check_from(gate.headers())?;
        check_from(&content)?;
    }

    /// A header block with one plain `From: Name <local@Domain>` yields that
    /// one address, domain lowercased, wherever the field is; a second From
    /// field makes it `Multiple`.
    #[test]
    fn header_from_finds_the_one_from(
        (local, domain) in mailbox(),
        upper in any::<bool>(),
        name in "[A-Za-z]{0,8}",
        before in proptest::collection::vec("[A-Z][a-z]{1,6}: [a-z ]{0,10}", 0..3),
        after in proptest::collection::vec("[A-Z][a-z]{1,6}: [a-z ]{0,10}", 0..3),
    ) {
        // Extra fields must not be From fields themselves.
        prop_assume!(before.iter().chain(&after).all(|f| !f.to_ascii_lowercase().starts_with("from:")));
        let shown_domain = if upper { domain.to_uppercase() } else { domain.clone() };
        let mut h = String::new();
        for f in &before {
            h.push_str(f);
            h.push_str("\r\n");
        }
        h.push_str(&format!("From: {name} <{local}@{shown_domain}>\r\n"));
        for f in &after {
            h.push_str(f);
            h.push_str("\r\n");
        }
        let block = format!("{h}\r\n");
        prop_assert_eq!(
            header_from_addresses(block.as_bytes()),
            Ok(vec![format!("{local}@{domain}")])
        );
        let twice = format!("{h}from: other@z.example\r\n\r\n");
        prop_assert_eq!(
            header_from_addresses(twice.as_bytes()),
            Err(smtpbind::smtp::header::FromError::Multiple)
        );
    }
}

/// MAIL parameter keywords are matched ASCII case-insensitively and
/// exactly: an attacker's spellings — mixed case, a keyword with a suffix
/// or a prefix, a Unicode letter that folds to an ASCII one (`ſ` U+017F,
/// `İ` U+0130), a keyword split by a space — are either refused or written
/// upstream as the one parameter approved, which smtp-proto reads back.
#[test]
fn mail_parameter_keywords_mixed_case_and_near_misses() {
    use smtpbind::smtp::command::{self, Command};
    let accepted = [
        (
            "MAIL FROM:<a@acme.example> SiZe=10",
            "MAIL FROM:<a@acme.example> SIZE=10\r\n",
        ),
        (
            "MAIL FROM:<a@acme.example> bOdY=8bItMiMe",
            "MAIL FROM:<a@acme.example> BODY=8BITMIME\r\n",
        ),
        (
            "MAIL FROM:<a@acme.example> sMtPuTf8",
            "MAIL FROM:<a@acme.example> SMTPUTF8\r\n",
        ),
    ];
    for (line, wire) in accepted {
        let Ok(Command::Mail(m)) = command::parse(line.as_bytes()) else {
            panic!("{line:?} refused");
        };
        assert_eq!(m.to_command(true), wire, "{line:?}");
        oracles::envelope_agrees(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
    for line in [
        "MAIL FROM:<a@acme.example> SIZEX=10",
        "MAIL FROM:<a@acme.example> XSIZE=10",
        "MAIL FROM:<a@acme.example> SMTPUTF8X",
        "MAIL FROM:<a@acme.example> SMTPUTF8=YES",
        "MAIL FROM:<a@acme.example> BODY=8BITMIMEX",
        "MAIL FROM:<a@acme.example> \u{17f}IZE=10",
        "MAIL FROM:<a@acme.example> SIZE=10 \u{17f}MTPUTF8",
        "MAIL FROM:<a@acme.example> BODY=8B\u{130}TMIME",
        "MAIL FROM:<a@acme.example> SI ZE=10",
        "MAIL FROM:<a@acme.example> SIZE=10 size=20",
    ] {
        assert!(
            !matches!(command::parse(line.as_bytes()), Ok(Command::Mail(_))),
            "{line:?} must be refused"
        );
        oracles::envelope_agrees(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
}
