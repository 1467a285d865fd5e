//! BDAT (RFC 3030) on a capture connection: exact-size chunks, no
//! dot-stuffing, pipelined chunks answered in order; the message is
//! recorded as for DATA once the LAST chunk is in.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::lock;
use super::session::{Conn, Io, Next};

/// The largest chunk accepted (the capture's SIZE is 50 MiB).
const MAX_CHUNK: usize = 64 * 1024 * 1024;

impl Conn {
    /// Forgets any BDAT transaction in progress (MAIL, RSET, after LAST).
    pub(super) fn end_chunks(&mut self) {
        self.chunked = Vec::new();
        self.chunks = 0;
        self.chunk_failed = false;
    }

    /// `BDAT <size> [LAST]`: reads the chunk's octets, then replies.
    pub(super) async fn bdat(&mut self, line: &str, io: &mut Box<dyn Io>) -> Next {
        let mut words = line.split_ascii_whitespace().skip(1);
        let size = words.next().and_then(|n| n.parse::<usize>().ok());
        let last = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("LAST") => true,
            Some(_) => return self.refuse_and_close(io, "501 5.5.4 BDAT syntax").await,
        };
        let Some(size) = size.filter(|&n| n <= MAX_CHUNK) else {
            // The octets that follow cannot be framed: give up on the connection.
            return self.refuse_and_close(io, "501 5.5.4 BDAT size").await;
        };
        if !self.config.chunking {
            return self
                .refuse_and_close(io, "502 5.5.1 CHUNKING not offered")
                .await;
        }
        let Some(octets) = self.read_octets(size, io).await else {
            return Next::Close;
        };
        self.chunks += 1;
        let reply = if self.rcpts.is_empty() && !self.chunk_failed {
            self.chunk_failed = true;
            "503 5.5.1 need RCPT\r\n".to_string()
        } else if self.chunk_failed {
            // RFC 3030 §4.2: chunks already pipelined after a failed one are discarded.
            "554 5.5.0 transaction already failed\r\n".to_string()
        } else if let Some(r) = self
            .config
            .faults
            .bdat_reply
            .as_ref()
            .filter(|(n, _)| *n == self.chunks)
            .map(|(_, r)| format!("{r}\r\n"))
        {
            self.chunk_failed = !r.starts_with('2');
            r
        } else {
            self.chunked.extend_from_slice(&octets);
            if last {
                let data = std::mem::take(&mut self.chunked);
                let Some(r) = self.record(data, "BDAT", self.chunks) else {
                    return Next::Close;
                };
                r
            } else {
                format!("250 2.0.0 {size} octets received\r\n")
            }
        };
        if last {
            self.end_chunks();
            self.mail_from = None;
            self.rcpts.clear();
        }
        match io.write_all(reply.as_bytes()).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::Close,
        }
    }

    async fn refuse_and_close(&mut self, io: &mut Box<dyn Io>, reply: &str) -> Next {
        let _ = io.write_all(format!("{reply}\r\n").as_bytes()).await;
        Next::Close
    }

    /// Exactly `n` octets, from what is buffered first; None when the
    /// connection ends (or `drop_after_data_bytes` cuts it) before.
    async fn read_octets(&mut self, n: usize, io: &mut Box<dyn Io>) -> Option<Vec<u8>> {
        let take = n.min(self.buf.len());
        let mut octets: Vec<u8> = self.buf.drain(..take).collect();
        while octets.len() < n {
            if let Some(limit) = self.config.faults.drop_after_data_bytes {
                if self.chunked.len() + octets.len() >= limit {
                    return None;
                }
            }
            let mut chunk = [0u8; 16384];
            let got = match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(got) => got,
            };
            if !self.tls {
                lock(&self.rec).plaintext.extend_from_slice(&chunk[..got]);
            }
            let want = (n - octets.len()).min(got);
            octets.extend_from_slice(&chunk[..want]);
            self.buf.extend_from_slice(&chunk[want..got]);
        }
        Some(octets)
    }
}
