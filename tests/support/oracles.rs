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
