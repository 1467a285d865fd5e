//! What the `reconcile` properties are checked with: a reader that trickles
//! its bytes, and how many lines an export has. Shared, like `oracles.rs`,
//! by the proptest suite (`tests/reconcile_properties.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/reconcile.rs`) through `#[path]`; it uses std
//! only, so the fuzz crate gains no dependency.
#![allow(dead_code)]

use std::io::Read;

/// A reader returning at most `step` bytes a call.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The number of lines in `input`: one more than its line breaks. A break
/// is an LF; for CSV (`csv`), rows end at LF, CRLF or a lone CR (as the csv
/// crate reads them).
pub fn lines(input: &[u8], csv: bool) -> u64 {
    let breaks = input
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (csv && b == b'\r' && input.get(i + 1) != Some(&b'\n')))
        .count() as u64;
    breaks + 1
}
