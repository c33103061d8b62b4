//! CloudWatch Logs' `PutLogEvents` for the fake endpoint: counts a call's events and their
//! message bytes, and finds the events an earlier accepted call already carried.
//!
//! Duplicates are found by line number: a message that starts with ASCII digits (the
//! benchmark numbers its lines, `000000000042 level=INFO ...`) is that line, and one bit per
//! number says whether it was seen. So the check is exact for the benchmark's files, costs an
//! eighth of a byte per line and one lock per call, and never keeps a message. Messages without
//! a number (EMF documents) are counted as unnumbered and not checked.

use std::borrow::Cow;

use serde::Deserialize;

/// Line numbers above this are counted as unnumbered: the bit set stays under 128 MiB
/// whatever a message starts with.
const MAX_NUMBER: u64 = 1 << 30;

/// The part of a `PutLogEvents` body the fake reads.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<Event<'a>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    /// Borrowed when the message has no escapes, owned otherwise.
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// What one accepted call carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Events in the call.
    pub events: u64,
    /// UTF-8 bytes of their decoded messages.
    pub message_bytes: u64,
    /// Numbered events no earlier call carried.
    pub distinct: u64,
    /// Numbered events an earlier call (or this one) already carried.
    pub duplicates: u64,
    /// Events whose message does not start with a line number.
    pub unnumbered: u64,
}

/// The line numbers seen so far, one bit each.
#[derive(Debug, Default)]
pub struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Marks `number` seen; whether it was already.
    fn insert(&mut self, number: u64) -> bool {
        // MAX_NUMBER bounds the index, so it fits a usize on the 64-bit hosts the bench runs on.
        let word = (number / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let mask = 1u64 << (number % 64);
        let was = self.bits[word] & mask != 0;
        self.bits[word] |= mask;
        was
    }
}

/// Parses a `PutLogEvents` body and marks its numbered events in `seen`.
pub fn count(body: &[u8], seen: &std::sync::Mutex<Seen>) -> Result<Counts, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut counts = Counts {
        events: body.log_events.len() as u64,
        ..Counts::default()
    };
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    for event in &body.log_events {
        counts.message_bytes += event.message.len() as u64;
        match line_number(event.message.as_bytes()) {
            Some(number) if seen.insert(number) => counts.duplicates += 1,
            Some(_) => counts.distinct += 1,
            None => counts.unnumbered += 1,
        }
    }
    Ok(counts)
}

/// The number a message starts with, when it starts with 1 to 18 digits (no overflow) and
/// stays under [`MAX_NUMBER`].
fn line_number(message: &[u8]) -> Option<u64> {
    let digits = message.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let number = message[..digits]
        .iter()
        .fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
    (number < MAX_NUMBER).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(messages: &[&str]) -> Vec<u8> {
        let events: Vec<_> = messages
            .iter()
            .map(|m| serde_json::json!({"timestamp": 1, "message": m}))
            .collect();
        serde_json::json!({"logGroupName": "g", "logEvents": events})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn counts_events_bytes_and_duplicates_across_calls() {
        let seen = std::sync::Mutex::new(Seen::default());
        let first = count(&body(&["000001 a", "000002 b\"", "{\"_aws\":{}}"]), &seen);
        assert_eq!(
            first,
            Ok(Counts {
                events: 3,
                message_bytes: 8 + 9 + 11,
                distinct: 2,
                duplicates: 0,
                unnumbered: 1,
            })
        );
        let second = count(&body(&["2 b", "3 c", "3 c", "99999 z"]), &seen);
        assert_eq!(
            second.map(|c| (c.distinct, c.duplicates)),
            Ok((2, 2)),
            "2 was in the first call, 3 twice in this one"
        );
        assert!(count(b"{\"logEvents\":[{", &seen).is_err());
    }

    #[test]
    fn a_number_needs_leading_digits_in_range() {
        assert_eq!(line_number(b"000000000042 level=INFO"), Some(42));
        assert_eq!(line_number(b"level=INFO 42"), None);
        assert_eq!(line_number(b""), None);
        assert_eq!(line_number(b"9999999999999999999999"), None);
        assert_eq!(line_number(b"2000000000 x"), None);
    }
}
