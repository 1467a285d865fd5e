//! The id a provider gives an accepted message in its final `250` reply —
//! what the provider's own activity records name that message by (contract
//! §13). The shapes, from the providers' documentation and transcripts:
//!
//! ```text
//! SendGrid        250 Ok: queued as XBg2anf2TqCy6WXKQFhieQ     (the prefix of sg_message_id)
//! Amazon SES      250 Ok 0100018c5e0b7a1d-…-000000              (mail.messageId)
//! Microsoft 365   250 2.0.0 OK <id@host> [Hostname=…]           (the message's Message-ID)
//! Postfix         250 2.0.0 Ok: queued as 4Xy1Kq2mZ3z           (its queue id)
//! ```
//!
//! Read as: `250`, an optional enhanced status code, the word `OK` (any
//! case, an optional `:`), an optional `queued as`, then the id — the next
//! word. Anything else (a bare `250 OK`, another wording) has no id.

/// Longest id kept (longer: none; ids of the providers above are < 100).
pub const MAX_ID: usize = 256;

/// The id in `line`, the final reply's last line with its code
/// (`250 2.0.0 Ok: queued as 4Xy`), or None.
pub fn upstream_id(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("250")?;
    let rest = rest.strip_prefix(' ')?;
    let mut rest = rest.trim_start();
    if let Some((first, after)) = rest.split_once(' ') {
        if is_enhanced_code(first) {
            rest = after.trim_start();
        }
    }
    let after_ok = strip_word_ci(rest, "ok")?;
    let after_ok = after_ok.strip_prefix(':').unwrap_or(after_ok);
    let mut rest = after_ok.trim_start();
    if let Some(r) = strip_word_ci(rest, "queued") {
        rest = strip_word_ci(r.trim_start(), "as")?.trim_start();
    }
    let id = rest.split([' ', '\t']).next()?;
    let printable = id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    (!id.is_empty() && id.len() <= MAX_ID && printable && !id.starts_with('[')).then_some(id)
}

/// `s` without a leading `word` (ASCII case-insensitive) that ends at a
/// space, a colon or the end.
fn strip_word_ci<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &s[word.len()..];
    match rest.as_bytes().first() {
        None | Some(b' ') | Some(b':') | Some(b'\t') => Some(rest),
        Some(_) => None,
    }
}

/// `2.0.0`: class.subject.detail, digits (RFC 3463).
fn is_enhanced_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    ok(parts.next()) && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendgrid_queued_as() {
        assert_eq!(
            upstream_id("250 Ok: queued as XBg2anf2TqCy6WXKQFhieQ"),
            Some("XBg2anf2TqCy6WXKQFhieQ")
        );
        assert_eq!(
            upstream_id("250 Ok: queued as Ua9z9lSTSaqYBWJe_Xfc-Q"),
            Some("Ua9z9lSTSaqYBWJe_Xfc-Q")
        );
    }

    #[test]
    fn ses_ok_then_the_message_id() {
        assert_eq!(
            upstream_id("250 Ok 010001870dbae81e-35118332-f389-474c-8b37-69ce1e1934ae-000000"),
            Some("010001870dbae81e-35118332-f389-474c-8b37-69ce1e1934ae-000000")
        );
    }

    #[test]
    fn microsoft_365_ok_then_the_message_id_header_then_the_hostname() {
        assert_eq!(
            upstream_id(
                "250 2.0.0 OK <b225fdda-3db5-4aeb-4d52-c74d71838980@acme.example> \
                 [Hostname=SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM]"
            ),
            Some("<b225fdda-3db5-4aeb-4d52-c74d71838980@acme.example>")
        );
        // No id, only the hostname: none.
        assert_eq!(upstream_id("250 2.0.0 OK [Hostname=X.OUTLOOK.COM]"), None);
    }

    #[test]
    fn postfix_and_the_capture_upstream() {
        assert_eq!(
            upstream_id("250 2.0.0 Ok: queued as 4Xy1Kq2mZ3z"),
            Some("4Xy1Kq2mZ3z")
        );
        assert_eq!(
            upstream_id("250 2.0.0 Ok: queued as CAP000001"),
            Some("CAP000001")
        );
        assert_eq!(upstream_id("250 2.0.0 OK: QUEUED AS abc"), Some("abc"));
    }

    #[test]
    fn no_id_when_the_reply_does_not_carry_one() {
        for line in [
            "250 OK",
            "250 2.0.0 Ok",
            "250 Ok: queued as",
            "250 Ok: queued as ",
            "250 Okay 123",
            "250 2.0.0 Message accepted",
            "251 Ok 123",
            "451 4.3.0 Ok 123",
            "2500 Ok 123",
            "250",
            "",
            "250 Ok: queued 123",
            "250 Ok caf\u{e9}",
        ] {
            assert_eq!(upstream_id(line), None, "{line:?}");
        }
        let long = format!("250 Ok {}", "a".repeat(MAX_ID + 1));
        assert_eq!(upstream_id(&long), None);
        let max = format!("250 Ok {}", "a".repeat(MAX_ID));
        assert_eq!(upstream_id(&max).map(str::len), Some(MAX_ID));
    }
}
