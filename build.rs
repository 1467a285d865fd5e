//! Link-time layout of the shipped binary (issue 12, idle RSS).
//!
//! The kernel maps a binary's code in 64 KiB windows around each page fault
//! (`fault_around_bytes`), so a function run once at start makes its whole
//! window resident. An idle sidecar runs ~0.6 MiB of code, but spread over
//! all of `.text` it made every window resident (3.7 of 3.9 MiB).
//! `scripts/startup-order.txt` lists the functions a serving sidecar runs
//! (start, prewarm, relaying a message, /metrics; `scripts/startup-order.sh`
//! regenerates it); release builds for x86_64 Linux, linked by rust-lld (the
//! default there since Rust 1.90), place them first, together. A name that
//! no longer exists is skipped, so a stale list only loses some of the gain.
//! `SMTPBIND_NO_SYMBOL_ORDER=1` turns it off (e.g. for another linker).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=scripts/startup-order.txt");
    println!("cargo:rerun-if-env-changed=SMTPBIND_NO_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !release
        || target != "x86_64-unknown-linux-gnu"
        || std::env::var_os("SMTPBIND_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&dir).join("scripts/startup-order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=smtpbind=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=smtpbind=-Wl,--no-warn-symbol-ordering");
    }
}
