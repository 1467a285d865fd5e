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
    // rust-lld links x86_64-unknown-linux-gnu by default only from Rust
    // 1.90 (rust-version is 1.89); GNU ld does not know the flag and would
    // fail the link, so older toolchains build without the ordering.
    if !rustc_links_with_lld() {
        println!("cargo:warning=smtpbind: rustc older than 1.90 (no default rust-lld): release built without the start-up symbol order");
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

/// True when `rustc --version` is 1.90 or later.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut parts = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
