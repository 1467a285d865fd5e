//! SASL PLAIN (RFC 4616) and LOGIN, both sides, without I/O.
//!
//! smtpbind terminates the client's AUTH exchange (the client's credentials
//! are checked against the policy and never forwarded) and runs its own AUTH
//! towards the upstream with the mounted credential. This module only turns
//! base64 responses into an [`Identity`] and credentials into base64 lines.
//!
//! Secrets never leak through formatting: [`Identity`]'s `Debug` shows the
//! username only, [`SaslError`] carries no data, and decoded buffers that held
//! a password are wiped on drop ([`zeroize::Zeroizing`]). Callers must not
//! `Debug`-print the `Zeroizing<String>` values returned here, since those are
//! the secrets themselves.
//!
//! Decoding uses the standard base64 alphabet, tolerates surrounding
//! whitespace and missing padding, and treats `*` as the client cancelling the
//! exchange (RFC 4954 §4). A lone `=` is the zero-length response.

use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Base64 challenge `Username:` for AUTH LOGIN.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// Base64 challenge `Password:` for AUTH LOGIN.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// Standard alphabet; accepts input with or without `=` padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials presented by a client. `Debug` prints the username only.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// Authentication identity (authcid).
    pub username: String,
    /// The password, wiped from memory on drop.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.username)
    }
}

/// Why a SASL response was refused. Carries no data, so never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The response is not base64.
    #[error("not valid base64")]
    Base64,
    /// The PLAIN message is not `authzid NUL authcid NUL passwd`.
    #[error("malformed PLAIN response")]
    Malformed,
    /// A non-empty authzid different from the authcid (no proxy auth).
    #[error("authorization identity differs from authentication identity")]
    Authzid,
    /// Decoded bytes are not UTF-8.
    #[error("not UTF-8")]
    Utf8,
    /// The client answered `*`.
    #[error("cancelled")]
    Cancelled,
}

/// Decode one base64 client response into zeroizing bytes.
fn decode_b64(b64: &str) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    let t = b64.trim();
    if t == "*" {
        return Err(SaslError::Cancelled);
    }
    if t == "=" {
        return Ok(Zeroizing::new(Vec::new()));
    }
    LENIENT
        .decode(t.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| SaslError::Base64)
}

/// Decode an AUTH PLAIN response (`authzid NUL authcid NUL passwd`, base64).
///
/// `*` is [`SaslError::Cancelled`]; the authzid must be empty or equal to the
/// authcid; authcid and password must be non-empty.
pub fn decode_plain(b64: &str) -> Result<Identity, SaslError> {
    let raw = decode_b64(b64)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(SaslError::Malformed);
    }
    let authzid = std::str::from_utf8(authzid).map_err(|_| SaslError::Utf8)?;
    let authcid = std::str::from_utf8(authcid).map_err(|_| SaslError::Utf8)?;
    let passwd = std::str::from_utf8(passwd).map_err(|_| SaslError::Utf8)?;
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::Authzid);
    }
    Ok(Identity {
        username: authcid.to_owned(),
        password: Zeroizing::new(passwd.to_owned()),
    })
}

/// Decode one AUTH LOGIN response (username or password). `*` is
/// [`SaslError::Cancelled`].
pub fn decode_login_field(b64: &str) -> Result<Zeroizing<String>, SaslError> {
    let raw = decode_b64(b64)?;
    let s = std::str::from_utf8(&raw).map_err(|_| SaslError::Utf8)?;
    Ok(Zeroizing::new(s.to_owned()))
}

/// Base64 of a buffer into a zeroizing string allocated once at its final size.
fn encode_b64(raw: &[u8]) -> Zeroizing<String> {
    let len = base64::encoded_len(raw.len(), true).unwrap_or(0);
    let mut s = Zeroizing::new(String::with_capacity(len));
    STANDARD.encode_string(raw, &mut s);
    s
}

/// The AUTH PLAIN initial response for `username`/`password`: base64 of
/// `"\0username\0password"`.
pub fn encode_plain(username: &str, password: &str) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    encode_b64(&raw)
}

/// One AUTH LOGIN response line (base64 of `value`).
pub fn encode_login_field(value: &str) -> Zeroizing<String> {
    encode_b64(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-P@ss";

    #[test]
    fn challenges_decode() {
        assert_eq!(
            *decode_login_field(LOGIN_USERNAME_CHALLENGE).unwrap(),
            "Username:"
        );
        assert_eq!(
            *decode_login_field(LOGIN_PASSWORD_CHALLENGE).unwrap(),
            "Password:"
        );
    }

    #[test]
    fn plain_roundtrip() {
        let enc = encode_plain("alice@x.example", SECRET);
        assert_eq!(
            enc.as_str(),
            STANDARD.encode(format!("\0alice@x.example\0{SECRET}"))
        );
        let id = decode_plain(&enc).unwrap();
        assert_eq!(id.username, "alice@x.example");
        assert_eq!(id.password.as_str(), SECRET);
    }

    #[test]
    fn plain_known_vector() {
        // RFC 4616-style: "\0tim\0tanstaaftanstaaf"
        let id = decode_plain("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
        assert_eq!(id.username, "tim");
        assert_eq!(id.password.as_str(), "tanstaaftanstaaf");
    }

    #[test]
    fn plain_whitespace_and_padding() {
        let enc = STANDARD.encode("\0bob\0pw");
        let id = decode_plain(&format!("  {enc}\r\n")).unwrap();
        assert_eq!(id.username, "bob");
        let unpadded = enc.trim_end_matches('=');
        assert_ne!(unpadded, enc);
        assert_eq!(decode_plain(unpadded).unwrap().username, "bob");
    }

    #[test]
    fn plain_authzid() {
        let same = STANDARD.encode("bob\0bob\0pw");
        assert_eq!(decode_plain(&same).unwrap().username, "bob");
        let other = STANDARD.encode("admin\0bob\0pw");
        assert_eq!(decode_plain(&other), Err(SaslError::Authzid));
    }

    #[test]
    fn plain_malformed() {
        for raw in ["bob\0pw", "\0\0pw", "\0bob\0", "\0bob\0pw\0x", "", "nonul"] {
            assert_eq!(
                decode_plain(&STANDARD.encode(raw)),
                Err(SaslError::Malformed),
                "{raw:?}"
            );
        }
        assert_eq!(decode_plain("="), Err(SaslError::Malformed));
    }

    #[test]
    fn errors() {
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain(" * "), Err(SaslError::Cancelled));
        assert_eq!(decode_login_field("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain("!!!notb64"), Err(SaslError::Base64));
        assert_eq!(decode_login_field("a b"), Err(SaslError::Base64));
        assert_eq!(
            decode_plain(&STANDARD.encode(b"\0bob\0\xff\xfe")),
            Err(SaslError::Utf8)
        );
        assert_eq!(
            decode_login_field(&STANDARD.encode(b"\xc3")),
            Err(SaslError::Utf8)
        );
    }

    #[test]
    fn login_roundtrip() {
        let enc = encode_login_field(SECRET);
        assert_eq!(decode_login_field(&enc).unwrap().as_str(), SECRET);
        assert_eq!(encode_login_field("").as_str(), "");
        assert_eq!(decode_login_field("=").unwrap().as_str(), "");
        assert_eq!(encode_login_field("user").as_str(), "dXNlcg==");
    }

    #[test]
    fn nothing_prints_the_password() {
        let id = decode_plain(&encode_plain("carol", SECRET)).unwrap();
        let dbg = format!("{id:?} {id:#?} {id}");
        assert!(dbg.contains("carol"));
        assert!(!dbg.contains(SECRET), "{dbg}");
        let b64_secret = encode_login_field(SECRET);
        assert!(!dbg.contains(b64_secret.as_str()));

        // Errors from inputs that contain the password never echo it.
        let inputs = [
            STANDARD.encode(format!("admin\0carol\0{SECRET}")),
            STANDARD.encode(format!("\0carol\0{SECRET}\0")),
            format!("{SECRET}!"),
            format!("\0carol\0{SECRET}"),
        ];
        for input in &inputs {
            for e in [decode_plain(input).err(), decode_login_field(input).err()]
                .into_iter()
                .flatten()
            {
                let text = format!("{e} {e:?}");
                assert!(!text.contains(SECRET), "{text}");
                assert!(!text.contains(input.as_str()), "{text}");
            }
        }
        for e in [
            SaslError::Base64,
            SaslError::Malformed,
            SaslError::Authzid,
            SaslError::Utf8,
            SaslError::Cancelled,
        ] {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(SECRET));
        }
    }
}
