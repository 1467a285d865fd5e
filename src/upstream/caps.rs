//! What the upstream offers in its EHLO reply. Parsed from the reply lines
//! (no I/O) so the session can decide what to forward.

use crate::smtp::reply::Reply;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    /// RFC 3030 CHUNKING (BDAT).
    pub chunking: bool,
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// SIZE limit, if advertised (0 = no fixed limit).
    pub size: Option<u64>,
    pub auth_plain: bool,
    pub auth_login: bool,
    pub auth_xoauth2: bool,
}

impl Capabilities {
    /// Parses an EHLO reply (the first line is the server's greeting name).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            // Old servers advertise "AUTH=PLAIN LOGIN".
            let (keyword, first_arg) = match keyword.split_once('=') {
                Some((k, a)) => (k.to_string(), Some(a.to_string())),
                None => (keyword, None),
            };
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    for mech in first_arg.iter().map(String::as_str).chain(words) {
                        match mech.to_ascii_uppercase().as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            "XOAUTH2" => caps.auth_xoauth2 = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Reply {
        Reply {
            code: 250,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn sendgrid_like_reply() {
        let c = Capabilities::from_ehlo(&ehlo(&[
            "smtp.sendgrid.net",
            "8BITMIME",
            "PIPELINING",
            "SIZE 31457280",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN",
        ]));
        assert!(c.starttls && c.pipelining && c.eight_bit_mime && c.auth_plain && c.auth_login);
        assert!(!c.chunking);
        assert_eq!(c.size, Some(31457280));
    }

    #[test]
    fn gmail_like_reply_offers_chunking() {
        let c = Capabilities::from_ehlo(&ehlo(&[
            "smtp.gmail.com at your service",
            "SIZE 35882577",
            "8BITMIME",
            "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "CHUNKING",
            "SMTPUTF8",
        ]));
        assert!(c.chunking && c.pipelining && c.auth_xoauth2 && c.smtputf8);
    }

    #[test]
    fn the_greeting_line_is_not_a_capability() {
        let c = Capabilities::from_ehlo(&ehlo(&["STARTTLS", "AUTH LOGIN"]));
        assert!(!c.starttls);
        assert!(c.auth_login && !c.auth_plain);
    }

    #[test]
    fn legacy_auth_equals_form_and_garbage() {
        let c = Capabilities::from_ehlo(&ehlo(&["x", "AUTH=LOGIN", "", "SIZE", "\u{1}"]));
        assert!(c.auth_login);
        assert_eq!(c.size, Some(0));
    }
}
