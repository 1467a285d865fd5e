//! Client commands, parsed with `smtp-proto` and narrowed to what smtpbind
//! relays. Parameters that the path cannot honour end to end are refused
//! here (`555`), and the `AUTH=` MAIL parameter is parsed only to be dropped:
//! it never reaches the upstream.

use smtp_proto::{Error as ProtoError, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Auth {
        mechanism: Mechanism,
        /// The initial response, if one was given (`=` means empty).
        initial: Option<String>,
    },
    Mail {
        /// Reverse path without brackets; empty for the null sender `<>`.
        address: String,
        /// SIZE= parameter.
        size: Option<u64>,
        /// BODY=8BITMIME was given.
        eight_bit: bool,
    },
    Rcpt {
        address: String,
    },
    Data,
    /// BDAT with its chunk size and whether it is the LAST chunk.
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// Known verbs smtpbind does not implement (EXPN, ETRN, ATRN, BURL, LHLO).
    NotImplemented,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    Unknown,
    Syntax(&'static str),
    BadSender,
    BadRecipient,
    Parameter(String),
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let mut owned = Vec::with_capacity(line.len() + 2);
    owned.extend_from_slice(line);
    owned.extend_from_slice(b"\r\n");
    let request = Request::parse(&mut owned.iter()).map_err(|e| match e {
        ProtoError::UnknownCommand => CommandError::Unknown,
        ProtoError::InvalidSenderAddress => CommandError::BadSender,
        ProtoError::InvalidRecipientAddress => CommandError::BadRecipient,
        ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
        ProtoError::InvalidParameter { param } => CommandError::Parameter(param.to_string()),
        ProtoError::UnsupportedParameter { param } => CommandError::Parameter(param),
        _ => CommandError::Syntax("malformed command"),
    })?;
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Auth {
            mechanism,
            initial_response,
        } => Command::Auth {
            mechanism: match mechanism {
                smtp_proto::AUTH_PLAIN => Mechanism::Plain,
                smtp_proto::AUTH_LOGIN => Mechanism::Login,
                _ => Mechanism::Other,
            },
            initial: if initial_response.is_empty() {
                None
            } else {
                Some(initial_response.into_owned())
            },
        },
        Request::Mail { from } => {
            let body_flags = smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME;
            if from.flags & !body_flags != 0 {
                return Err(CommandError::Parameter(
                    "on MAIL (only SIZE, BODY, AUTH)".into(),
                ));
            }
            if from.trans_id.is_some()
                || from.env_id.is_some()
                || from.solicit.is_some()
                || from.mtrk.is_some()
                || from.by != 0
                || from.hold_for != 0
                || from.hold_until != 0
                || from.mt_priority != 0
            {
                return Err(CommandError::Parameter(
                    "on MAIL (only SIZE, BODY, AUTH)".into(),
                ));
            }
            // `from.auth` (the AUTH= parameter) is deliberately dropped.
            Command::Mail {
                address: from.address.into_owned(),
                size: (from.size != 0).then_some(from.size as u64),
                eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            }
        }
        Request::Rcpt { to } => {
            if to.orcpt.is_some() || to.flags != 0 || to.rrvs != 0 {
                return Err(CommandError::Parameter("on RCPT (none supported)".into()));
            }
            Command::Rcpt {
                address: to.address.into_owned(),
            }
        }
        Request::Data => Command::Data,
        Request::Bdat {
            chunk_size,
            is_last,
        } => Command::Bdat {
            size: chunk_size,
            last: is_last,
        },
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Help { .. } => Command::Help,
        Request::StartTls => Command::StartTls,
        Request::Expn { .. }
        | Request::Etrn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. }
        | Request::Lhlo { .. } => Command::NotImplemented,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_with_size_body_and_auth_param() {
        let c =
            parse(b"MAIL FROM:<a@acme.example> SIZE=1000 BODY=8BITMIME AUTH=<>").expect("parses");
        assert_eq!(
            c,
            Command::Mail {
                address: "a@acme.example".into(),
                size: Some(1000),
                eight_bit: true
            }
        );
    }

    #[test]
    fn null_sender_and_case_insensitive_verbs() {
        assert_eq!(
            parse(b"mail from:<>").expect("parses"),
            Command::Mail {
                address: String::new(),
                size: None,
                eight_bit: false
            }
        );
        assert_eq!(
            parse(b"rcpt to:<X@Y.example>").expect("parses"),
            Command::Rcpt {
                address: "X@Y.example".into()
            }
        );
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse(b"AUTH PLAIN").expect("parses"),
            Command::Auth {
                mechanism: Mechanism::Plain,
                initial: None
            }
        );
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg==").expect("parses"),
            Command::Auth {
                mechanism: Mechanism::Plain,
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(
            parse(b"AUTH LOGIN").expect("parses"),
            Command::Auth {
                mechanism: Mechanism::Login,
                initial: None
            }
        );
        assert!(matches!(
            parse(b"AUTH CRAM-MD5"),
            Ok(Command::Auth {
                mechanism: Mechanism::Other,
                ..
            })
        ));
    }

    #[test]
    fn unsupported_parameters_and_garbage() {
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.example> RET=FULL"),
            Err(CommandError::Parameter(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a@b.example> NOTIFY=NEVER"),
            Err(CommandError::Parameter(_))
        ));
        assert_eq!(parse(b"FOO bar"), Err(CommandError::Unknown));
        assert!(parse(b"MAIL TO:<a@b>").is_err());
        assert!(parse(b"\x00\xff\x01").is_err());
        assert_eq!(
            parse(b"EXPN list").expect("parses"),
            Command::NotImplemented
        );
        assert_eq!(
            parse(b"BDAT 10 LAST").expect("parses"),
            Command::Bdat {
                size: 10,
                last: true
            }
        );
        assert_eq!(
            parse(b"BDAT 0").expect("parses"),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
    }
}
