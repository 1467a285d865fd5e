//! SMTP replies: the ones smtpbind writes itself, and a bounded parser for
//! the upstream's (possibly multi-line) replies.

/// A reply as sent on the wire: a code and one or more text lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// Room for a few short lines only: what is worth keeping for reuse
    /// (a reply kept by a connection or a session that grew past this is
    /// freed, so one long reply does not pin its memory).
    pub fn is_small(&self) -> bool {
        self.lines.capacity() <= 4 && self.lines.iter().map(String::capacity).sum::<usize>() <= 1024
    }

    /// Becomes a copy of `other`, reusing this reply's strings (the
    /// derived `clone_from` would allocate anew).
    pub fn copy_from(&mut self, other: &Reply) {
        self.code = other.code;
        self.lines.clone_from(&other.lines);
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The last line, as `code text` (what audit events record: it carries
    /// the queue id in the upstream's final reply to DATA).
    pub fn last_line(&self) -> String {
        let mut out = String::new();
        self.write_last_line(&mut out);
        out
    }

    /// [`Reply::last_line`] into `out` (replacing its contents).
    pub fn write_last_line(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        match self.code {
            c @ 100..=999 => out.extend(digits(c).map(char::from)),
            c => {
                let _ = write!(out, "{c}");
            }
        }
        out.push(' ');
        out.push_str(self.lines.last().map(String::as_str).unwrap_or(""));
    }

    /// Appends the wire form (`250-a\r\n250 b\r\n`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            write_line(out, self.code, i + 1 == n, text);
        }
    }

    /// Appends the wire form of a one-line reply `code text` without
    /// building a [`Reply`] (the same bytes as `Reply::new(code, text)`).
    pub fn write_one(out: &mut Vec<u8>, code: u16, text: &str) {
        write_line(out, code, true, text);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// A code below 1000 as its three ASCII digits (a digit is below 10: the
/// conversions never fail; no narrowing cast).
fn digits(code: u16) -> [u8; 3] {
    let digit = |d: u16| b'0' + u8::try_from(d % 10).unwrap_or(0);
    [digit(code / 100), digit(code / 10), digit(code)]
}

/// One line of a reply on the wire: `250-text` or, the last, `250 text`.
fn write_line(out: &mut Vec<u8>, code: u16, last: bool, text: &str) {
    // The code is 200..=599 (three digits) for every reply built here or parsed.
    out.extend_from_slice(&digits(code.min(999)));
    out.push(if last { b' ' } else { b'-' });
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Every reply smtpbind writes on its own, in one place so the README's
/// reply-code table and the code agree.
pub mod local {
    use super::Reply;
    use crate::smtp::envelope::EnvelopeError;

    pub fn greeting(host: &str) -> Reply {
        Reply::new(220, format!("{host} ESMTP smtpbind ready"))
    }
    pub fn not_ready() -> Reply {
        Reply::new(421, "4.3.0 credential not ready, try again later")
    }
    pub fn log_stalled() -> Reply {
        Reply::new(451, "4.3.0 audit log cannot be written, try again later")
    }
    pub fn too_many_sessions() -> Reply {
        Reply::new(421, "4.3.2 too many sessions, try again later")
    }
    pub fn shutting_down() -> Reply {
        Reply::new(421, "4.3.0 shutting down, try again later")
    }
    pub fn timeout() -> Reply {
        Reply::new(421, "4.4.2 timeout, closing connection")
    }
    pub fn too_many_errors() -> Reply {
        Reply::new(421, "4.7.0 too many errors, closing connection")
    }
    pub fn bye() -> Reply {
        Reply::new(221, "2.0.0 bye")
    }
    /// MAIL allowed by the policy, answered before the upstream saw it
    /// (contract §4, "Round trips").
    pub fn sender_ok() -> Reply {
        Reply::new(250, "2.1.0 sender ok")
    }
    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0 ok")
    }
    pub fn vrfy() -> Reply {
        Reply::new(252, "2.5.2 cannot verify, send some mail")
    }
    pub fn help() -> Reply {
        Reply::new(
            214,
            "2.0.0 commands: EHLO HELO AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
        )
    }
    pub fn auth_ok() -> Reply {
        Reply::new(235, "2.7.0 authentication successful")
    }
    pub fn auth_failed() -> Reply {
        Reply::new(535, "5.7.8 authentication credentials invalid")
    }
    pub fn auth_cancelled() -> Reply {
        Reply::new(501, "5.7.0 authentication cancelled")
    }
    pub fn auth_malformed() -> Reply {
        Reply::new(501, "5.5.2 malformed authentication response")
    }
    pub fn auth_mechanism() -> Reply {
        Reply::new(504, "5.5.4 unrecognized authentication mechanism")
    }
    pub fn auth_not_offered() -> Reply {
        Reply::new(503, "5.5.1 authentication is not enabled")
    }
    pub fn already_authenticated() -> Reply {
        Reply::new(503, "5.5.1 already authenticated")
    }
    pub fn auth_required() -> Reply {
        Reply::new(530, "5.7.0 authentication required")
    }
    pub fn need_ehlo() -> Reply {
        Reply::new(503, "5.5.1 send EHLO or HELO first")
    }
    pub fn nested_mail() -> Reply {
        Reply::new(503, "5.5.1 sender already given")
    }
    pub fn need_mail() -> Reply {
        Reply::new(503, "5.5.1 need MAIL first")
    }
    pub fn need_rcpt() -> Reply {
        Reply::new(503, "5.5.1 need RCPT first")
    }
    pub fn no_valid_recipients() -> Reply {
        Reply::new(554, "5.5.1 no valid recipients")
    }
    pub fn sender_not_allowed() -> Reply {
        Reply::new(550, "5.7.1 sender not allowed for this tenant")
    }
    pub fn recipient_not_allowed() -> Reply {
        Reply::new(550, "5.7.1 recipient domain not allowed for this tenant")
    }
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3 too many recipients")
    }
    pub fn header_from_mismatch() -> Reply {
        Reply::new(550, "5.7.1 header From not allowed for this tenant")
    }
    pub fn message_too_large() -> Reply {
        Reply::new(552, "5.3.4 message too large")
    }
    pub fn headers_too_large() -> Reply {
        Reply::new(552, "5.3.4 header section too large")
    }
    pub fn bare_line_ending() -> Reply {
        Reply::new(550, "5.6.11 bare CR or LF not allowed, use CRLF")
    }
    pub fn eight_bit_unsupported() -> Reply {
        Reply::new(554, "5.6.3 upstream does not accept 8BITMIME")
    }
    pub fn bdat_in_progress() -> Reply {
        Reply::new(
            503,
            "5.5.1 BDAT transfer in progress, finish it with BDAT LAST",
        )
    }
    pub fn start_data() -> Reply {
        Reply::new(START_DATA.0, START_DATA.1)
    }
    /// [`start_data`] as code and text: it is sent for every message, and
    /// written without building a [`Reply`] (`Session::reply_static`).
    pub const START_DATA: (u16, &str) = (354, "end data with <CR><LF>.<CR><LF>");
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2 line too long")
    }
    pub fn unknown_command() -> Reply {
        Reply::new(500, "5.5.2 command not recognized")
    }
    pub fn not_implemented() -> Reply {
        Reply::new(502, "5.5.1 command not implemented")
    }
    pub fn syntax(what: &str) -> Reply {
        Reply::new(501, format!("5.5.4 syntax: {what}"))
    }
    /// A MAIL/RCPT argument refused by the envelope parser.
    pub fn envelope(e: &EnvelopeError, sender: bool) -> Reply {
        match e {
            EnvelopeError::Control => Reply::new(501, "5.1.3 control character in the address"),
            EnvelopeError::NotUtf8 => non_ascii_address(),
            EnvelopeError::Syntax(what) if sender => {
                Reply::new(553, format!("5.1.7 bad sender address syntax: {what}"))
            }
            EnvelopeError::Syntax(what) => {
                Reply::new(553, format!("5.1.3 bad recipient address syntax: {what}"))
            }
            EnvelopeError::Parameter(p) => parameter(p),
            EnvelopeError::BadParameter(what) => syntax(what),
        }
    }
    pub fn non_ascii_address() -> Reply {
        Reply::new(
            553,
            "5.6.7 non-ASCII address needs SMTPUTF8 end to end (not negotiated)",
        )
    }
    pub fn malformed_content() -> Reply {
        Reply::new(
            550,
            "5.6.0 message refused: NUL byte or a header line that is not a header field",
        )
    }
    pub fn parameter(param: &str) -> Reply {
        Reply::new(555, format!("5.5.4 unsupported parameter {param}"))
    }
    pub fn tls_required() -> Reply {
        Reply::new(451, "4.7.0 upstream TLS could not be established, not sent")
    }
    pub fn upstream_auth_failed() -> Reply {
        Reply::new(454, "4.7.0 upstream rejected the pod credential, not sent")
    }
    pub fn upstream_unavailable() -> Reply {
        Reply::new(451, "4.4.1 upstream unavailable, try again later")
    }
    /// `upstream.max_connections` stayed reached: transient, the mailer retries.
    pub fn upstream_busy() -> Reply {
        Reply::new(
            451,
            "4.4.5 upstream connection limit reached, try again later",
        )
    }
    pub fn upstream_failed() -> Reply {
        Reply::new(451, "4.4.2 upstream connection lost, message not sent")
    }
    pub fn starttls_not_offered() -> Reply {
        Reply::new(502, "5.5.1 STARTTLS not offered on loopback")
    }
    pub fn starttls_ready() -> Reply {
        Reply::new(220, "2.0.0 ready to start TLS")
    }
    pub fn tls_already_active() -> Reply {
        Reply::new(503, "5.5.1 TLS already active")
    }
    pub fn starttls_in_transaction() -> Reply {
        Reply::new(503, "5.5.1 STARTTLS not allowed during a mail transaction")
    }
    pub fn starttls_first() -> Reply {
        Reply::new(530, "5.7.0 must issue a STARTTLS command first")
    }
}

/// Errors of the upstream reply parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line")]
    Malformed,
    #[error("reply line too long")]
    LineTooLong,
    #[error("reply has too many lines")]
    TooManyLines,
    #[error("continuation lines disagree on the reply code")]
    CodeMismatch,
}

/// Longest upstream reply line we accept.
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one upstream reply (EHLO replies are the longest).
pub const MAX_REPLY_LINES: usize = 64;

/// Parses one upstream reply from `buf`: the reply and how many bytes it
/// used — exactly those of one reply, the rest is the caller's to keep (or
/// discard at a TLS boundary) — or `Ok(None)` when more bytes are needed
/// (nothing consumed). Built on [`parse_into`].
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut reply = Reply::default();
    Ok(parse_into(buf, &mut reply)?.map(|used| (reply, used)))
}

/// Parses one reply from `buf` into `reply`, reusing its strings (a
/// connection keeps one [`Reply`] for every reply it reads: no allocation
/// per reply once its lines have room). Returns how many bytes the reply
/// used, or `Ok(None)` when more bytes are needed (nothing consumed; `reply`
/// is then unspecified, as after an error). Its lines are bounded by
/// [`MAX_REPLY_LINES`] of [`MAX_REPLY_LINE`] bytes, and lines past the ones
/// of the reply parsed are dropped, so what a connection keeps is bounded.
pub fn parse_into(buf: &[u8], reply: &mut Reply) -> Result<Option<usize>, ReplyError> {
    let mut pos = 0;
    let mut n = 0;
    let mut first: Option<u16> = None;
    loop {
        let rest = &buf[pos..];
        let Some(lf) = memchr::memchr(b'\n', rest) else {
            if rest.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            // Nothing consumed: the caller retries with more bytes.
            return Ok(None);
        };
        if lf + 1 > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let line = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
        pos += lf + 1;
        let (code, last, text) = parse_line(line)?;
        match first {
            Some(c) if c != code => return Err(ReplyError::CodeMismatch),
            _ => first = Some(code),
        }
        if n == reply.lines.len() {
            reply.lines.push(String::new());
        }
        if let Some(slot) = reply.lines.get_mut(n) {
            slot.clear();
            push_text(slot, text);
        }
        n += 1;
        if n > MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        if last {
            reply.code = code;
            reply.lines.truncate(n);
            return Ok(Some(pos));
        }
    }
}

/// Appends a reply line's text, kept printable (it is passed back to the
/// client): a control character becomes `?`, invalid UTF-8 U+FFFD.
fn push_text(out: &mut String, text: &[u8]) {
    // Checked without stopping early (the loop vectorizes).
    let printable = text
        .iter()
        .fold(true, |ok, b| ok & (0x20..0x7f).contains(b));
    match std::str::from_utf8(text) {
        // printable ASCII, the usual case: nothing to replace
        Ok(t) if printable => out.push_str(t),
        _ => out.extend(String::from_utf8_lossy(text).chars().map(|c| {
            if c.is_control() {
                '?'
            } else {
                c
            }
        })),
    }
}

fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(ReplyError::Malformed);
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    if !(200..600).contains(&code) {
        return Err(ReplyError::Malformed);
    }
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ReplyError::Malformed),
    };
    Ok((code, last, text))
}

#[cfg(test)]
mod tests {
    use super::parse as parse_reply;
    use super::*;

    #[test]
    fn wire_form_of_multiline_reply() {
        let r = Reply {
            code: 250,
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
        assert_eq!(local::ok().to_bytes(), b"250 2.0.0 ok\r\n");
        let mut one = Vec::new();
        let (code, text) = local::START_DATA;
        Reply::write_one(&mut one, code, text);
        assert_eq!(one, local::start_data().to_bytes());
        assert_eq!(one, b"354 end data with <CR><LF>.<CR><LF>\r\n");
    }

    #[test]
    fn parses_multiline_and_leaves_the_rest() {
        let buf = b"250-mx.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n220 next";
        let (r, used) = parse_reply(buf).expect("valid").expect("complete");
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mx.example", "PIPELINING", "AUTH PLAIN"]);
        assert_eq!(&buf[used..], b"220 next");
    }

    #[test]
    fn needs_more_without_consuming() {
        assert_eq!(parse_reply(b"250-a\r\n250 b"), Ok(None));
        let (r, used) = parse_reply(b"250-a\r\n250 b\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(r.lines.len(), 2);
        assert_eq!(used, 14);
    }

    #[test]
    fn rejects_garbage_mismatch_and_bounds() {
        assert_eq!(parse_reply(b"hello\r\n"), Err(ReplyError::Malformed));
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeMismatch)
        );
        assert_eq!(parse_reply(&[b'2'; 5000]), Err(ReplyError::LineTooLong));
        let many: Vec<u8> = b"250-x\r\n".repeat(100);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));
        assert_eq!(parse_reply(b"099 x\r\n"), Err(ReplyError::Malformed));
    }

    #[test]
    fn control_characters_are_not_passed_through() {
        let (r, _) = parse_reply(b"250 ok\x1b[31m\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(r.lines[0], "ok?[31m");
    }

    #[test]
    fn parse_into_reuses_the_strings_and_drops_extra_lines() {
        let mut r = Reply::default();
        let used = parse_into(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE\r\n", &mut r)
            .expect("ok")
            .expect("complete");
        assert_eq!(used, 42);
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "SIZE"]);
        let first = r.lines[0].as_ptr();
        parse_into(b"354 go ahead\r\n", &mut r)
            .expect("ok")
            .expect("complete");
        assert_eq!(r, Reply::new(354, "go ahead"));
        assert_eq!(r.lines[0].as_ptr(), first, "the first line's string reused");
        // Incomplete or bad: nothing consumed, and the same answers as the
        // owned parser.
        assert_eq!(parse_into(b"250-a\r\n250 b", &mut r), Ok(None));
        assert_eq!(
            parse_into(b"250-a\r\n251 b\r\n", &mut r),
            Err(ReplyError::CodeMismatch)
        );
        parse_into(b"250 ok\x1b[31m\xff\r\n", &mut r)
            .expect("ok")
            .expect("complete");
        assert_eq!(r.lines, ["ok?[31m\u{fffd}"]);
    }

    #[test]
    fn last_line_and_small_replies() {
        let mut line = String::from("old");
        for r in [
            Reply::new(250, "2.0.0 Ok: queued as 4Xy"),
            Reply::default(),
            Reply::new(42, "odd"),
            Reply::new(1000, "big"),
        ] {
            r.write_last_line(&mut line);
            let text = r.lines.last().map(String::as_str).unwrap_or("");
            assert_eq!(line, format!("{} {}", r.code, text));
            assert_eq!(r.last_line(), line);
        }
        assert!(Reply::new(250, "ok").is_small());
        assert!(!Reply::new(250, "x".repeat(2000)).is_small());
        let ehlo = Reply {
            code: 250,
            lines: vec!["x".into(); 10],
        };
        assert!(!ehlo.is_small());
        let mut kept = Reply::new(250, "2.0.0 Ok: queued as 1".to_string());
        let ptr = kept.lines[0].as_ptr();
        kept.copy_from(&Reply::new(451, "4.4.2 lost"));
        assert_eq!(kept, Reply::new(451, "4.4.2 lost"));
        assert_eq!(kept.lines[0].as_ptr(), ptr, "copied into the same string");
    }
}
