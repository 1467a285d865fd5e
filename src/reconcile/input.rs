//! Opening an input: a file or `-` (stdin), gzip'd or not — told by its
//! first bytes (the gzip magic `1f 8b`), so `.gz` files, compressed stdin
//! and concatenated gzip members (`cat a.gz b.gz`, rotated logs) all read
//! the same. And reading it by lines, each bounded.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// Longest line accepted from an audit export (its lines are < 2 KiB).
pub const MAX_LINE: usize = 1 << 20;

/// An opened input.
pub type Input = Box<dyn BufRead>;

/// Opens `name` (`-` is stdin), decompressing when it is gzip.
pub fn open(name: &str) -> io::Result<Input> {
    let raw: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(Path::new(name))?)
    };
    let mut buffered = BufReader::with_capacity(64 * 1024, raw);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            64 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Why a line could not be read.
#[derive(Debug)]
pub enum LineError {
    Io(io::Error),
    TooLong,
}

/// Reads the next line (without its `\n` / `\r\n`) into `buf`; false at
/// the end. A line longer than [`MAX_LINE`] is an error, never buffered whole.
pub fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> Result<bool, LineError> {
    buf.clear();
    let n = r
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(LineError::Io)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if n > MAX_LINE {
        return Err(LineError::TooLong);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_and_gzip_read_the_same() {
        let dir = tempfile::tempdir().expect("tmp");
        let plain = dir.path().join("a.jsonl");
        std::fs::write(&plain, b"one\r\ntwo\nthree").expect("write");
        let gz = dir.path().join("a.jsonl.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"one\r\ntwo\n").expect("gz");
        let mut bytes = e.finish().expect("gz");
        // A second member, as `cat a.gz b.gz` makes.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"three").expect("gz");
        bytes.extend(e.finish().expect("gz"));
        std::fs::write(&gz, bytes).expect("write");
        for path in [&plain, &gz] {
            let mut r = open(&path.display().to_string()).expect("open");
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            while next_line(&mut r, &mut buf).expect("line") {
                lines.push(String::from_utf8(buf.clone()).expect("utf8"));
            }
            assert_eq!(lines, ["one", "two", "three"], "{}", path.display());
        }
    }

    #[test]
    fn an_overlong_line_is_an_error() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut r: &[u8] = &long;
        let mut buf = Vec::new();
        assert!(matches!(
            next_line(&mut r, &mut buf),
            Err(LineError::TooLong)
        ));
        assert!(buf.len() <= MAX_LINE + 1);
    }
}
