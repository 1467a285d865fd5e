//! Reference oracles: slow, obviously-correct versions of what the DATA
//! decoder, the dot-stuffer and the header gate compute. Shared by the
//! proptest suite (`tests/properties.rs`) and the fuzz targets (`fuzz/`),
//! so both check the same properties against the same definitions.
#![allow(dead_code)]

use smtpbind::smtp::data::DotStuffer;

/// The end of data: just past the first `\r\n.\r\n` in `\r\n` + input.
pub fn data_end(input: &[u8]) -> Option<usize> {
    let mut v = b"\r\n".to_vec();
    v.extend_from_slice(input);
    v.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 3)
}

/// True when `v` holds a bare CR or a bare LF.
pub fn has_bare(v: &[u8]) -> bool {
    v.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && v.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || v[i - 1] != b'\r'))
    })
}

/// Every bare CR, bare LF and CRLF becomes CRLF.
pub fn normalize(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 2);
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `content` dot-stuffed in two pieces (split at `split`) plus the end of data.
pub fn stuff(content: &[u8], split: usize) -> Vec<u8> {
    let mut s = DotStuffer::new();
    let mut out = Vec::new();
    s.encode(&content[..split], &mut out);
    s.encode(&content[split..], &mut out);
    s.finish(&mut out);
    out
}

/// The end of the header section: just past the first empty line.
pub fn header_end(content: &[u8]) -> Option<usize> {
    if content.starts_with(b"\r\n") {
        return Some(2);
    }
    content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// The envelope property, checked by an independent parser (smtp-proto's):
/// for a client MAIL/RCPT `line`, either smtpbind refuses it, or the command
/// it writes upstream parses to exactly the path and parameters it approved
/// — and holds no control character, no `AUTH=`, nothing else.
pub fn envelope_agrees(line: &[u8]) -> Result<(), String> {
    use smtp_proto::Request;
    use smtpbind::smtp::command::{self, Command};
    use smtpbind::smtp::envelope::{Body, ReversePath};

    let (wire, expect_address) = match command::parse(line) {
        Ok(Command::Mail(m)) => {
            let address = match &m.path {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(b) => format!("{}@{}", b.local, b.domain),
            };
            (m.to_command(true), Some((address, m)))
        }
        Ok(Command::Rcpt(r)) => (
            r.to_command(),
            Some((
                format!("{}@{}", r.mailbox.local, r.mailbox.domain),
                smtpbind::smtp::envelope::MailFrom {
                    path: ReversePath::Null,
                    size: None,
                    body: None,
                    smtputf8: false,
                },
            )),
        ),
        _ => return Ok(()), // refused (or not an envelope command)
    };
    let Some((address, mail)) = expect_address else {
        return Ok(());
    };
    if wire
        .bytes()
        .any(|b| b < 0x20 && b != b'\r' && b != b'\n' || b == 0x7f)
    {
        return Err(format!("control character written upstream: {wire:?}"));
    }
    if wire.matches("\r\n").count() != 1 || !wire.ends_with("\r\n") {
        return Err(format!("not one command line: {wire:?}"));
    }
    let parsed = Request::parse(&mut wire.as_bytes().iter())
        .map_err(|e| format!("smtp-proto refuses what we wrote {wire:?}: {e:?}"))?;
    match parsed {
        Request::Mail { from } if wire.starts_with("MAIL") => {
            if from.address != address {
                return Err(format!("path {:?} != approved {address:?}", from.address));
            }
            let mut flags = 0;
            match mail.body {
                Some(Body::EightBitMime) => flags |= smtp_proto::MAIL_BODY_8BITMIME,
                Some(Body::SevenBit) => flags |= smtp_proto::MAIL_BODY_7BIT,
                None => {}
            }
            if mail.smtputf8 {
                flags |= smtp_proto::MAIL_SMTPUTF8;
            }
            if from.flags != flags || from.size != mail.size.unwrap_or(0) as usize {
                return Err(format!("parameters differ in {wire:?}: {from:?}"));
            }
            if from.auth.is_some() || from.env_id.is_some() || from.trans_id.is_some() {
                return Err(format!("extra parameter upstream: {wire:?}"));
            }
        }
        Request::Rcpt { to } if wire.starts_with("RCPT") => {
            if to.address != address {
                return Err(format!("path {:?} != approved {address:?}", to.address));
            }
            if to.orcpt.is_some() || to.flags != 0 || to.rrvs != 0 {
                return Err(format!("extra parameter upstream: {wire:?}"));
            }
        }
        other => return Err(format!("{wire:?} parsed as {other:?}")),
    }
    Ok(())
}
