//! Google service-account keys and the RS256 assertion of the jwt_bearer
//! grant (RFC 7523), signed with ring — the crypto provider rustls already
//! uses here, so no second crypto stack is linked for one signature.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{IdentityError, Secret};

/// Lifetime of an assertion (Google's maximum is one hour).
const ASSERTION_SECONDS: u64 = 3600;

#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
}

/// A parsed service-account key. Debug shows the account, never the key.
pub struct ServiceAccount {
    client_email: String,
    key_id: Option<String>,
    key: RsaKeyPair,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    /// Parses the JSON key file's bytes (the mounted `password`). Errors
    /// name the missing or bad field, never its content.
    pub fn parse(json: &str) -> Result<ServiceAccount, IdentityError> {
        let bad = |what: &str| IdentityError::ServiceAccountKey(what.to_string());
        let file: KeyFile = serde_json::from_str(json)
            .map_err(|_| bad("the password is not a service account JSON key"))?;
        let client_email = file
            .client_email
            .filter(|e| e.contains('@'))
            .ok_or_else(|| bad("missing client_email"))?;
        let pem = Zeroizing::new(file.private_key.ok_or_else(|| bad("missing private_key"))?);
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| bad("private_key is not a PKCS#8 PEM key"))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| bad("private_key is not a usable RSA key (2048-8192 bits)"))?;
        Ok(ServiceAccount {
            client_email,
            key_id: file.private_key_id,
            key,
        })
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The signed assertion: `iss` the account, `sub` the mailbox, `aud`
    /// the token endpoint, valid for one hour from now.
    pub fn assertion(
        &self,
        user: &str,
        audience: &str,
        scope: &str,
    ) -> Result<Secret, IdentityError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": user,
            "aud": audience,
            "scope": scope,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        });
        let mut text = String::new();
        text.push_str(&URL_SAFE_NO_PAD.encode(header.to_string()));
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                text.as_bytes(),
                &mut signature,
            )
            .map_err(|_| IdentityError::ServiceAccountKey("signing failed".into()))?;
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_named_not_shown() {
        for (json, part) in [
            ("not json", "not a service account"),
            (r#"{"private_key":"x"}"#, "client_email"),
            (r#"{"client_email":"a@b"}"#, "private_key"),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"}"#,
                "RSA",
            ),
        ] {
            let e = ServiceAccount::parse(json).expect_err(json).to_string();
            assert!(e.contains(part), "{e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
    }
}
