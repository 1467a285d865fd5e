//! Upstream AUTH with the mounted credential or the SES derived password:
//! PLAIN when offered (or required), else LOGIN (XOAUTH2 is `xoauth2.rs`).
//! Every secret sent is added to the connection's scrub list first.

use std::time::Duration;

use super::{Connection, UpstreamError};
use crate::credential::Credential;
use crate::identity::UpstreamAuth;
use crate::policy::Mechanism;
use crate::smtp::reply::Reply;
use crate::smtp::sasl;

impl Connection {
    pub(super) async fn authenticate(
        &mut self,
        cred: &Credential,
        mechanism: Mechanism,
        token_wait: Duration,
    ) -> Result<(), UpstreamError> {
        // The mounted secret is never sent with XOAUTH2, but an echo of
        // it is scrubbed all the same.
        self.scrub.add(cred.password().as_bytes());
        let password = match cred.upstream() {
            UpstreamAuth::XOAuth2(source) => {
                return self.authenticate_xoauth2(source, token_wait).await
            }
            UpstreamAuth::Ses(derived) => derived.expose(),
            UpstreamAuth::Mounted => cred.password(),
        };
        self.scrub.add(password.as_bytes());
        let use_plain = match mechanism {
            // Validated: only with `tls: none` + `insecure: true`.
            Mechanism::None => return Ok(()),
            Mechanism::Plain => true,
            Mechanism::Login => false,
            Mechanism::Auto | Mechanism::Ses if self.caps.auth_plain => true,
            Mechanism::Auto | Mechanism::Ses if self.caps.auth_login => false,
            Mechanism::Auto | Mechanism::Ses | Mechanism::XOAuth2 => {
                return Err(UpstreamError::AuthNotOffered)
            }
        };
        let reply = if use_plain {
            let payload = sasl::encode_plain(cred.username(), password);
            self.scrub.add(payload.as_bytes());
            let mut line = zeroize::Zeroizing::new(Vec::with_capacity(payload.len() + 16));
            line.extend_from_slice(b"AUTH PLAIN ");
            line.extend_from_slice(payload.as_bytes());
            line.extend_from_slice(b"\r\n");
            self.command(&line).await?
        } else {
            let first = self.command(b"AUTH LOGIN\r\n").await?;
            if first.code != 334 {
                return Err(UpstreamError::AuthRejected(first.last_line()));
            }
            let user = self
                .login_step(&sasl::encode_login_field(cred.username()))
                .await?;
            if user.code != 334 {
                return Err(UpstreamError::AuthRejected(user.last_line()));
            }
            self.login_step(&sasl::encode_login_field(password)).await?
        };
        if reply.code != 235 {
            metrics::counter!("smtpbind_upstream_auth_failures_total").increment(1);
            return Err(UpstreamError::AuthRejected(reply.last_line()));
        }
        Ok(())
    }

    async fn login_step(&mut self, field: &str) -> Result<Reply, UpstreamError> {
        let mut line = zeroize::Zeroizing::new(Vec::with_capacity(field.len() + 2));
        line.extend_from_slice(field.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.command(&line).await
    }
}
