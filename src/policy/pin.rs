//! Credential pins: `sha256:<64 lowercase hex>` of a password file's bytes.
//!
//! A pin is not a secret (it is a one-way digest), so it may appear in
//! errors and logs; the short form ([`Pin::short`]) is what audit events carry.

use std::fmt;

use sha2::{Digest, Sha256};

/// Prefix of the textual form of a pin.
const PREFIX: &str = "sha256:";

/// The sha256 digest of a credential's password bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

impl Pin {
    /// The pin of `bytes` (sha256 of exactly these bytes, no trimming).
    pub fn of(bytes: &[u8]) -> Pin {
        let digest = Sha256::digest(bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest);
        Pin(out)
    }

    /// Parses `sha256:` followed by exactly 64 hex digits (either case).
    ///
    /// The error says what is wrong without echoing the input past the prefix.
    pub fn parse(s: &str) -> Result<Pin, String> {
        let Some(hex_part) = s.strip_prefix(PREFIX) else {
            return Err("expected `sha256:` followed by 64 hex digits".to_string());
        };
        let len = hex_part.chars().count();
        if len != 64 {
            return Err(format!(
                "expected 64 hex digits after `sha256:`, found {len} characters"
            ));
        }
        if let Some(pos) = hex_part.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(format!(
                "non-hex character at position {} after `sha256:`",
                pos + 1
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| "expected 64 hex digits after `sha256:`".to_string())?;
        Ok(Pin(out))
    }

    /// The first 12 lowercase hex digits: how logs and audit events name a credential.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({}\u{2026})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("test")
    const TEST_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn of_is_sha256_of_exact_bytes() {
        let pin = Pin::of(b"test");
        assert_eq!(pin.to_string(), format!("sha256:{TEST_HEX}"));
        assert_ne!(Pin::of(b"test\n"), pin, "no trimming");
    }

    #[test]
    fn parse_round_trips_and_ignores_hex_case() {
        let lower = Pin::parse(&format!("sha256:{TEST_HEX}")).unwrap();
        let upper = Pin::parse(&format!("sha256:{}", TEST_HEX.to_uppercase())).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(lower, Pin::of(b"test"));
        assert_eq!(lower.to_string(), format!("sha256:{TEST_HEX}"));
        assert_eq!(lower.as_bytes()[0], 0x9f);
    }

    #[test]
    fn short_and_debug() {
        let pin = Pin::of(b"test");
        assert_eq!(pin.short(), "9f86d081884c");
        assert_eq!(format!("{pin:?}"), "Pin(9f86d081884c\u{2026})");
    }

    #[test]
    fn parse_rejects_without_echoing() {
        let secretish = "hunter2hunter2";
        let e = Pin::parse(secretish).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("sha256:"));

        let e = Pin::parse(&format!("sha256:{secretish}")).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("found 14 characters"), "{e}");

        let e = Pin::parse(&format!("sha256:{}zz", &TEST_HEX[..62])).unwrap_err();
        assert!(e.contains("position 63"), "{e}");

        assert!(Pin::parse(&format!("SHA256:{TEST_HEX}")).is_err());
        assert!(Pin::parse(&format!("sha256:{TEST_HEX} ")).is_err());
        assert!(Pin::parse(&format!(" sha256:{TEST_HEX}")).is_err());
        assert!(Pin::parse(&format!("sha256:{TEST_HEX}00")).is_err());
        // multi-byte characters must not panic the length/hex checks
        assert!(Pin::parse(&format!("sha256:{}é", &TEST_HEX[..63])).is_err());
    }
}
