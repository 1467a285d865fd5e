//! Credential pins: `sha256:<64 lowercase hex>` of a password file's bytes.
