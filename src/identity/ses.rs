//! The SES SMTP password of an IAM secret access key (contract §9).
//!
//! AWS's published algorithm: a SigV4 signing-key chain over the fixed
//! date `11111111`, the region, `ses`, `aws4_request` and the message
//! `SendRawEmail`, prefixed with the version byte `0x04` and base64-encoded.
//! Derived at load and on every rotation; the result is a [`Secret`].

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Secret;

const DATE: &[u8] = b"11111111";
const SERVICE: &[u8] = b"ses";
const TERMINAL: &[u8] = b"aws4_request";
const MESSAGE: &[u8] = b"SendRawEmail";
const VERSION: u8 = 0x04;

fn hmac(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) {
        mac.update(message);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// The SMTP password for `secret_access_key` in `region`.
pub fn smtp_password(secret_access_key: &str, region: &str) -> Secret {
    let mut key = Zeroizing::new(Vec::with_capacity(4 + secret_access_key.len()));
    key.extend_from_slice(b"AWS4");
    key.extend_from_slice(secret_access_key.as_bytes());
    let mut signature = hmac(&key, DATE);
    for part in [region.as_bytes(), SERVICE, TERMINAL, MESSAGE] {
        signature = hmac(&*signature, part);
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(33));
    raw.push(VERSION);
    raw.extend_from_slice(&*signature);
    Secret::new(base64::engine::general_purpose::STANDARD.encode(&*raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of AWS's documentation and the password its
    /// published algorithm derives for us-east-1 (also recomputed
    /// independently with Python's hmac in tests/cli.rs).
    #[test]
    fn published_vector() {
        let p = smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1");
        assert_eq!(p.expose(), "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9");
        assert_ne!(
            smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1").expose(),
            p.expose()
        );
        assert_eq!(format!("{p:?}"), "Secret(<redacted>)");
    }
}
