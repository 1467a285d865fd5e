//! AUTH PLAIN, LOGIN and XOAUTH2 on a capture connection.

use tokio::io::AsyncWriteExt;

use super::session::{Conn, Io, Next};
use super::{lock, Account, AuthAttempt};
use crate::smtp::sasl;

impl Conn {
    pub(super) async fn auth(&mut self, line: &str, io: &mut Box<dyn Io>) -> Next {
        let mut parts = line.split_whitespace().skip(1);
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let mut echo = String::new();
        let identity = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.challenge("334 \r\n", io).await {
                        Some(r) => r,
                        None => return Next::Close,
                    },
                };
                echo.push_str(&resp);
                sasl::decode_plain(&resp)
                    .ok()
                    .map(|i| (i.username, i.password.to_string()))
            }
            "LOGIN" => {
                let user = match self.challenge("334 VXNlcm5hbWU6\r\n", io).await {
                    Some(r) => r,
                    None => return Next::Close,
                };
                let pass = match self.challenge("334 UGFzc3dvcmQ6\r\n", io).await {
                    Some(r) => r,
                    None => return Next::Close,
                };
                echo = format!("{user} {pass}");
                match (
                    sasl::decode_login_field(&user),
                    sasl::decode_login_field(&pass),
                ) {
                    (Ok(u), Ok(p)) => Some((u.to_string(), p.to_string())),
                    _ => None,
                }
            }
            "XOAUTH2" if self.config.oauth.is_some() => {
                return self.xoauth2(initial, io).await;
            }
            _ => {
                let _ = io.write_all(b"504 5.5.4 mechanism not supported\r\n").await;
                return Next::Continue;
            }
        };
        let account = identity
            .filter(|_| !self.config.faults.echo_auth)
            .and_then(|(u, p)| {
                self.config
                    .accounts
                    .iter()
                    .find(|a| a.username == u && a.password == p)
                    .cloned()
            });
        lock(&self.rec).auths.push(AuthAttempt {
            account: account.as_ref().map(|a| a.name.clone()),
            tls: self.tls,
        });
        let reply = if account.is_some() {
            self.account = account;
            "235 2.7.0 authenticated\r\n".to_string()
        } else if self.config.faults.echo_auth {
            format!("535 5.7.8 bad credentials: {echo}\r\n")
        } else {
            "535 5.7.8 bad credentials\r\n".to_string()
        };
        if io.write_all(reply.as_bytes()).await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }

    /// `AUTH XOAUTH2`: the bearer token must be live at the issuer (and,
    /// for a jwt_bearer token, issued for this `user=`). A refusal is the
    /// providers' error challenge, then `535` after the client's empty line.
    async fn xoauth2(&mut self, initial: Option<String>, io: &mut Box<dyn Io>) -> Next {
        let resp = match initial {
            Some(r) => r,
            None => match self.challenge("334 \r\n", io).await {
                Some(r) => r,
                None => return Next::Close,
            },
        };
        let account = match &self.config.oauth {
            Some(tokens) if !self.config.faults.reject_xoauth2 && !self.config.faults.echo_auth => {
                tokens.check_xoauth2(&resp)
            }
            _ => None,
        }
        .map(|(name, user)| Account {
            name,
            username: user,
            password: String::new(),
        });
        lock(&self.rec).auths.push(AuthAttempt {
            account: account.as_ref().map(|a| a.name.clone()),
            tls: self.tls,
        });
        if account.is_some() {
            self.account = account;
            return match io.write_all(b"235 2.7.0 Accepted\r\n").await {
                Ok(()) => Next::Continue,
                Err(_) => Next::Close,
            };
        }
        let error = crate::demo::issuer::XOAUTH2_ERROR_CHALLENGE;
        if self
            .challenge(&format!("334 {error}\r\n"), io)
            .await
            .is_none()
        {
            return Next::Close;
        }
        let refusal = if self.config.faults.echo_auth {
            format!("535 5.7.8 Username and Password not accepted: {resp}\r\n")
        } else {
            "535 5.7.8 Username and Password not accepted\r\n".to_string()
        };
        match io.write_all(refusal.as_bytes()).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::Close,
        }
    }

    pub(super) async fn challenge(&mut self, prompt: &str, io: &mut Box<dyn Io>) -> Option<String> {
        io.write_all(prompt.as_bytes()).await.ok()?;
        loop {
            if let Some(line) = self.next_line() {
                return Some(line);
            }
            if !self.read(io).await {
                return None;
            }
        }
    }
}
