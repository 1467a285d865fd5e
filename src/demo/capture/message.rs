//! Receiving a message by DATA, recording it (DATA or BDAT) and its activity-log line.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::export::{self, Accepted};
use super::session::{Conn, Io};
use super::{lock, Captured};

impl Conn {
    /// Receives one message; false when the connection should close.
    pub(super) async fn data(&mut self, io: &mut Box<dyn Io>) -> bool {
        let mut data: Vec<u8> = std::mem::take(&mut self.buf);
        // Where to resume scanning for the end (the end sequence is at most
        // 5 bytes, so back up that far into what was already scanned).
        let mut scanned = 0usize;
        loop {
            if let Some(limit) = self.config.faults.drop_after_data_bytes {
                if data.len() >= limit {
                    return false;
                }
            }
            let from = scanned.saturating_sub(5);
            if let Some((body_end, rest_start)) =
                find_end(&data[from..], from == 0, self.config.lenient_eod)
            {
                self.buf = data.split_off(from + rest_start);
                data.truncate(from + body_end);
                break;
            }
            scanned = data.len();
            let mut chunk = [0u8; 16384];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    if !self.tls {
                        lock(&self.rec).plaintext.extend_from_slice(&chunk[..n]);
                    }
                    data.extend_from_slice(&chunk[..n]);
                }
            }
        }
        let data = unstuff(&data, self.config.lenient_eod);
        let Some(reply) = self.record(data, "DATA", 0) else {
            return false;
        };
        io.write_all(reply.as_bytes()).await.is_ok()
    }

    /// Records a received message (unless `eod_reply` replaces the reply)
    /// and ends the transaction; the reply to send, or None without AUTH.
    pub(super) fn record(
        &mut self,
        data: Vec<u8>,
        verb: &'static str,
        chunks: usize,
    ) -> Option<String> {
        let reply = if let Some(r) = &self.config.faults.eod_reply {
            format!("{r}\r\n")
        } else {
            let (seq, account) = {
                let mut rec = lock(&self.rec);
                rec.seq += 1;
                (rec.seq, self.account.clone())
            };
            let account = account?;
            let mail_from = self.mail_from.clone().unwrap_or_default();
            let shape = self.config.export;
            let accepted = Accepted {
                seq,
                mail_from: &mail_from,
                rcpt_to: &self.rcpts,
                data: &data,
            };
            let (queue_id, reply) = match shape {
                Some(shape) => export::accept(shape, &accepted),
                None => {
                    let id = format!("CAP{seq:06}");
                    let reply = format!("250 2.0.0 Ok: queued as {id}\r\n");
                    (id, reply)
                }
            };
            if let (Some(shape), Some(dir)) = (shape, &self.config.log_dir) {
                let bytes = export::record(shape, &account.name, &queue_id, &accepted);
                let _held = lock(&self.rec);
                export::append(shape, dir, &account.name, &bytes);
            }
            let msg = Captured {
                account: account.name.clone(),
                username: account.username.clone(),
                mail_from,
                mail_line: self.mail_line.clone(),
                rcpt_to: self.rcpts.clone(),
                bytes: data.len(),
                data,
                queue_id: queue_id.clone(),
                tls: self.tls,
                verb,
                chunks,
            };
            self.log(&msg);
            lock(&self.rec).messages.push(msg);
            reply
        };
        self.mail_from = None;
        self.rcpts.clear();
        Some(reply)
    }

    fn log(&self, msg: &Captured) {
        // The provider's activity log: no tenant label, it is the upstream's view.
        let line = json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": "captured",
            "account": msg.account, "username": msg.username, "mail_from": msg.mail_from,
            "rcpt_to": msg.rcpt_to, "bytes": msg.bytes, "queue_id": msg.queue_id, "tls": msg.tls,
            "verb": msg.verb, "chunks": msg.chunks,
        })
        .to_string();
        println!("{line}");
        if let Some(dir) = &self.config.log_dir {
            use std::io::Write;
            let path = dir.join(format!("{}.jsonl", msg.account));
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                // One write per record: concurrent connections append to the
                // same file, and `writeln!` would write the line and its end
                // separately (two records could then share one line).
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }
}

fn is_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Finds the end of data: returns (end of message content, start of what follows).
/// Strict: `CRLF.CRLF` (or `.CRLF` at the start). Lenient: any `<CR|LF>.<CR|LF>`.
/// `at_start`: `data` begins at the start of the message.
fn find_end(data: &[u8], at_start: bool, lenient: bool) -> Option<(usize, usize)> {
    if !lenient {
        if at_start && data.starts_with(b".\r\n") {
            return Some((0, 3));
        }
        let pos = data.windows(5).position(|w| w == b"\r\n.\r\n")?;
        return Some((pos + 2, pos + 5));
    }
    for i in 0..data.len() {
        if data[i] != b'.' {
            continue;
        }
        let at_line_start = if i == 0 {
            at_start
        } else {
            is_break(data[i - 1])
        };
        let next = data.get(i + 1).copied();
        if at_line_start && next.is_some_and(is_break) {
            let mut rest = i + 2;
            if next == Some(b'\r') && data.get(i + 2) == Some(&b'\n') {
                rest = i + 3;
            }
            return Some((i, rest));
        }
    }
    None
}

/// Removes dot-stuffing (lines split on CRLF, or on any break when lenient).
fn unstuff(data: &[u8], lenient: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at_start = true;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if at_start && b == b'.' {
            i += 1;
            at_start = false;
            continue;
        }
        out.push(b);
        at_start = if lenient {
            is_break(b)
        } else {
            b == b'\n' && i > 0 && data[i - 1] == b'\r'
        };
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lenient_end_of_data() {
        assert_eq!(find_end(b"a\r\n.\r\nMAIL", true, false), Some((3, 6)));
        assert_eq!(find_end(b"a\n.\nMAIL", true, false), None);
        assert_eq!(find_end(b"a\n.\nMAIL", true, true), Some((2, 4)));
        assert_eq!(find_end(b"a\r.\rMAIL", true, true), Some((2, 4)));
        assert_eq!(find_end(b".\r\n", true, false), Some((0, 3)));
        assert_eq!(find_end(b".\r\n", false, false), None);
    }

    #[test]
    fn unstuffing() {
        assert_eq!(unstuff(b"..a\r\n..b\r\n", false), b".a\r\n.b\r\n");
    }
}
