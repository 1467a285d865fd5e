//! What the three event parsers share: their error (a position and a
//! message, never a panic), their counts, and the streaming of JSON exports
//! — a sequence of top-level values, each an array of events (one Event
//! Webhook POST body) or one event (JSON lines, as Firehose writes them) —
//! element by element, so that memory holds one event, never the file.

use std::io::Read;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Longest id accepted from an event (ids of the three providers are < 300 bytes).
pub const MAX_EVENT_ID: usize = 1024;

/// Bad input: where (1-based; column 0 when unknown) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column > 0 {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}: {}", self.line, self.message)
        }
    }
}

impl ParseError {
    pub(super) fn json(e: &serde_json::Error) -> ParseError {
        // serde_json's message ends with " at line L column C": say it once.
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        ParseError {
            line: e.line() as u64,
            column: e.column() as u64,
            message,
        }
    }
}

/// What a parser read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events (records, rows) read.
    pub events: u64,
    /// Events that name no message (SendGrid account events): not counted.
    pub without_id: u64,
}

/// Receives each event's message key (and its line, when the format knows it).
pub type OnId<'a> = dyn FnMut(&str, Option<u64>) + 'a;

/// Calls `f` for every event of a JSON export, in order. `f` returns an
/// error message for an event that is not one of the provider's.
pub(super) fn for_each_json<T: DeserializeOwned>(
    r: &mut dyn Read,
    f: &mut dyn FnMut(T) -> Result<(), String>,
) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_reader(r);
    loop {
        match de.end() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_io() => return Err(ParseError::json(&e)),
            Err(_) => {}
        }
        TopLevel::<T> {
            f: &mut *f,
            _t: PhantomData,
        }
        .deserialize(&mut de)
        .map_err(|e| ParseError::json(&e))?;
    }
}

struct TopLevel<'f, T> {
    f: &'f mut dyn FnMut(T) -> Result<(), String>,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for TopLevel<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for TopLevel<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events or one event object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(event) = seq.next_element::<T>()? {
            (self.f)(event).map_err(de::Error::custom)?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let event = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.f)(event).map_err(de::Error::custom)
    }
}

/// An id from an event, checked for length.
pub(super) fn bounded(id: &str, field: &str) -> Result<(), String> {
    if id.len() > MAX_EVENT_ID {
        return Err(format!("{field} longer than {MAX_EVENT_ID} bytes"));
    }
    Ok(())
}
