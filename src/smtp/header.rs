//! Header block gate and header-From extraction.
//!
//! With `header_from: enforce` the header `From` must be checked before the
//! upstream is allowed to see the end of the message. DATA is otherwise
//! streamed, so [`HeaderGate`] holds back only the decoded content up to the
//! end of the header block (the first empty line), bounded by a byte limit so
//! that a client cannot make smtpbind buffer a whole message by never sending
//! the blank line.
//!
//! [`header_from_addresses`] returns every mailbox address of the single From
//! field. Parsing is done by `mail-parser` (display names, quoted strings,
//! comments, folding, RFC 2047 encoded words, groups), but because a sender
//! check is only as good as the agreement between our reading of the headers
//! and the reading of whoever displays the message, it fails closed:
//!
//! * From fields are counted independently (a line, not a continuation line,
//!   whose field name before `:` is `from` case-insensitively, trailing WSP
//!   allowed) and that count must agree with mail-parser's, field for field
//!   (same offsets); two From fields are [`FromError::Multiple`], any
//!   disagreement is [`FromError::Unparseable`].
//! * Every mailbox must have an address of the form `local@domain` with a
//!   plausible dot-atom or quoted local part and a host name or address
//!   literal domain; anything mail-parser salvaged from garbage (two `@`,
//!   spaces, empty parts, `<>`) is [`FromError::Unparseable`]. An empty group
//!   or `From: <>` yields no address and is also unparseable.
//!
//! Domains are returned lowercased; local parts are kept as written.

use mail_parser::{Addr, Address, HeaderName, MessageParser};
use std::borrow::Cow;

mod gate;
mod message_id;
pub use gate::{Gate, HeaderGate};
pub use message_id::{parse_id, MessageIdScan, MAX_ID as MAX_MESSAGE_ID};

/// Why the header From could not be turned into addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromError {
    /// No From field.
    Missing,
    /// More than one From field.
    Multiple,
    /// A From field without a usable mailbox address.
    Unparseable,
}

impl std::fmt::Display for FromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FromError::Missing => "no From header",
            FromError::Multiple => "more than one From header",
            FromError::Unparseable => "From header has no valid mailbox",
        })
    }
}

impl std::error::Error for FromError {}

/// A From field found by our own line scan.
struct RawField {
    /// Offset of the field name's first byte.
    start: usize,
    /// The value: after the colon up to the end of the field (folded lines included).
    value: std::ops::Range<usize>,
}

/// Find every field named one of `names`: a line that does not start with
/// WSP whose field name (before `:`, trailing WSP ignored) is that name,
/// case-insensitively. One pass over the section for all the names; the
/// fields of `names[i]` are in the `i`th list.
fn scan_fields<const N: usize>(headers: &[u8], names: [&[u8]; N]) -> [Vec<RawField>; N] {
    let mut fields: [Vec<RawField>; N] = std::array::from_fn(|_| Vec::new());
    let mut pos = 0;
    // The list whose last field is still collecting continuation lines.
    let mut open: Option<usize> = None;
    while pos < headers.len() {
        let line_end =
            memchr::memchr(b'\n', &headers[pos..]).map_or(headers.len(), |k| pos + k + 1);
        let line = &headers[pos..line_end];
        let is_continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if is_continuation {
            if let Some(f) = open.and_then(|i| fields[i].last_mut()) {
                f.value.end = line_end;
            }
        } else {
            open = None;
            if let Some(colon) = memchr::memchr(b':', line) {
                let field = trim_wsp_end(&line[..colon]);
                if let Some(i) = names.iter().position(|n| field.eq_ignore_ascii_case(n)) {
                    fields[i].push(RawField {
                        start: pos,
                        value: pos + colon + 1..line_end,
                    });
                    open = Some(i);
                }
            }
        }
        pos = line_end;
    }
    fields
}

fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// All mailbox addresses of the single From header (groups flattened),
/// lowercased domain.
pub fn header_from_addresses(headers: &[u8]) -> Result<Vec<String>, FromError> {
    Parsed::new(headers).from()
}

/// The sender fields, in the order of [`Parsed::scans`].
const SENDER_FIELDS: [&[u8]; 4] = [b"from", b"sender", b"resent-from", b"resent-sender"];

/// Every address that names the sender of the message: the one `From`
/// (required), at most one `Sender`, and every `Resent-From` and
/// `Resent-Sender` (one per resent block). `header_from: enforce` checks
/// each against `senders`. The header section is parsed once.
pub fn header_sender_addresses(headers: &[u8]) -> Result<Vec<String>, FromError> {
    let mut out = Vec::new();
    for_each_sender_address(headers, &mut String::new(), |a| out.push(a.to_string()))?;
    Ok(out)
}

/// [`header_sender_addresses`] without collecting them: each address, in
/// the same order, is written into `scratch` (reused: no allocation per
/// address) and passed to `each`. `Ok(n)`: the section read, `n` addresses
/// (never 0); on an error `each` may already have seen some addresses, and
/// none of them counts.
pub fn for_each_sender_address(
    headers: &[u8],
    scratch: &mut String,
    mut each: impl FnMut(&str),
) -> Result<usize, FromError> {
    let parsed = Parsed::new(headers);
    let each: &mut dyn FnMut(&str) = &mut each;
    let mut n = parsed.visit_from(scratch, each)?;
    n += parsed.visit(1, HeaderName::Sender, true, scratch, each)?;
    n += parsed.visit(2, HeaderName::ResentFrom, false, scratch, each)?;
    n += parsed.visit(3, HeaderName::ResentSender, false, scratch, each)?;
    Ok(n)
}

/// mail-parser configured for what the check reads: the four sender
/// fields as addresses, every other field skipped (not decoded), so a
/// message's Received, DKIM and other fields cost only their scan.
fn sender_parser() -> &'static MessageParser {
    static PARSER: std::sync::OnceLock<MessageParser> = std::sync::OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .header_address(HeaderName::From)
            .header_address(HeaderName::Sender)
            .header_address(HeaderName::ResentFrom)
            .header_address(HeaderName::ResentSender)
            .default_header_ignore()
    })
}

/// A header section read both ways: mail-parser's fields, and our own scan
/// (per field name) that its reading must agree with.
struct Parsed<'a> {
    headers: Cow<'a, [u8]>,
    message: Option<mail_parser::Message<'a>>,
    /// Our own scan: the fields named each of [`SENDER_FIELDS`].
    scans: [Vec<RawField>; 4],
}

/// Whether every line of the header section (up to the empty line, or all
/// of `headers` when there is none) is a header field (`ftext+ WSP* ":"`)
/// or a continuation (WSP first) of one. Receivers disagree on where a
/// section with any other line ends, so such a message is refused.
pub fn header_section_wellformed(headers: &[u8]) -> bool {
    let mut first = true;
    for line in headers.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        if content.is_empty() {
            return true; // the end of the header section
        }
        let ok = match content[0] {
            b' ' | b'\t' => !first,
            _ => match memchr::memchr(b':', content) {
                Some(colon) => {
                    let name = trim_wsp_end(&content[..colon]);
                    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
                }
                None => false,
            },
        };
        if !ok {
            return false;
        }
        first = false;
    }
    true
}

impl<'a> Parsed<'a> {
    fn new(headers: &'a [u8]) -> Parsed<'a> {
        // mail-parser drops the value of a last field that has no line
        // ending; the decoder's content always ends in CRLF, but be
        // independent of that.
        let headers: Cow<'a, [u8]> = if headers.is_empty() || headers.ends_with(b"\n") {
            Cow::Borrowed(headers)
        } else {
            let mut v = Vec::with_capacity(headers.len() + 2);
            v.extend_from_slice(headers);
            v.extend_from_slice(b"\r\n");
            Cow::Owned(v)
        };
        let message = match &headers {
            Cow::Borrowed(h) => sender_parser().parse_headers(*h),
            Cow::Owned(h) => sender_parser()
                .parse_headers(h.as_slice())
                .map(mail_parser::Message::into_owned),
        };
        let scans = scan_fields(&headers, SENDER_FIELDS);
        Parsed {
            headers,
            message,
            scans,
        }
    }

    /// The addresses of the one From field (required).
    fn from(&self) -> Result<Vec<String>, FromError> {
        let mut out = Vec::new();
        self.visit_from(&mut String::new(), &mut |a| out.push(a.to_string()))?;
        Ok(out)
    }

    /// [`Parsed::from`], each address passed to `each` (see [`Parsed::visit`]).
    fn visit_from(
        &self,
        scratch: &mut String,
        each: &mut dyn FnMut(&str),
    ) -> Result<usize, FromError> {
        match self.visit(0, HeaderName::From, true, scratch, each)? {
            0 => Err(FromError::Missing),
            n => Ok(n),
        }
    }

    /// The addresses of every field named `SENDER_FIELDS[name]`
    /// (mail-parser's `hname`), cross-checked with our own scan; `single`:
    /// more than one such field is [`FromError::Multiple`]. No field: no
    /// address. Each address is written into `scratch` and passed to
    /// `each`; returns how many.
    fn visit(
        &self,
        name: usize,
        hname: HeaderName<'static>,
        single: bool,
        scratch: &mut String,
        each: &mut dyn FnMut(&str),
    ) -> Result<usize, FromError> {
        let headers: &[u8] = &self.headers;
        let ours = self.scans.get(name).map_or(&[][..], Vec::as_slice);
        // mail-parser's fields of that name, in order (walked twice, not collected).
        let theirs = || {
            self.message
                .iter()
                .flat_map(|m| m.headers().iter())
                .filter(|h| h.name == hname)
        };
        let theirs_len = theirs().count();

        if single && (ours.len() > 1 || theirs_len > 1) {
            return Err(FromError::Multiple);
        }
        if ours.len() != theirs_len {
            return Err(FromError::Unparseable);
        }
        let mut n = 0;
        for (field, header) in ours.iter().zip(theirs()) {
            // Same field, and mail-parser's reading did not run past its end.
            let same_start = usize::try_from(header.offset_field).ok() == Some(field.start);
            let within = usize::try_from(header.offset_end).is_ok_and(|end| end <= field.value.end);
            if !same_start || !within {
                return Err(FromError::Unparseable);
            }
            let address = header.value.as_address().ok_or(FromError::Unparseable)?;
            let raw_value = headers.get(field.value.clone()).unwrap_or(&[]);
            let before = n;
            let mut push = |addr: &Addr<'_>| -> Result<(), FromError> {
                if !mailbox(addr, raw_value, scratch) {
                    return Err(FromError::Unparseable);
                }
                each(scratch);
                n += 1;
                Ok(())
            };
            match address {
                Address::List(list) => list.iter().try_for_each(&mut push)?,
                Address::Group(groups) => groups
                    .iter()
                    .flat_map(|g| g.addresses.iter())
                    .try_for_each(&mut push)?,
            }
            if n == before {
                return Err(FromError::Unparseable);
            }
        }
        Ok(n)
    }
}

/// The field value with line breaks removed (RFC 5322 §2.2.3 unfolding).
fn unfold(value: &[u8]) -> String {
    let bytes: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Validate one parsed mailbox and normalise its domain into `out`
/// (replacing its contents); false: not a usable mailbox. `raw_value`: the
/// field's value as it is in the header section (folded).
fn mailbox(addr: &Addr<'_>, raw_value: &[u8], out: &mut String) -> bool {
    let Some(address) = addr.address.as_deref().map(str::trim) else {
        return false;
    };
    if address.starts_with('@') {
        // mail-parser reads a bare quoted local part (`"john doe"@x.example`)
        // as display name + "@domain". Accept it only if exactly that text is
        // in the field; otherwise (e.g. an obsolete source route) fail closed.
        let Some(name) = addr.name.as_deref() else {
            return false;
        };
        let candidate = format!("\"{}\"{}", quote_escape(name), address);
        if !unfold(raw_value).contains(&candidate) {
            return false;
        }
        return normalize_address(&candidate, out).is_some();
    }
    normalize_address(address, out).is_some()
}

fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `local@domain` with a dot-atom or quoted-string local part and a host name
/// or address-literal domain; written into `out` (replacing its contents)
/// with the domain lowercased (`None`: not such an address).
fn normalize_address(address: &str, out: &mut String) -> Option<()> {
    let (local, domain) = if let Some(rest) = address.strip_prefix('"') {
        let close = closing_quote(rest)?;
        let quoted = rest.get(..close)?;
        if quoted.chars().any(|c| c.is_control()) {
            return None;
        }
        let domain = rest.get(close + 1..)?.strip_prefix('@')?;
        (address.get(..close + 2)?, domain)
    } else {
        let (local, domain) = address.split_once('@')?;
        if !valid_dot_atom(local, |c| {
            !matches!(
                c,
                '(' | ')' | '<' | '>' | '[' | ']' | ':' | ';' | '@' | '\\' | ',' | '"'
            )
        }) {
            return None;
        }
        (local, domain)
    };
    if !valid_domain(domain) {
        return None;
    }
    out.clear();
    out.push_str(local);
    out.push('@');
    if domain.is_ascii() {
        let start = out.len();
        out.push_str(domain);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&domain.to_lowercase());
    }
    Some(())
}

/// Index in `s` (the text after an opening quote) of the closing quote.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Non-empty dot-separated atoms of printable characters accepted by `ok`.
fn valid_dot_atom(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && ok(c))
        })
}

fn valid_domain(domain: &str) -> bool {
    if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ':');
    }
    valid_dot_atom(domain, |c| c.is_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(h: &str) -> Result<Vec<String>, FromError> {
        header_from_addresses(h.as_bytes())
    }

    fn one(h: &str) -> String {
        match from(h) {
            Ok(v) if v.len() == 1 => v[0].clone(),
            other => panic!("{h:?} => {other:?}"),
        }
    }

    #[test]
    fn real_world_from_headers() {
        let cases: &[(&str, &[&str])] = &[
            ("From: John Doe <John.Doe@X.Example>\r\nTo: a@b.example\r\n\r\n", &["John.Doe@x.example"]),
            ("From: \"Doe, John\" <john@x.example>\r\n\r\n", &["john@x.example"]),
            ("From: john@x.example (John)\r\n\r\n", &["john@x.example"]),
            ("From: \"a <b@evil.example>, c\" <real@x.example>\r\n\r\n", &["real@x.example"]),
            ("From: John\r\n <john@x.example>\r\n\r\n", &["john@x.example"]),
            ("From:\r\n\t\"Doe, John\"\r\n <john@x.example>\r\n\r\n", &["john@x.example"]),
            ("From: =?UTF-8?B?SsO2cmc=?= <jorg@x.example>\r\n\r\n", &["jorg@x.example"]),
            ("From: =?utf-8?q?evil=40y.example?= <a@x.example>\r\n\r\n", &["a@x.example"]),
            ("From: Team: a@x.example, B <b@Y.example>;\r\n\r\n", &["a@x.example", "b@y.example"]),
            ("From: \"Smith, J\" <j@x.example>, \"O'Brien\" <o@y.example>\r\n\r\n", &["j@x.example", "o@y.example"]),
            (
                "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com>\r\n\r\n",
                &["MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com"],
            ),
            ("MIME-Version: 1.0\r\nFrom: Gmail User <user@gmail.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", &["user@gmail.com"]),
            ("from:a@X.EXAMPLE\r\n\r\n", &["a@x.example"]),
            ("FROM : a@x.example\r\n\r\n", &["a@x.example"]),
            ("From: a@x.example (comment <evil@y.example>)\r\n\r\n", &["a@x.example"]),
            ("From: Doe <\"john doe\"@x.example>\r\n\r\n", &["\"john doe\"@x.example"]),
            ("From: \"john doe\"@X.example\r\n\r\n", &["\"john doe\"@x.example"]),
            ("From: a@[192.0.2.1]\r\n\r\n", &["a@[192.0.2.1]"]),
            ("From: jörg@BÜCHER.example\r\n\r\n", &["jörg@bücher.example"]),
            // No blank line: the message ended inside the headers.
            ("Subject: x\r\nFrom: <a@x.example>", &["a@x.example"]),
            ("Subject: x\r\nFrom: a@x.example", &["a@x.example"]),
            ("From: a@x.example\r\n\t(c)\r\nTo: b@y.example\r\n\r\n", &["a@x.example"]),
            // Resent-From and a From-like body line do not count.
            ("Resent-From: r@z.example\r\nFrom: a@x.example\r\nX-From: q@z.example\r\n\r\n", &["a@x.example"]),
        ];
        for (h, want) in cases {
            let got = from(h).unwrap_or_else(|e| panic!("{h:?} => {e:?}"));
            assert_eq!(&got, want, "{h:?}");
        }
    }

    #[test]
    fn missing_multiple_unparseable() {
        assert_eq!(
            from("Subject: x\r\nTo: a@x.example\r\n\r\n"),
            Err(FromError::Missing)
        );
        assert_eq!(from(""), Err(FromError::Missing));
        assert_eq!(from("\r\n"), Err(FromError::Missing));
        assert_eq!(
            from("From: a@x.example\r\nFrom: b@y.example\r\n\r\n"),
            Err(FromError::Multiple)
        );
        assert_eq!(
            from("From: a@x.example\r\nfrom : b@y.example\r\n\r\n"),
            Err(FromError::Multiple)
        );
        assert_eq!(from("From: <>\r\n\r\n"), Err(FromError::Unparseable));
        assert_eq!(from("From: x <>\r\n\r\n"), Err(FromError::Unparseable));
        assert_eq!(from("From: \r\n\r\n"), Err(FromError::Unparseable));
        assert_eq!(from("From: john\r\n\r\n"), Err(FromError::Unparseable));
        assert_eq!(
            from("From: undisclosed-recipients:;\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(
            from("From: a@b@c.example\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(
            from("From: foo bar@x.example\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(
            from("From: <a@x.example> junk <b@y.example>\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(
            from("From: @x.example\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(from("From: a@\r\n\r\n"), Err(FromError::Unparseable));
        assert_eq!(
            from("From: a@x.example, john\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        // mail-parser reads "Fr om" as From; we do not: disagreement fails closed.
        assert_eq!(
            from("Fr om: a@x.example\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        assert_eq!(
            from("Fr om: a@x.example\r\nFrom: b@y.example\r\n\r\n"),
            Err(FromError::Multiple)
        );
        // A From hidden in a continuation line is not a From field.
        assert_eq!(
            from("X-A: y\r\n From: evil@y.example\r\n\r\n"),
            Err(FromError::Missing)
        );
        assert_eq!(
            from(" From: evil@y.example\r\n\r\n"),
            Err(FromError::Unparseable)
        );
        // Unbalanced syntax never borrows an address from the next field.
        for h in [
            "From: \"x\r\nSubject: <evil@y.example>\r\n\r\n",
            "From: real@forbidden.example \"\r\nX: <allowed@ok.example>\r\n\r\n",
            "From: (x\r\nX: <allowed@ok.example>\r\n\r\n",
            "From: <x\r\nX: allowed@ok.example>\r\n\r\n",
            "From: G:\r\nX: allowed@ok.example;\r\n\r\n",
        ] {
            assert_eq!(from(h), Err(FromError::Unparseable), "{h:?}");
        }
    }

    #[test]
    fn domain_lowercased_local_kept() {
        assert_eq!(
            one("From: MixedCase@MiXeD.Example\r\n\r\n"),
            "MixedCase@mixed.example"
        );
    }

    #[test]
    fn error_display() {
        assert_eq!(FromError::Missing.to_string(), "no From header");
    }

    #[test]
    fn gate_simple() {
        let mut g = HeaderGate::new(1024);
        assert_eq!(
            g.push(b"Subject: x\r\nFrom: a@x.example\r\n"),
            Gate::NeedMore
        );
        assert_eq!(g.headers(), b"");
        assert_eq!(g.push(b"\r\nbody\r\n"), Gate::Complete);
        assert_eq!(g.headers(), b"Subject: x\r\nFrom: a@x.example\r\n\r\n");
        assert_eq!(
            g.buffered(),
            b"Subject: x\r\nFrom: a@x.example\r\n\r\nbody\r\n"
        );
        // After completion nothing more is buffered.
        assert_eq!(g.push(b"more"), Gate::Complete);
        assert_eq!(
            g.into_buffer(),
            b"Subject: x\r\nFrom: a@x.example\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn gate_every_split() {
        let msg: &[u8] = b"From: a@x.example\r\nSubject: y\r\n\r\nbody\r\n\r\nmore\r\n";
        let hdr_len = 33;
        assert_eq!(&msg[hdr_len - 4..hdr_len], b"\r\n\r\n");
        for a in 0..=msg.len() {
            for b in a..=msg.len() {
                let mut g = HeaderGate::new(1024);
                let mut state = Gate::NeedMore;
                for chunk in [&msg[..a], &msg[a..b], &msg[b..]] {
                    state = g.push(chunk);
                }
                assert_eq!(state, Gate::Complete, "{a},{b}");
                assert_eq!(g.headers(), &msg[..hdr_len], "{a},{b}");
                assert!(msg.starts_with(g.buffered()));
            }
        }
    }

    #[test]
    fn gate_empty_header_block() {
        let mut g = HeaderGate::new(100);
        assert_eq!(g.push(b"\r"), Gate::NeedMore);
        assert_eq!(g.push(b"\nbody"), Gate::Complete);
        assert_eq!(g.headers(), b"\r\n");
        assert_eq!(header_from_addresses(g.headers()), Err(FromError::Missing));
    }

    #[test]
    fn gate_finish_without_blank_line() {
        let mut g = HeaderGate::new(100);
        assert_eq!(g.push(b"From: a@x.example\r\n"), Gate::NeedMore);
        assert_eq!(g.finish(), Gate::Complete);
        assert_eq!(g.headers(), b"From: a@x.example\r\n");
        assert_eq!(
            header_from_addresses(g.headers()),
            Ok(vec!["a@x.example".to_owned()])
        );
        let mut g = HeaderGate::new(100);
        assert_eq!(g.finish(), Gate::Complete);
        assert_eq!(g.headers(), b"");
    }

    #[test]
    fn gate_limit() {
        // Exactly at the limit is fine.
        let msg = b"A: b\r\n\r\n";
        let mut g = HeaderGate::new(msg.len());
        assert_eq!(g.push(msg), Gate::Complete);
        let mut g = HeaderGate::new(msg.len() - 1);
        assert_eq!(g.push(msg), Gate::TooLarge);
        assert_eq!(g.headers(), b"");
        // Never-ending headers.
        let mut g = HeaderGate::new(64);
        let mut state = Gate::NeedMore;
        for _ in 0..100 {
            state = g.push(b"X-Filler: aaaaaaaa\r\n");
            if state != Gate::NeedMore {
                break;
            }
        }
        assert_eq!(state, Gate::TooLarge);
        assert!(g.buffered().len() <= 64 + 20);
        assert_eq!(g.push(b"\r\n"), Gate::TooLarge);
        assert_eq!(g.finish(), Gate::TooLarge);
        // Ended while too large.
        let mut g = HeaderGate::new(4);
        assert_eq!(g.push(b"ab"), Gate::NeedMore);
        assert_eq!(g.push(b"cdef"), Gate::TooLarge);
        let mut g = HeaderGate::new(4);
        assert_eq!(g.push(b"abcd"), Gate::NeedMore);
        assert_eq!(g.finish(), Gate::Complete);
    }

    #[test]
    fn visiting_the_sender_addresses_gives_the_collected_list() {
        let sections = [
            "From: A <a@Acme.Example>, b@x.example\r\nSender: s@ACME.example\r\n\r\n",
            "From: j@B\u{dc}CHER.example\r\nResent-From: r@r.example\r\nResent-Sender: q@q.example\r\n\r\n",
            "From: \"john doe\"@x.example\r\n\r\n",
            "From: a@x.example\r\nFrom: b@x.example\r\n\r\n",
            "From: <>\r\n\r\n",
            "Subject: none\r\n\r\n",
            "From: a@x.example\r\nSender: bad@@x\r\n\r\n",
        ];
        let mut scratch = String::from("left over");
        for h in sections {
            let mut seen = Vec::new();
            let visited = for_each_sender_address(h.as_bytes(), &mut scratch, |a| {
                seen.push(a.to_string());
            });
            match header_sender_addresses(h.as_bytes()) {
                Ok(list) => {
                    assert_eq!(visited, Ok(list.len()), "{h}");
                    assert_eq!(seen, list, "{h}");
                }
                Err(e) => assert_eq!(visited, Err(e), "{h}"),
            }
        }
        assert_eq!(
            header_sender_addresses(sections[1].as_bytes()).expect("reads"),
            ["j@b\u{fc}cher.example", "r@r.example", "q@q.example"],
            "a non-ASCII domain lowercased as before (str::to_lowercase)"
        );
        assert_eq!(
            header_sender_addresses(sections[0].as_bytes()).expect("reads"),
            ["a@acme.example", "b@x.example", "s@acme.example"]
        );
    }
}
