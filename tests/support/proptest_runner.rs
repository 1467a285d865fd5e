//! The proptest runner every property suite uses (`tests/properties.rs`,
//! `tests/reconcile_properties.rs`, `tests/webhook/props.rs`), included by
//! `#[path]` so that those binaries need none of the rest of `support`.

use proptest::test_runner::{Config, RngAlgorithm};

/// `cases` cases (`PROPTEST_CASES` still overrides), drawn with XorShift:
/// the default ChaCha generator dominates the run time of a debug build.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    }
}
