//! SMTP protocol pieces without I/O: line framing, commands, replies, the
//! DATA codec, header-From extraction and SASL. Everything here is tested
//! without sockets; `session` and `upstream` do the reading and writing.

pub mod command;
pub mod data;
pub mod envelope;
pub mod header;
pub mod line;
pub mod pipeline;
pub mod reply;
pub mod sasl;
pub mod upstream_id;

/// Longest command line we accept from a client, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest AUTH continuation line (RFC 4954 §4 recommends 12288).
pub const MAX_AUTH_LINE: usize = 12288;
