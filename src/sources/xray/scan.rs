//! The body check of the X-Ray source in one pass over the bytes, without building anything.
//!
//! A body must be one JSON value: an object (one document) or a non-empty array of objects,
//! where every document carries a string `id` and a string `trace_id` of the right shapes. The
//! rules are serde_json's for `{"id": Option<&str>, "trace_id": Option<&str>, ..}` (what this
//! check replaced): the JSON grammar exactly (no trailing commas, no leading zeros, escapes and
//! control bytes checked in every string), `id`/`trace_id` given twice or not as a string or
//! `null` is malformed, and escaped keys and ids are decoded before they are compared. One
//! difference: an array element that is itself an array is a document without ids here, where
//! serde would have read it positionally as `[id, trace_id]`; X-Ray takes only objects.
//! Everything else in a document is only checked for syntax, never decoded or copied.

use std::borrow::Cow;

use super::{is_segment_id, is_trace_id};
use crate::telemetry::RejectReason;

/// Not JSON, or not shaped as the X-Ray API takes it.
const NOT_JSON: RejectReason = RejectReason::NotJson;

/// Checks `body`: `Ok` when X-Ray could take it, else why not.
pub fn check_body(body: &str) -> Result<(), RejectReason> {
    let mut scan = Scanner {
        bytes: body.as_bytes(),
        pos: 0,
    };
    scan.whitespace();
    let ids_ok = match scan.peek() {
        Some(b'{') => scan.document()?,
        Some(b'[') => scan.documents()?,
        _ => return Err(NOT_JSON),
    };
    scan.whitespace();
    if scan.pos != scan.bytes.len() {
        return Err(NOT_JSON);
    }
    ids_ok
}

/// A cursor over the body.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A string's content, between its quotes, and whether it holds escapes.
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.pos += 1;
        byte
    }

    fn expect(&mut self, byte: u8) -> Result<(), RejectReason> {
        self.whitespace();
        match self.next() {
            Some(b) if b == byte => Ok(()),
            _ => Err(NOT_JSON),
        }
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A non-empty array of documents; the outer `Ok` says whether they all have good ids
    /// (an empty array is an empty body).
    fn documents(&mut self) -> Result<Result<(), RejectReason>, RejectReason> {
        self.pos += 1;
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Err(RejectReason::EmptyBody));
        }
        let mut ids_ok = Ok(());
        loop {
            self.whitespace();
            let document = match self.peek() {
                Some(b'{') => self.document()?,
                Some(b'[') => self.skip_value().map(|()| Err(RejectReason::BadIds))?,
                _ => return Err(NOT_JSON),
            };
            ids_ok = ids_ok.and(document);
            self.whitespace();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(ids_ok),
                _ => return Err(NOT_JSON),
            }
        }
    }

    /// One document object; the outer `Ok` says whether its ids are good.
    fn document(&mut self) -> Result<Result<(), RejectReason>, RejectReason> {
        self.pos += 1;
        let (mut id, mut trace_id) = (None, None);
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Err(RejectReason::BadIds));
        }
        loop {
            self.expect(b'"')?;
            let key = self.string()?;
            self.expect(b':')?;
            self.whitespace();
            let name = match key.escaped {
                false => Cow::Borrowed(&self.bytes[key.start..key.end]),
                true => Cow::Owned(self.text(&key)?.into_owned().into_bytes()),
            };
            match &*name {
                b"id" => self.id_value(&mut id, is_segment_id)?,
                b"trace_id" => self.id_value(&mut trace_id, is_trace_id)?,
                _ => self.skip_value()?,
            }
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => break,
                _ => return Err(NOT_JSON),
            }
        }
        Ok(match (id, trace_id) {
            (Some(true), Some(true)) => Ok(()),
            _ => Err(RejectReason::BadIds),
        })
    }

    /// The value of `id` or `trace_id`: a string (is it `valid`?) or `null` (absent); given
    /// twice, or of another type, is malformed. `seen` is `Some(shape ok)` once given.
    fn id_value(
        &mut self,
        seen: &mut Option<bool>,
        valid: fn(&str) -> bool,
    ) -> Result<(), RejectReason> {
        if seen.is_some() {
            return Err(NOT_JSON);
        }
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let span = self.string()?;
                *seen = Some(valid(&self.text(&span)?));
            }
            Some(b'n') => {
                self.literal(b"null")?;
                *seen = Some(false);
            }
            _ => return Err(NOT_JSON),
        }
        Ok(())
    }

    /// The decoded text of a string span: borrowed when it has no escapes. Escapes are decoded
    /// by serde_json, so lone surrogates and the like are refused exactly as before.
    fn text(&self, span: &Span) -> Result<Cow<'a, str>, RejectReason> {
        let raw = &self.bytes[span.start..span.end];
        if !span.escaped {
            return std::str::from_utf8(raw)
                .map(Cow::Borrowed)
                .map_err(|_| NOT_JSON);
        }
        let quoted = &self.bytes[span.start - 1..span.end + 1];
        serde_json::from_slice::<String>(quoted)
            .map(Cow::Owned)
            .map_err(|_| NOT_JSON)
    }

    /// A string whose opening quote was just read: checks escapes and control bytes, and
    /// leaves the cursor after the closing quote. Skips clean runs a word at a time.
    fn string(&mut self) -> Result<Span, RejectReason> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.next() {
                Some(b'"') => {
                    return Ok(Span {
                        start,
                        end: self.pos - 1,
                        escaped,
                    })
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(NOT_JSON),
            }
        }
    }

    /// Moves the cursor to the next `"`, `\` or control byte (or the end).
    fn skip_plain(&mut self) {
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let special = special_bytes(u64::from_le_bytes(word));
            if special != 0 {
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    fn escape(&mut self) -> Result<(), RejectReason> {
        match self.next() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => {
                for _ in 0..4 {
                    match self.next() {
                        Some(b) if b.is_ascii_hexdigit() => {}
                        _ => return Err(NOT_JSON),
                    }
                }
                Ok(())
            }
            _ => Err(NOT_JSON),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), RejectReason> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(NOT_JSON)
        }
    }

    /// A number, by JSON's grammar: `-`? (`0` | `[1-9][0-9]*`) (`.` digits)? (`[eE]` `[+-]`? digits)?
    fn number(&mut self) -> Result<(), RejectReason> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(NOT_JSON),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        // `01` is two tokens, and the caller finds the second where a comma should be.
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), RejectReason> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(NOT_JSON),
        }
    }

    /// Any JSON value, checked for syntax only. Iterative, with the open containers on a
    /// stack of its own: nesting is bounded by the datagram size, not by the thread's stack.
    fn skip_value(&mut self) -> Result<(), RejectReason> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.whitespace();
            match self.next() {
                Some(b'{') => {
                    self.whitespace();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        open.push(b'}');
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"rue")?,
                Some(b'f') => self.literal(b"alse")?,
                Some(b'n') => self.literal(b"ull")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.pos -= 1;
                    self.number()?;
                }
                _ => return Err(NOT_JSON),
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                self.whitespace();
                match self.next() {
                    Some(b',') => {
                        if close == b'}' {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b) if b == close => {
                        open.pop();
                    }
                    _ => return Err(NOT_JSON),
                }
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Result<(), RejectReason> {
        self.expect(b'"')?;
        self.string()?;
        self.expect(b':')
    }
}

/// The high bit of every byte of `word` that is `"`, `\` or below 0x20, exactly: the bytes a
/// JSON string cannot hold as they are.
fn special_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const fn ones(byte: u8) -> u64 {
        u64::from_le_bytes([byte; 8])
    }
    // The high bit of each byte of `x` that is zero (no carry crosses a byte).
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    zero(word ^ ones(b'"')) | zero(word ^ ones(b'\\')) | zero(word & ones(0xe0))
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
