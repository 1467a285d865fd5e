//! `AUTH XOAUTH2` (contract §9): the token in hand; on the provider's
//! refusal (a `334` error challenge, answered with an empty line, then
//! `535`) one refresh and one retry, then the refusal stands (`454 4.7.0`
//! to the client).

use super::{Connection, UpstreamError};
use crate::identity::{xoauth2_payload, Token, TokenSource};

enum Attempt {
    Accepted,
    Refused(String),
}

impl Connection {
    pub(super) async fn authenticate_xoauth2(
        &mut self,
        source: &std::sync::Arc<TokenSource>,
        token_wait: std::time::Duration,
    ) -> Result<(), UpstreamError> {
        if !self.caps.auth_xoauth2 {
            return Err(UpstreamError::AuthNotOffered);
        }
        let token = bounded(token_wait, source.token()).await?;
        let epoch = source.epoch();
        if let Attempt::Accepted = self.xoauth2_attempt(source.user(), &token).await? {
            self.token_epoch = Some((source.clone(), epoch));
            return Ok(());
        }
        metrics::counter!("smtpbind_upstream_auth_failures_total").increment(1);
        let token = bounded(token_wait, source.refresh_rejected(token.generation)).await?;
        let epoch = source.epoch();
        match self.xoauth2_attempt(source.user(), &token).await? {
            Attempt::Accepted => {
                self.token_epoch = Some((source.clone(), epoch));
                Ok(())
            }
            Attempt::Refused(line) => {
                metrics::counter!("smtpbind_upstream_auth_failures_total").increment(1);
                Err(UpstreamError::AuthRejected(line))
            }
        }
    }

    async fn xoauth2_attempt(
        &mut self,
        user: &str,
        token: &Token,
    ) -> Result<Attempt, UpstreamError> {
        let payload = xoauth2_payload(user, token.value.expose());
        self.scrub.add(token.value.expose().as_bytes());
        self.scrub.add(payload.as_bytes());
        let mut line = zeroize::Zeroizing::new(Vec::with_capacity(payload.len() + 16));
        line.extend_from_slice(b"AUTH XOAUTH2 ");
        line.extend_from_slice(payload.as_bytes());
        line.extend_from_slice(b"\r\n");
        let reply = self.command(&line).await?;
        match reply.code {
            235 => Ok(Attempt::Accepted),
            334 => {
                // The error challenge: the empty response ends the exchange.
                let end = self.command(b"\r\n").await?;
                Ok(Attempt::Refused(end.last_line()))
            }
            _ => Ok(Attempt::Refused(reply.last_line())),
        }
    }

    /// True when this connection authenticated with a token before a gap
    /// in which no usable token was held: it must not be reused.
    pub(super) fn token_gap(&self) -> bool {
        self.token_epoch
            .as_ref()
            .is_some_and(|(source, epoch)| source.epoch() != *epoch)
    }
}

/// A token, waiting for a fetch in flight at most `connect_timeout`.
async fn bounded(
    wait: std::time::Duration,
    fetch: impl std::future::Future<Output = Result<Token, crate::identity::IdentityError>>,
) -> Result<Token, UpstreamError> {
    match tokio::time::timeout(wait, fetch).await {
        Ok(Ok(token)) => Ok(token),
        Ok(Err(e)) => Err(UpstreamError::Token(e.to_string())),
        Err(_) => Err(UpstreamError::Token(
            "no token within connect_timeout".into(),
        )),
    }
}
