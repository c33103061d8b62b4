//! The text of one log event or X-Ray document: a `String` of its own, or a slice of a read
//! buffer that the events of one read share.
//!
//! A file read at full speed is millions of lines a second; one allocation per line (made on
//! the reading thread, freed on the sending thread after AWS accepted it) was a tenth of the
//! agent's CPU. The file source hands out slices of its read buffer instead, when it can
//! (UTF-8 lines that fit, see `sources::file::reader`); every other event owns its text.
//! Either way the text is valid UTF-8: a shared slice is checked once, when it is made.

use std::fmt;
use std::ops::{Deref, Range};

use bytes::Bytes;

/// An event's text; reads as `&str`.
#[derive(Clone)]
pub struct Message(Repr);

#[derive(Clone)]
enum Repr {
    Owned(String),
    /// Valid UTF-8, checked by [`Message::shared`], the only way to make one.
    Shared(Bytes),
}

impl Message {
    /// A slice of a shared buffer, if it is valid UTF-8 (else the bytes back).
    pub fn shared(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Message(Repr::Shared(bytes))),
            Err(_) => Err(bytes),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(text) => text,
            // SAFETY: `Shared` is only built by `Message::shared`, which checked the bytes,
            // and `Bytes` never changes what it holds.
            Repr::Shared(bytes) => unsafe { std::str::from_utf8_unchecked(bytes) },
        }
    }

    /// Memory this event's text holds on its own, for the budget: an owned text's
    /// allocation; none for a slice of a shared buffer, whose source charges the whole buffer
    /// for as long as any slice of it lives (a buffer outlives the first of its lines that AWS
    /// accepted, so charging each line its length would let go of bytes still held).
    pub fn own_memory_bytes(&self) -> usize {
        match &self.0 {
            Repr::Owned(text) => text.capacity(),
            Repr::Shared(_) => 0,
        }
    }

    /// Whether the text is a slice of a shared buffer.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }

    /// The text as a `String` of its own (copied out of a shared buffer).
    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Owned(text) => text,
            Repr::Shared(_) => self.as_str().to_owned(),
        }
    }
}

/// A shared buffer checked once as UTF-8, whose slices at character boundaries are messages
/// with no check of their own: one check per read instead of one per line.
#[derive(Debug, Clone)]
pub struct SharedText(Bytes);

impl SharedText {
    /// The buffer, if it is valid UTF-8 (else the bytes back).
    pub fn new(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(SharedText(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: checked by `SharedText::new`, the only way to make one; `Bytes` never
        // changes what it holds.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The text at `range` as a message sharing the buffer; `None` if `range` is out of
    /// bounds or cuts a character.
    pub fn message(&self, range: Range<usize>) -> Option<Message> {
        self.as_str().get(range.clone())?;
        Some(Message(Repr::Shared(self.0.slice(range))))
    }
}

impl From<String> for SharedText {
    /// A `String` is UTF-8 already: no check, no copy.
    fn from(text: String) -> Self {
        SharedText(Bytes::from(text.into_bytes()))
    }
}

impl Deref for Message {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Message {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message(Repr::Owned(text))
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message(Repr::Owned(text.to_owned()))
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Message {}

impl PartialEq<str> for Message {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Message {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_slice_reads_as_its_text_and_counts_its_length() {
        let buffer = Bytes::from_static("one\ntwo é\n".as_bytes());
        let message = Message::shared(buffer.slice(4..10)).expect("valid UTF-8");
        assert!(message.is_shared());
        assert_eq!(message, "two é");
        assert_eq!(message.own_memory_bytes(), 0, "its buffer is charged");
        assert_eq!(message.clone().into_string(), "two é");
        assert_eq!(
            message,
            Message::from("two é"),
            "equal whatever holds the text"
        );
    }

    #[test]
    fn invalid_utf8_is_refused_and_given_back() {
        let bytes = Bytes::from_static(b"ok \xff");
        assert_eq!(Message::shared(bytes.clone()), Err(bytes));
    }

    #[test]
    fn slices_of_checked_text_are_messages_only_at_character_boundaries() {
        let text = SharedText::new(Bytes::from_static("aé\nb".as_bytes())).expect("valid");
        assert_eq!(text.message(0..3).expect("whole characters"), "aé");
        assert!(text.message(0..2).is_none(), "cuts é in two");
        assert!(text.message(3..9).is_none(), "out of bounds");
        assert!(text.message(4..5).expect("b").is_shared());
        assert!(SharedText::new(Bytes::from_static(b"\xc3")).is_err());
    }

    #[test]
    fn an_owned_text_counts_its_allocation() {
        let mut text = String::with_capacity(100);
        text.push_str("short");
        let message = Message::from(text);
        assert!(!message.is_shared());
        assert_eq!(message.own_memory_bytes(), 100);
        assert_eq!(message.len(), 5);
    }
}
