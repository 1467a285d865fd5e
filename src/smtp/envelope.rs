//! The envelope, typed: MAIL FROM and RCPT TO parsed once into a path
//! (local part, domain) and parameters, and written to the upstream only
//! from those values. No byte of the client's command is copied upstream.
//!
//! Parsing follows RFC 5321 §4.1.2 strictly (with RFC 6531 for UTF-8):
//!
//! ```text
//! Path        = "<" [ A-d-l ":" ] Mailbox ">"     (a source route is dropped)
//! Mailbox     = Local-part "@" Domain
//! Local-part  = Dot-string / Quoted-string
//! ```
//!
//! Address literals (`user@[192.0.2.1]`) are refused: a tenant's mail goes
//! to named domains through its provider, and an allow-list of domains
//! cannot speak about them.
//!
//! A control character anywhere in the command (NUL, TAB, CR, LF, DEL, other
//! C0) is [`EnvelopeError::Control`] (`501 5.1.3`). Non-ASCII is recorded on
//! the value ([`Mailbox::is_ascii`]); the session refuses it unless SMTPUTF8
//! is negotiated end to end (`553 5.6.7`). Invalid UTF-8 is
//! [`EnvelopeError::NotUtf8`].
//!
//! [`Mailbox::write_path`] writes the local part as a Dot-string when it is
//! one, else as a Quoted-string with `"` and `\` escaped, so what the policy
//! approved is exactly what an RFC 5321 parser on the other side reads.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path as written, brackets included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// A mailbox: the local part unquoted (as its meaning, not its spelling) and
/// the domain (a host name; U-labels allowed). Both borrow the command line
/// where they can (a quoted local part is unquoted into its own string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox<'a> {
    pub local: Cow<'a, str>,
    pub domain: Cow<'a, str>,
}

/// MAIL FROM's path: the null sender `<>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath<'a> {
    Null,
    Mailbox(Mailbox<'a>),
}

/// `BODY=` (RFC 6152). BINARYMIME is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// MAIL FROM, parsed. `AUTH=` was parsed and dropped: it has no field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom<'a> {
    pub path: ReversePath<'a>,
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
}

/// RCPT TO, parsed. No RCPT parameter is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo<'a> {
    pub mailbox: Mailbox<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A control character in the command: `501 5.1.3`.
    #[error("control character in the address")]
    Control,
    /// Not valid UTF-8: `553 5.6.7`.
    #[error("address is not valid UTF-8")]
    NotUtf8,
    /// The path does not follow RFC 5321: `501 5.1.3` / `553 5.1.7`.
    #[error("{0}")]
    Syntax(&'static str),
    /// A parameter smtpbind does not offer: `555 5.5.4`.
    #[error("unsupported parameter {0}")]
    Parameter(String),
    /// A parameter given twice or with a bad value: `501 5.5.4`.
    #[error("{0}")]
    BadParameter(&'static str),
}

impl Mailbox<'_> {
    /// Whether local part and domain are ASCII (else SMTPUTF8 is needed).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// The domain lowercased, for logs and matching.
    pub fn domain_lower(&self) -> String {
        let mut out = String::new();
        self.write_domain_lower(&mut out);
        out
    }

    /// Replaces `out`'s contents with [`Mailbox::domain_lower`] (the same
    /// text; an ASCII domain, the usual case, without allocating when `out`
    /// has room).
    pub fn write_domain_lower(&self, out: &mut String) {
        out.clear();
        if self.domain.is_ascii() {
            out.push_str(&self.domain);
            out.make_ascii_lowercase();
        } else {
            out.push_str(&self.domain.to_lowercase());
        }
    }

    /// The length of [`Mailbox::write_path`]'s output, without writing it.
    fn path_len(&self) -> usize {
        let local = if is_dot_string(&self.local) {
            self.local.len()
        } else {
            let escapes = self
                .local
                .bytes()
                .filter(|&b| b == b'"' || b == b'\\')
                .count();
            self.local.len() + escapes + 2
        };
        local + self.domain.len() + 3
    }

    /// Writes `<local@domain>`: the local part as a Dot-string when it is
    /// one, else quoted.
    pub fn write_path(&self, out: &mut String) {
        out.push('<');
        if is_dot_string(&self.local) {
            out.push_str(&self.local);
        } else {
            out.push('"');
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push('@');
        out.push_str(&self.domain);
        out.push('>');
    }
}

impl ReversePath<'_> {
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Mailbox(m) => m.is_ascii(),
        }
    }
}

impl MailFrom<'_> {
    /// The upstream command. `size` is written when the upstream offers
    /// SIZE, `smtputf8` only when it was negotiated (the caller checks).
    pub fn to_command(&self, upstream_size: bool) -> String {
        let mut line = String::with_capacity(64);
        self.write_command(upstream_size, &mut line);
        line
    }

    /// [`MailFrom::to_command`] into `line` (replacing its contents).
    pub fn write_command(&self, upstream_size: bool, line: &mut String) {
        line.clear();
        line.push_str("MAIL FROM:");
        match &self.path {
            ReversePath::Null => line.push_str("<>"),
            ReversePath::Mailbox(m) => m.write_path(line),
        }
        if let (Some(s), true) = (self.size, upstream_size) {
            let _ = write!(line, " SIZE={s}");
        }
        match self.body {
            Some(Body::EightBitMime) => line.push_str(" BODY=8BITMIME"),
            Some(Body::SevenBit) => line.push_str(" BODY=7BIT"),
            None => {}
        }
        if self.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        line.push_str("\r\n");
    }
}

impl RcptTo<'_> {
    pub fn to_command(&self) -> String {
        let mut line = String::with_capacity(64);
        self.write_command(&mut line);
        line
    }

    /// [`RcptTo::to_command`] into `line` (replacing its contents).
    pub fn write_command(&self, line: &mut String) {
        line.clear();
        line.push_str("RCPT TO:");
        self.mailbox.write_path(line);
        line.push_str("\r\n");
    }
}

/// atext (RFC 5322 §3.2.3), plus UTF-8 non-ASCII (RFC 6531), by byte: a
/// non-ASCII character is all bytes >= 0x80, so "every byte is atext" is
/// "every character is".
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || !b.is_ascii() || ATEXT_SPECIALS[usize::from(b)]
}

/// The ASCII atext that is not a letter or digit, as a table.
const ATEXT_SPECIALS: [bool; 128] = {
    let mut table = [false; 128];
    let specials = b"!#$%&'*+-/=?^_`{|}~";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    table
};

/// Dot-string: atoms of atext joined by single dots.
pub fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.as_bytes()
            .split(|&b| b == b'.')
            .all(|a| !a.is_empty() && a.iter().all(|&b| is_atext(b)))
}

/// Parses the argument of `MAIL FROM:` (everything after the colon).
pub fn parse_mail(arg: &[u8]) -> Result<MailFrom<'_>, EnvelopeError> {
    let arg = text(arg)?;
    let (path, rest) = split_path(arg)?;
    let path = if path.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(parse_path(path)?)
    };
    let mut mail = MailFrom {
        path,
        size: None,
        body: None,
        smtputf8: false,
    };
    let mut seen_auth = false;
    for (key, value) in params(rest)? {
        match (Keyword::of(key), value) {
            (Keyword::Size, Some(v)) if mail.size.is_none() => {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(EnvelopeError::BadParameter("SIZE takes a number"));
                }
                mail.size = Some(
                    v.parse()
                        .map_err(|_| EnvelopeError::BadParameter("SIZE out of range"))?,
                );
            }
            (Keyword::Body, Some(v)) if mail.body.is_none() => {
                mail.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else {
                    return Err(EnvelopeError::Parameter(format!("BODY={}", printable(v))));
                });
            }
            (Keyword::SmtpUtf8, None) if !mail.smtputf8 => mail.smtputf8 = true,
            // RFC 4954 §5: the client's AUTH= ends here, like its AUTH.
            (Keyword::Auth, Some(_)) if !seen_auth => seen_auth = true,
            (Keyword::Size | Keyword::Body | Keyword::SmtpUtf8 | Keyword::Auth, _) => {
                return Err(EnvelopeError::BadParameter(
                    "parameter repeated or malformed",
                ))
            }
            (Keyword::Other, _) => return Err(EnvelopeError::Parameter(printable(key))),
        }
    }
    Ok(mail)
}

/// The MAIL parameters smtpbind knows, matched ASCII case-insensitively
/// (without uppercasing a copy of the keyword).
#[derive(Clone, Copy)]
enum Keyword {
    Size,
    Body,
    SmtpUtf8,
    Auth,
    Other,
}

impl Keyword {
    fn of(key: &str) -> Keyword {
        [
            ("SIZE", Keyword::Size),
            ("BODY", Keyword::Body),
            ("SMTPUTF8", Keyword::SmtpUtf8),
            ("AUTH", Keyword::Auth),
        ]
        .into_iter()
        .find(|(name, _)| key.eq_ignore_ascii_case(name))
        .map_or(Keyword::Other, |(_, k)| k)
    }
}

/// Parses the argument of `RCPT TO:`.
pub fn parse_rcpt(arg: &[u8]) -> Result<RcptTo<'_>, EnvelopeError> {
    let arg = text(arg)?;
    let (path, rest) = split_path(arg)?;
    if path.is_empty() {
        return Err(EnvelopeError::Syntax("empty recipient"));
    }
    let mailbox = parse_path(path)?;
    if let Some((key, _)) = params(rest)?.into_iter().next() {
        return Err(EnvelopeError::Parameter(printable(key)));
    }
    Ok(RcptTo { mailbox })
}

/// The argument as text: no control character, valid UTF-8.
fn text(arg: &[u8]) -> Result<&str, EnvelopeError> {
    if arg.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(EnvelopeError::Control);
    }
    std::str::from_utf8(arg).map_err(|_| EnvelopeError::NotUtf8)
}

/// Splits `<path> params` into the text between the brackets and the rest.
/// The closing `>` is found by scanning the path grammar (quotes and
/// quoted-pairs), never by searching for the last `>`.
fn split_path(arg: &str) -> Result<(&str, &str), EnvelopeError> {
    // RFC 5321 has no space after the colon; many clients send one.
    let arg = arg.trim_start_matches(' ');
    let inner = arg.strip_prefix('<').ok_or(EnvelopeError::Syntax(
        "the address must be in <angle brackets>",
    ))?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                '"' => quoted = true,
                '>' => {
                    let rest = &inner[i + 1..];
                    if !(rest.is_empty() || rest.starts_with(' ')) {
                        return Err(EnvelopeError::Syntax("text after the address"));
                    }
                    return Ok((&inner[..i], rest));
                }
                _ => {}
            }
        }
    }
    Err(EnvelopeError::Syntax("no closing '>'"))
}

/// `[A-d-l ":"] Mailbox` between the brackets.
fn parse_path(path: &str) -> Result<Mailbox<'_>, EnvelopeError> {
    let mailbox = match path.strip_prefix('@') {
        Some(_) => {
            // Source route (RFC 5321 §4.1.2, obsolete): "@d1,@d2:" — dropped.
            let colon = path
                .find(':')
                .ok_or(EnvelopeError::Syntax("bad source route"))?;
            for hop in path[..colon].split(',') {
                let d = hop
                    .strip_prefix('@')
                    .ok_or(EnvelopeError::Syntax("bad source route"))?;
                if !is_domain(d) {
                    return Err(EnvelopeError::Syntax("bad source route"));
                }
            }
            &path[colon + 1..]
        }
        None => path,
    };
    let (local, domain) = if let Some(rest) = mailbox.strip_prefix('"') {
        let (local, after) = unquote(rest)?;
        let domain = after
            .strip_prefix('@')
            .ok_or(EnvelopeError::Syntax("expected '@' after the local part"))?;
        (Cow::Owned(local), domain)
    } else {
        let (local, domain) = mailbox
            .split_once('@')
            .ok_or(EnvelopeError::Syntax("expected local@domain"))?;
        if !is_dot_string(local) {
            return Err(EnvelopeError::Syntax("local part is not a dot-string"));
        }
        (Cow::Borrowed(local), domain)
    };
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err(EnvelopeError::Syntax("local part empty or longer than 64"));
    }
    if !is_domain(domain) || domain.len() > MAX_DOMAIN {
        return Err(EnvelopeError::Syntax("bad domain"));
    }
    let mailbox = Mailbox {
        local,
        domain: Cow::Borrowed(domain),
    };
    // RFC 5321 §4.5.3.1.3: a path is at most 256 octets, brackets included
    // (measured as it is written upstream).
    if mailbox.path_len() > MAX_PATH {
        return Err(EnvelopeError::Syntax("path longer than 256 octets"));
    }
    Ok(mailbox)
}

/// The text after an opening quote: (unquoted content, text after the
/// closing quote). qtextSMTP / quoted-pairSMTP (RFC 5321 §4.1.2; RFC 6531
/// adds UTF-8).
fn unquote(s: &str) -> Result<(String, &str), EnvelopeError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e)) if e == ' ' || e.is_ascii_graphic() || !e.is_ascii() => out.push(e),
                _ => return Err(EnvelopeError::Syntax("bad quoted pair")),
            },
            c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => out.push(c),
            _ => return Err(EnvelopeError::Syntax("bad character in quoted string")),
        }
    }
    Err(EnvelopeError::Syntax("unterminated quoted string"))
}

/// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
/// (U-labels allowed: non-ASCII counts as a letter).
fn is_domain(d: &str) -> bool {
    // By byte: a non-ASCII character is all bytes >= 0x80 (its first and
    // last byte included), so each test reads the same as by character.
    let label_ok = |l: &[u8]| {
        let alnum = |b: &u8| b.is_ascii_alphanumeric() || !b.is_ascii();
        !l.is_empty()
            && l.len() <= 63
            && l.iter().all(|b| alnum(b) || *b == b'-')
            && l.first().is_some_and(alnum)
            && l.last().is_some_and(alnum)
    };
    !d.is_empty() && d.as_bytes().split(|&b| b == b'.').all(label_ok)
}

/// `SP keyword[=value]` pairs (RFC 5321 §4.1.2 Mail-parameters).
fn params(rest: &str) -> Result<Vec<(&str, Option<&str>)>, EnvelopeError> {
    let mut out = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
        });
        if !key_ok || !value_ok {
            return Err(EnvelopeError::BadParameter("malformed parameter"));
        }
        out.push((key, value));
    }
    if out.len() > 10 {
        return Err(EnvelopeError::BadParameter("too many parameters"));
    }
    Ok(out)
}

/// A client string safe to echo in a reply (ASCII graphic only, bounded).
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbox(path: &str) -> Mailbox<'_> {
        match parse_mail(path.as_bytes()).expect("parses").path {
            ReversePath::Mailbox(m) => m,
            ReversePath::Null => panic!("null"),
        }
    }

    #[test]
    fn the_reported_injections_are_requoted() {
        let r = parse_rcpt(br#"<"x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"@example.net>"#)
            .expect("a valid quoted local part");
        assert_eq!(r.mailbox.domain, "example.net");
        assert_eq!(
            r.mailbox.local,
            "x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"
        );
        assert_eq!(
            r.to_command(),
            "RCPT TO:<\"x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z\"@example.net>\r\n"
        );
        let m = parse_mail(br#"<"a> AUTH=victim+40globex.example ENVID=x"@acme.example>"#)
            .expect("parses");
        assert_eq!(
            m.to_command(true),
            "MAIL FROM:<\"a> AUTH=victim+40globex.example ENVID=x\"@acme.example>\r\n"
        );
        assert_eq!(
            parse_mail(b"<\"a\x00b\"@acme.example>"),
            Err(EnvelopeError::Control)
        );
        assert_eq!(
            parse_rcpt(b"<\"a\tb\"@acme.example>"),
            Err(EnvelopeError::Control)
        );
    }

    #[test]
    fn quoting_only_where_needed() {
        let m = mbox(r#"<"billing"@acme.example>"#);
        assert_eq!(m.local, "billing");
        let mut s = String::new();
        m.write_path(&mut s);
        assert_eq!(s, "<billing@acme.example>");
        let m = mbox(r#"<"a\"b\\c d"@acme.example>"#);
        assert_eq!(m.local, "a\"b\\c d");
        let mut s = String::new();
        m.write_path(&mut s);
        assert_eq!(s, r#"<"a\"b\\c d"@acme.example>"#);
        let m = mbox("<@relay.example,@r2.example:user@acme.example>");
        assert_eq!((&*m.local, &*m.domain), ("user", "acme.example"));
    }

    #[test]
    fn parameters() {
        let m = parse_mail(b"<a@acme.example> SIZE=1000 BODY=8BITMIME AUTH=<> SMTPUTF8")
            .expect("parses");
        assert_eq!(m.size, Some(1000));
        assert_eq!(m.body, Some(Body::EightBitMime));
        assert!(m.smtputf8);
        assert_eq!(
            m.to_command(true),
            "MAIL FROM:<a@acme.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert_eq!(
            m.to_command(false),
            "MAIL FROM:<a@acme.example> BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert!(matches!(
            parse_mail(b"<a@acme.example> RET=FULL"),
            Err(EnvelopeError::Parameter(p)) if p == "RET"
        ));
        assert!(matches!(
            parse_mail(b"<a@acme.example> BODY=BINARYMIME"),
            Err(EnvelopeError::Parameter(_))
        ));
        assert!(matches!(
            parse_mail(b"<a@acme.example> SIZE=1 SIZE=2"),
            Err(EnvelopeError::BadParameter(_))
        ));
        assert!(matches!(
            parse_rcpt(b"<a@b.example> NOTIFY=NEVER"),
            Err(EnvelopeError::Parameter(p)) if p == "NOTIFY"
        ));
        assert_eq!(parse_mail(b"<>").expect("null").path, ReversePath::Null);
        assert!(parse_rcpt(b"<>").is_err());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "a@b.example",
            "<a@b.example",
            "<a@b.example>x",
            "<a..b@c.example>",
            "<.a@c.example>",
            "<a@-c.example>",
            "<a@c.example.>",
            "<a@c..example>",
            "<a b@c.example>",
            "<\"unterminated@c.example>",
            "<\"a\"b@c.example>",
            "<a@[1.2.3.4>",
            "<a@>",
            "<@c.example>",
            "<a@b@c.example>",
        ] {
            assert!(
                matches!(parse_mail(bad.as_bytes()), Err(EnvelopeError::Syntax(_))),
                "{bad}"
            );
        }
        let long = format!("<{}@c.example>", "a".repeat(65));
        assert!(parse_mail(long.as_bytes()).is_err());
        // 256 octets as written is the longest path (found by the fuzzer:
        // smtp-proto, like RFC 5321, reads no longer one).
        let label = "d".repeat(63);
        let domain = |n: usize| format!("{label}.{label}.{label}.{}", "e".repeat(n));
        let at_limit = format!("<x@{}>", domain(256 - 4 - 3 * 64));
        assert_eq!(at_limit.len(), 256);
        assert!(parse_rcpt(at_limit.as_bytes()).is_ok());
        let over = format!("<x@{}>", domain(256 - 4 - 3 * 64 + 1));
        assert!(matches!(
            parse_rcpt(over.as_bytes()),
            Err(EnvelopeError::Syntax(_))
        ));
        let quoted = format!("<\"{}\"@c.example>", "\\\"".repeat(30));
        assert!(
            parse_rcpt(quoted.as_bytes()).is_ok(),
            "escapes count as written"
        );
        assert_eq!(
            parse_mail(b"<a\x7f@c.example>"),
            Err(EnvelopeError::Control)
        );
        assert_eq!(
            parse_mail(b"<a\xff@c.example>"),
            Err(EnvelopeError::NotUtf8)
        );
    }

    #[test]
    fn path_len_is_the_written_length() {
        for path in [
            "<a@b.example>",
            r#"<"a b"@b.example>"#,
            r#"<"a\"b\\c"@b.example>"#,
            "<josé@bücher.example>",
        ] {
            let m = mbox(path);
            let mut s = String::new();
            m.write_path(&mut s);
            assert_eq!(m.path_len(), s.len(), "{path}");
        }
    }

    #[test]
    fn utf8_addresses_are_values_marked_non_ascii() {
        let m = mbox("<josé@bücher.example>");
        assert!(!m.is_ascii());
        assert_eq!(m.domain, "bücher.example");
        assert!(parse_rcpt(b"<a@[IPv6:2001:db8::1]>").is_err());
        assert!(parse_rcpt(b"<a@[192.0.2.1]>").is_err());
    }
}
