//! Validation of `credential` (contract §3): the mounted Secret, the
//! mechanism and the pins; §9's `oauth2` and `ses` are in `identity.rs`.

use std::path::PathBuf;

use super::raw::{self, RawMechanism};
use super::{CredentialPolicy, Mechanism, Pin, Validator};

impl Validator<'_> {
    pub(super) fn credential(&mut self, rc: raw::RawCredential) -> CredentialPolicy {
        let secret_dir = match rc.secret_dir {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                self.err(
                    "credential.secret_dir",
                    "required: the directory of the mounted basic-auth Secret",
                );
                PathBuf::new()
            }
        };
        let mechanism = match rc.mechanism {
            None | Some(RawMechanism::Auto) => Mechanism::Auto,
            Some(RawMechanism::Plain) => Mechanism::Plain,
            Some(RawMechanism::Login) => Mechanism::Login,
            Some(RawMechanism::Xoauth2) => Mechanism::XOAuth2,
            Some(RawMechanism::Ses) => Mechanism::Ses,
            Some(RawMechanism::None) => Mechanism::None,
        };
        let mut pins: Vec<Pin> = Vec::new();
        match rc.pins {
            None => self.err(
                "credential.pins",
                "required: at least one `sha256:<64 hex>` pin of the password file",
            ),
            Some(list) if list.is_empty() => self.err(
                "credential.pins",
                "must list at least one `sha256:<64 hex>` pin of the password file",
            ),
            Some(list) => {
                let mut seen: Vec<(Pin, usize)> = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    match Pin::parse(s) {
                        Ok(pin) => {
                            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == pin) {
                                let first = *first;
                                self.err(
                                    &format!("credential.pins[{i}]"),
                                    format!("duplicate of credential.pins[{first}]"),
                                );
                            } else {
                                seen.push((pin, i));
                                pins.push(pin);
                            }
                        }
                        Err(m) => self.err(
                            &format!("credential.pins[{i}]"),
                            format!("invalid pin: {m}"),
                        ),
                    }
                }
            }
        }
        let oauth2 = self.oauth2(mechanism, rc.oauth2);
        let ses = self.ses(mechanism, rc.ses);
        CredentialPolicy {
            secret_dir,
            mechanism,
            pins,
            oauth2,
            ses,
        }
    }
}
