//! Client commands, narrowed to what smtpbind relays. MAIL and RCPT are
//! parsed by [`super::envelope`] into typed values (the upstream command is
//! written from them); every other verb by `smtp-proto`. Parameters that the
//! path cannot honour end to end are refused (`555`), and the `AUTH=` MAIL
//! parameter is parsed only to be dropped: it never reaches the upstream.

use smtp_proto::{Error as ProtoError, Request};

use super::envelope::{self, EnvelopeError, MailFrom, RcptTo};
use super::MAX_COMMAND_LINE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(String),
    Helo(String),
    Auth {
        mechanism: Mechanism,
        /// The initial response, if one was given (`=` means empty).
        initial: Option<String>,
    },
    Mail(MailFrom<'a>),
    Rcpt(RcptTo<'a>),
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
    /// MAIL FROM's path or parameters.
    Sender(EnvelopeError),
    /// RCPT TO's path or parameters.
    Recipient(EnvelopeError),
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    if let Some(arg) = strip_verb(line, b"MAIL FROM:", b"MAIL") {
        return match arg {
            Some(arg) => envelope::parse_mail(arg)
                .map(Command::Mail)
                .map_err(CommandError::Sender),
            None => Err(CommandError::Syntax("expected MAIL FROM:<address>")),
        };
    }
    if let Some(arg) = strip_verb(line, b"RCPT TO:", b"RCPT") {
        return match arg {
            Some(arg) => envelope::parse_rcpt(arg)
                .map(Command::Rcpt)
                .map_err(CommandError::Recipient),
            None => Err(CommandError::Syntax("expected RCPT TO:<address>")),
        };
    }
    // smtp-proto reads up to the line end: the line and CRLF, on the stack
    // for a command line (no allocation per command), else on the heap.
    let mut stack = [0u8; MAX_COMMAND_LINE + 2];
    let mut heap = Vec::new();
    let framed: &[u8] = match stack.get_mut(..line.len() + 2) {
        Some(buf) => {
            buf[..line.len()].copy_from_slice(line);
            buf[line.len()..].copy_from_slice(b"\r\n");
            buf
        }
        None => {
            heap.reserve_exact(line.len() + 2);
            heap.extend_from_slice(line);
            heap.extend_from_slice(b"\r\n");
            &heap
        }
    };
    let request = Request::parse(&mut framed.iter()).map_err(|e| match e {
        ProtoError::UnknownCommand => CommandError::Unknown,
        ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
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
        // Routed to `envelope` above; smtp-proto never decides a path.
        Request::Mail { .. } | Request::Rcpt { .. } => {
            return Err(CommandError::Syntax("malformed command"))
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

/// For a line whose verb is `verb`: `Some(Some(argument))` after `prefix`
/// (case-insensitive), `Some(None)` when the verb is there but the rest is
/// not `prefix`; `None` for another verb.
fn strip_verb<'a>(line: &'a [u8], prefix: &[u8], verb: &[u8]) -> Option<Option<&'a [u8]>> {
    let is_verb = line.len() >= verb.len()
        && line[..verb.len()].eq_ignore_ascii_case(verb)
        && line.get(verb.len()).is_none_or(|&b| b == b' ');
    if !is_verb {
        return None;
    }
    if line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(Some(&line[prefix.len()..]))
    } else {
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::smtp::envelope::{Body, Mailbox, ReversePath};

    #[test]
    fn mail_with_size_body_and_auth_param() {
        let c =
            parse(b"MAIL FROM:<a@acme.example> SIZE=1000 BODY=8BITMIME AUTH=<>").expect("parses");
        assert_eq!(
            c,
            Command::Mail(MailFrom {
                path: ReversePath::Mailbox(Mailbox {
                    local: "a".into(),
                    domain: "acme.example".into()
                }),
                size: Some(1000),
                body: Some(Body::EightBitMime),
                smtputf8: false,
            })
        );
    }

    #[test]
    fn null_sender_and_case_insensitive_verbs() {
        assert_eq!(
            parse(b"mail from:<>").expect("parses"),
            Command::Mail(MailFrom {
                path: ReversePath::Null,
                size: None,
                body: None,
                smtputf8: false,
            })
        );
        assert_eq!(
            parse(b"rcpt to:<X@Y.example>").expect("parses"),
            Command::Rcpt(RcptTo {
                mailbox: Mailbox {
                    local: "X".into(),
                    domain: "Y.example".into()
                }
            })
        );
        assert!(matches!(
            parse(b"MAIL TO:<a@b.example>"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"RCPT FROM:<a@b.example>"),
            Err(CommandError::Syntax(_))
        ));
        // Other spellings of the verb never reach a lenient parser: a TAB
        // or a space before the colon is refused, not guessed at.
        for line in [
            &b"MAIL\tFROM:<a@b.example>"[..],
            b"MAIL FROM :<a@b.example>",
            b"MAIL  FROM:<a@b.example>",
            b"RCPT\tTO:<a@b.example>",
        ] {
            assert!(
                matches!(parse(line), Err(CommandError::Syntax(_))),
                "{line:?}"
            );
        }
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
            Err(CommandError::Sender(EnvelopeError::Parameter(_)))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a@b.example> NOTIFY=NEVER"),
            Err(CommandError::Recipient(EnvelopeError::Parameter(_)))
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
