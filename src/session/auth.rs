//! AUTH: the client's SASL exchange ends here; the presented identity is
//! checked against `client.accept` (`binding`) and never forwarded.

use serde_json::json;
use tokio::time::Instant;

use super::{binding, Flow, Mail, Outcome, Session, Stage, MAX_AUTH_FAILURES};
use crate::audit::{self, Reason};
use crate::credential::CredentialState;
use crate::policy::ClientAuth;
use crate::smtp::command::Mechanism;
use crate::smtp::line::{Line, COMMAND_READ};
use crate::smtp::reply::{local, Reply};
use crate::smtp::{sasl, MAX_AUTH_LINE};

impl Session {
    pub(super) async fn auth(&mut self, mechanism: Mechanism, initial: Option<String>) -> Flow {
        if self.rt.policy.client.auth == ClientAuth::None {
            return self.bad_command(local::auth_not_offered());
        }
        if !self.greeted() {
            return self.bad_command(local::need_ehlo());
        }
        if self.bound() {
            return self.bad_command(local::already_authenticated());
        }
        let identity = match mechanism {
            Mechanism::Plain => {
                let response = match initial {
                    Some(r) => zeroize::Zeroizing::new(r),
                    None => match self.auth_continue("").await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    },
                };
                sasl::decode_plain(&response)
            }
            Mechanism::Login => {
                let user = match initial {
                    Some(r) => zeroize::Zeroizing::new(r),
                    None => match self.auth_continue(sasl::LOGIN_USERNAME_CHALLENGE).await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    },
                };
                match sasl::decode_login_field(&user) {
                    Ok(username) => {
                        match self.auth_continue(sasl::LOGIN_PASSWORD_CHALLENGE).await {
                            Ok(pass) => {
                                sasl::decode_login_field(&pass).map(|password| sasl::Identity {
                                    username: username.to_string(),
                                    password,
                                })
                            }
                            Err(flow) => return flow,
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Mechanism::Other => return self.bad_command(local::auth_mechanism()),
        };
        let identity = match identity {
            Ok(identity) => identity,
            Err(sasl::SaslError::Cancelled) => {
                self.reply(local::auth_cancelled());
                return Flow::Continue;
            }
            Err(sasl::SaslError::Authzid) => return self.auth_failed(None),
            Err(_) => return self.bad_command(local::auth_malformed()),
        };
        // `password: mounted` compares with the credential in force now, not
        // the one this session saw when it connected.
        self.take_snapshot();
        let state = self.rt.credential.clone();
        let cred = match state {
            CredentialState::Ready(cred) => cred,
            CredentialState::NotReady(..) => {
                self.reply(local::not_ready());
                return Flow::End(Outcome::Rejected);
            }
        };
        let accept = &self.rt.policy.client.accept;
        if binding::identity_allowed(
            accept,
            &cred,
            &identity.username,
            identity.password.as_bytes(),
        ) {
            self.stage = Stage::Bound(Mail::Idle);
            self.info.client_identity = Some(identity.username.clone());
            self.reply(local::auth_ok());
            Flow::Continue
        } else {
            self.auth_failed(Some(&identity.username))
        }
    }

    pub(super) fn auth_failed(&mut self, username: Option<&str>) -> Flow {
        self.auth_failures += 1;
        let reply = local::auth_failed();
        // A username the policy does not know may be a key typed into the
        // wrong field: only its hash is logged.
        let known = username.is_some_and(|u| {
            self.rt
                .policy
                .client
                .accept
                .iter()
                .any(|rule| rule.username == u)
        });
        let extra = match username {
            Some(u) if known => json!({ "presented_username": u }),
            Some(u) => json!({ "presented_username_sha256": username_digest(u) }),
            None => json!({ "presented_username": null }),
        };
        audit::reject(
            &self.info,
            Reason::IdentityMismatch,
            &reply.last_line(),
            extra,
        );
        self.reply(reply);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.reply(local::too_many_errors());
            return Flow::End(Outcome::Rejected);
        }
        Flow::Continue
    }

    /// Sends a `334` challenge and reads one response line (up to 12288 octets).
    pub(super) async fn auth_continue(
        &mut self,
        challenge: &str,
    ) -> Result<zeroize::Zeroizing<String>, Flow> {
        self.reply(Reply::new(334, challenge));
        if self.flush().await.is_err() {
            return Err(Flow::End(Outcome::Error));
        }
        let until = Instant::now() + self.rt.policy.limits.command_timeout;
        loop {
            // Its own buffer, wiped on drop: an AUTH response is a secret.
            let mut line = zeroize::Zeroizing::new(Vec::new());
            match self.inbuf.next_line(MAX_AUTH_LINE, &mut line) {
                Line::Ok => {
                    return match std::str::from_utf8(&line) {
                        Ok(s) => Ok(zeroize::Zeroizing::new(s.to_string())),
                        Err(_) => Err(self.bad_command(local::auth_malformed())),
                    };
                }
                Line::TooLong => return Err(self.bad_command(local::line_too_long())),
                Line::Flood => {
                    self.reply(local::line_too_long());
                    return Err(Flow::End(Outcome::Rejected));
                }
                Line::NeedMore => {
                    if let Err(outcome) = self.read_more(until, false, COMMAND_READ).await {
                        return Err(Flow::End(outcome));
                    }
                }
            }
        }
    }
}

/// First 12 hex digits of the username's sha256.
fn username_digest(username: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(username.as_bytes());
    hex::encode(&digest[..6])
}
