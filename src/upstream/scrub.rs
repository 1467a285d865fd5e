//! Upstream replies are scrubbed before anything else sees them (contract
//! §9): a server that echoes what it received (the XOAUTH2 payload, a PLAIN
//! payload, a password) must not put a secret into a log line, an error or
//! a reply relayed to the client. I/O-free.
//!
//! Each secret is searched raw and in base64 at every alignment: the three
//! encodings of the secret after 0, 1 or 2 other bytes, with the characters
//! that also depend on the neighbouring bytes left out, so the secret is
//! found inside any base64 text that carries it (a SASL PLAIN payload, the
//! XOAUTH2 payload), padded or not.

use base64::Engine;
use zeroize::Zeroizing;

/// What a found secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter secrets are not searched (they would match ordinary text).
const MIN_SECRET: usize = 8;

#[derive(Default)]
pub struct Scrub {
    needles: Vec<Zeroizing<Vec<u8>>>,
}

impl Scrub {
    /// Adds `secret` in its raw and base64 forms.
    pub fn add(&mut self, secret: &[u8]) {
        if secret.len() < MIN_SECRET {
            return;
        }
        self.push(secret);
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        for lead in 0..3usize {
            let mut bytes = Zeroizing::new(vec![0u8; lead]);
            bytes.extend_from_slice(secret);
            let enc = Zeroizing::new(b64.encode(bytes.as_slice()));
            // Characters made only of the secret's bits: past the group
            // holding the leading bytes, before the last (partial) group.
            let start = if lead == 0 { 0 } else { 4 };
            let end = enc.len().saturating_sub(if lead == 0 { 0 } else { 4 });
            if let Some(core) = enc.as_bytes().get(start..end) {
                if core.len() >= MIN_SECRET {
                    self.push(core);
                }
            }
        }
        // Longest first: a needle inside another is replaced with it.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    fn push(&mut self, needle: &[u8]) {
        if !self.needles.iter().any(|n| n.as_slice() == needle) {
            self.needles.push(Zeroizing::new(needle.to_vec()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Replaces every secret in `text` with [`REDACTED`].
    pub fn apply(&self, text: &mut String) {
        for needle in &self.needles {
            while let Some(at) = memchr::memmem::find(text.as_bytes(), needle) {
                let end = at.saturating_add(needle.len());
                // Never panics: a miss (not a char boundary) leaves the
                // rest of the line out rather than the secret in.
                let head = text.get(..at).unwrap_or_default();
                let tail = text.get(end..).unwrap_or_default();
                let mut out = Zeroizing::new(String::with_capacity(text.len()));
                out.push_str(head);
                out.push_str(REDACTED);
                out.push_str(tail);
                let mut old = std::mem::replace(text, std::mem::take(&mut *out));
                zeroize::Zeroize::zeroize(&mut old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(scrub: &Scrub, text: &str) -> String {
        let mut t = text.to_string();
        scrub.apply(&mut t);
        t
    }

    #[test]
    fn raw_and_every_base64_form_are_replaced() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let token = "ya29.a0AfH6SMBx-secret-token-value";
        let mut s = Scrub::default();
        s.add(token.as_bytes());
        assert!(!s.is_empty());
        let payload = b64.encode(format!(
            "user=billing@acme.example\x01auth=Bearer {token}\x01\x01"
        ));
        for user in ["", "a", "ab", "billing@acme.example"] {
            let plain = b64.encode(format!("\0{user}\0{token}"));
            let out = scrubbed(&s, &format!("535 5.7.8 got {plain} and {payload}"));
            assert!(out.contains(REDACTED), "{out}");
            assert!(!out.contains(&plain) && !out.contains(&payload), "{out}");
        }
        let padded = b64.encode(token);
        let out = scrubbed(&s, &format!("535 {token} {padded} {token}"));
        assert!(
            !out.contains(token) && !out.contains(padded.trim_end_matches('=')),
            "{out}"
        );
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        assert_eq!(scrubbed(&s, "250 2.0.0 ok"), "250 2.0.0 ok");
    }

    #[test]
    fn short_secrets_and_unicode_never_panic() {
        let mut s = Scrub::default();
        s.add(b"short");
        assert!(s.is_empty());
        s.add("pässwörd-long-enough".as_bytes());
        let out = scrubbed(&s, "535 é pässwörd-long-enough ü");
        assert_eq!(out, format!("535 é {REDACTED} ü"));
    }
}
