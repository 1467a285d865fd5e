//! Validation of `client` (contract §3): how the local mailer
//! authenticates (`accept`); `client.tls` is in `client_tls.rs`.

use super::raw::{self, RawClientAuth};
use super::{AcceptRule, ClientAuth, ClientPolicy, PasswordMatch, Pin, Validator};

impl Validator<'_> {
    pub(super) fn client(&mut self, rc: raw::RawClient) -> ClientPolicy {
        let auth = match rc.auth {
            None | Some(RawClientAuth::Required) => ClientAuth::Required,
            Some(RawClientAuth::None) => ClientAuth::None,
        };
        let mut accept = Vec::new();
        let list = rc.accept.unwrap_or_default();
        if auth == ClientAuth::Required && list.is_empty() {
            self.err(
                "client.accept",
                "with `auth: required`, list at least one identity (`username` + `password`)",
            );
        }
        for (i, a) in list.into_iter().enumerate() {
            let username = match a.username {
                Some(u) if !u.is_empty() => u,
                _ => {
                    self.err(
                        &format!("client.accept[{i}].username"),
                        "required, non-empty",
                    );
                    String::new()
                }
            };
            let key = format!("client.accept[{i}].password");
            let password = match a.password.as_deref() {
                None => {
                    self.err(&key, "required: `mounted`, `any` or `sha256:<64 hex>`");
                    PasswordMatch::Any
                }
                Some("mounted") => PasswordMatch::Mounted,
                Some("any") => PasswordMatch::Any,
                Some(s) if s.starts_with("sha256:") => match Pin::parse(s) {
                    Ok(p) => PasswordMatch::Sha256(*p.as_bytes()),
                    Err(m) => {
                        self.err(&key, format!("invalid digest: {m}"));
                        PasswordMatch::Any
                    }
                },
                Some(_) => {
                    self.err(
                        &key,
                        "must be `mounted`, `any` or `sha256:<64 hex>` \
                         (a plain-text password is not accepted; the value is not shown)",
                    );
                    PasswordMatch::Any
                }
            };
            accept.push(AcceptRule { username, password });
        }
        let tls = rc.tls.map(|t| self.client_tls(t));
        ClientPolicy { auth, accept, tls }
    }
}
