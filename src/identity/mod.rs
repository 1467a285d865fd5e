//! Provider identities beyond a password (contract §9): what the upstream
//! AUTH is made of once the mounted Secret is pinned.
//!
//! ```text
//! mounted   the Secret's username and password as they are (PLAIN/LOGIN)
//! ses       username = AWS access key id; the SMTP password derived from
//!           the secret access key for the region (ses.rs)
//! xoauth2   an OAuth 2.0 access token from the token endpoint (token.rs,
//!           http.rs; jwt.rs signs Google's RS256 assertion), sent as
//!           AUTH XOAUTH2
//! ```
//!
//! Every secret here (client secret, JSON key, assertion, token, derived
//! password) is a [`Secret`]: zeroized on drop, redacted in Debug, never in
//! an error or a log line.

pub mod http;
pub mod jwt;
pub mod ses;
pub mod token;

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use zeroize::Zeroizing;

use crate::policy::{CredentialPolicy, Mechanism, OAuth2Flow};
pub use token::{Grant, Token, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("service account key: {0}")]
    ServiceAccountKey(String),
    #[error("oauth2: {0}")]
    Config(String),
    #[error("{0}")]
    Endpoint(String),
}

/// A secret string: zeroized on drop, never shown by Debug.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value itself: for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the upstream AUTH uses, derived from the pinned Secret.
#[derive(Clone)]
pub enum UpstreamAuth {
    /// The mounted username and password (PLAIN / LOGIN / none).
    Mounted,
    /// SES: the mounted username with the derived SMTP password.
    Ses(Secret),
    /// XOAUTH2 with tokens from this source.
    XOAuth2(Arc<TokenSource>),
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamAuth::Mounted => "Mounted",
            UpstreamAuth::Ses(_) => "Ses(<redacted>)",
            UpstreamAuth::XOAuth2(_) => "XOAuth2",
        })
    }
}

impl UpstreamAuth {
    /// Builds the upstream material for a pinned credential (`username`,
    /// `password` as mounted). XOAUTH2 starts its refresh timer, shared
    /// through `sources`, when `sources` is given and a runtime is running;
    /// without, nothing touches the network (`smtpbind check --credentials`).
    pub fn prepare(
        policy: &CredentialPolicy,
        username: &str,
        password: &str,
        sources: Option<&TokenSources>,
    ) -> Result<UpstreamAuth, IdentityError> {
        match (policy.mechanism, &policy.ses, &policy.oauth2) {
            (Mechanism::Ses, Some(ses), _) => {
                Ok(UpstreamAuth::Ses(ses::smtp_password(password, &ses.region)))
            }
            (Mechanism::XOAuth2, _, Some(oauth2)) => {
                let grant = match oauth2.flow {
                    OAuth2Flow::ClientCredentials => Grant::ClientCredentials {
                        client_id: username.trim().to_string(),
                        client_secret: Secret::new(password.to_string()),
                    },
                    OAuth2Flow::JwtBearer => {
                        Grant::JwtBearer(Box::new(jwt::ServiceAccount::parse(password)?))
                    }
                };
                let source = TokenSource::new(oauth2, grant)?;
                let Some(sources) = sources else {
                    return Ok(UpstreamAuth::XOAuth2(Arc::new(source)));
                };
                let key = SourceKey {
                    pin: crate::policy::Pin::of(password.as_bytes()),
                    username: crate::policy::Pin::of(username.as_bytes()),
                    oauth2: oauth2.clone(),
                };
                Ok(UpstreamAuth::XOAuth2(sources.shared(key, source)))
            }
            _ => Ok(UpstreamAuth::Mounted),
        }
    }

    /// `Ok` when the upstream can be authenticated now (XOAUTH2: a usable
    /// token is held); else the one-line reason.
    pub fn usable(&self) -> Result<(), String> {
        match self {
            UpstreamAuth::XOAuth2(source) => source.usable(),
            UpstreamAuth::Mounted | UpstreamAuth::Ses(_) => Ok(()),
        }
    }
}

/// What a token source is for: the same Secret (by its hashes) and the
/// same `oauth2` section.
#[derive(PartialEq)]
struct SourceKey {
    pin: crate::policy::Pin,
    username: crate::policy::Pin,
    oauth2: crate::policy::OAuth2Policy,
}

/// The process's running token sources, by what they are for: part of the
/// process-lifetime state (`crate::process`), not a global.
#[derive(Default)]
pub struct TokenSources {
    live: std::sync::Mutex<Vec<(SourceKey, std::sync::Weak<TokenSource>)>>,
    /// The process's log context: the sources' refresh lines name its tenant.
    log: crate::log::Context,
}

impl TokenSources {
    pub fn new(log: crate::log::Context) -> TokenSources {
        TokenSources {
            live: std::sync::Mutex::default(),
            log,
        }
    }

    /// The log context the sources write their lines through.
    pub fn log(&self) -> &crate::log::Context {
        &self.log
    }

    /// The running token source for `key` if one is alive (a policy reload
    /// that leaves the credential and its `oauth2` section as they were keeps
    /// the token in hand — and readiness — instead of fetching anew), else
    /// `fresh`, started.
    fn shared(&self, key: SourceKey, fresh: TokenSource) -> Arc<TokenSource> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(_, w)| w.strong_count() > 0);
        if let Some(source) = live
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return source;
        }
        let source = fresh.with_log(self.log.clone()).start();
        live.push((key, Arc::downgrade(&source)));
        source
    }
}

/// The XOAUTH2 initial response: `base64("user=" user "\x01auth=Bearer " token "\x01\x01")`.
pub fn xoauth2_payload(user: &str, token: &str) -> Zeroizing<String> {
    let raw = Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_payload_format() {
        let p = xoauth2_payload(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p.as_bytes())
            .expect("base64");
        assert_eq!(
            raw,
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn one_token_source_per_credential_and_section() {
        let sources = TokenSources::default();
        let policy = |user: &str| CredentialPolicy {
            secret_dir: "/s".into(),
            mechanism: Mechanism::XOAuth2,
            pins: Vec::new(),
            oauth2: Some(crate::policy::OAuth2Policy {
                flow: OAuth2Flow::ClientCredentials,
                token_url: "https://login.example/token".into(),
                scope: "s".into(),
                user: user.into(),
                ca_file: None,
                refresh_before: std::time::Duration::from_secs(300),
            }),
            ses: None,
        };
        let source = |p: &CredentialPolicy, secret: &str| match UpstreamAuth::prepare(
            p,
            "id",
            secret,
            Some(&sources),
        ) {
            Ok(UpstreamAuth::XOAuth2(s)) => s,
            other => panic!("{other:?}"),
        };
        let a = source(&policy("a@x"), "secret-1");
        assert!(Arc::ptr_eq(&a, &source(&policy("a@x"), "secret-1")));
        assert!(!Arc::ptr_eq(&a, &source(&policy("b@x"), "secret-1")));
        assert!(!Arc::ptr_eq(&a, &source(&policy("a@x"), "secret-2")));
        // Not started (check --credentials): never shared.
        match UpstreamAuth::prepare(&policy("a@x"), "id", "secret-1", None) {
            Ok(UpstreamAuth::XOAuth2(s)) => assert!(!Arc::ptr_eq(&a, &s)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", UpstreamAuth::Ses(s)).contains("hunter2"));
    }
}
