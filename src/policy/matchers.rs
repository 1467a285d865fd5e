//! Sender and recipient-domain matchers.
