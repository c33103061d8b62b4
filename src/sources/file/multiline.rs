//! Lines → events: joins continuation lines (a stack trace) to the line that starts their
//! event, recognised by a regex or by a leading timestamp.
//!
//! It holds at most one pending event, capped at the per-event limit (further lines are
//! dropped and counted in the event's `dropped_bytes`). It never reads a clock: the tailer
//! calls [`Multiline::flush`] after a quiet period, and at shutdown leaves the pending event
//! unflushed, so its lines are read again on the next start instead of being cut in two.

use regex::Regex;

use super::reader::{floor_char_boundary, Line, MAX_MESSAGE_BYTES};
use super::timestamp::TimestampParser;
use crate::pipeline::Message;

/// One event before it is shipped: its text and the file offset just past its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The lines joined with `\n`, at most [`MAX_MESSAGE_BYTES`].
    pub text: Message,
    /// Offset just past the event's last line.
    pub end_offset: u64,
    /// Source bytes left out because the event was too long.
    pub dropped_bytes: u64,
}

/// How the first line of an event is recognised.
#[derive(Debug, Clone)]
pub enum StartMatcher {
    /// A line matching the regex.
    Pattern(Regex),
    /// A line that begins with a parsable timestamp.
    Timestamp(TimestampParser),
}

impl StartMatcher {
    fn is_start(&self, text: &str) -> bool {
        match self {
            StartMatcher::Pattern(re) => re.is_match(text),
            StartMatcher::Timestamp(p) => p.parse_prefix(text).is_some(),
        }
    }
}

/// Groups lines into events; without a matcher every line is an event.
#[derive(Debug)]
pub struct Multiline {
    matcher: Option<StartMatcher>,
    pending: Option<Pending>,
}

impl Multiline {
    /// A grouper; `None` passes every line through as an event.
    pub fn new(matcher: Option<StartMatcher>) -> Self {
        Multiline {
            matcher,
            pending: None,
        }
    }

    /// Takes one line; returns the events it completes (zero or one).
    pub fn push(&mut self, line: Line) -> Option<Pending> {
        let event = Pending {
            text: line.text,
            end_offset: line.end_offset,
            dropped_bytes: line.dropped_bytes,
        };
        let Some(matcher) = &self.matcher else {
            return Some(event);
        };
        // A pending event may wait long for its next line: it owns its text rather than hold
        // a shared read buffer meanwhile.
        let event = Pending {
            text: event.text.into_string().into(),
            ..event
        };
        match &mut self.pending {
            Some(pending) if !matcher.is_start(&event.text) => {
                append(pending, event);
                None
            }
            _ => self.pending.replace(event),
        }
    }

    /// The pending event, if any (the file went quiet).
    pub fn flush(&mut self) -> Option<Pending> {
        self.pending.take()
    }

    /// Whether an event is waiting for its next line.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Forgets the pending event (the file was truncated under it).
    pub fn clear(&mut self) {
        self.pending = None;
    }
}

/// Adds `next` as a continuation line of `pending`, within the event limit.
fn append(pending: &mut Pending, next: Pending) {
    pending.end_offset = next.end_offset;
    pending.dropped_bytes += next.dropped_bytes;
    if pending.text.len() + 1 > MAX_MESSAGE_BYTES {
        pending.dropped_bytes += next.text.len() as u64 + 1;
        return;
    }
    let room = MAX_MESSAGE_BYTES - (pending.text.len() + 1);
    let keep = floor_char_boundary(&next.text, room);
    let mut text = std::mem::replace(&mut pending.text, Message::from(String::new())).into_string();
    text.push('\n');
    text.push_str(&next.text[..keep]);
    pending.text = text.into();
    pending.dropped_bytes += (next.text.len() - keep) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TimestampFormat, Timezone};

    fn line(text: &str, end: u64) -> Line {
        Line {
            text: text.into(),
            end_offset: end,
            dropped_bytes: 0,
            invalid: false,
        }
    }

    fn run(m: &mut Multiline, lines: &[&str]) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(e) = m.push(line(l, (i as u64 + 1) * 10)) {
                out.push((e.text.into_string(), e.end_offset));
            }
        }
        out
    }

    #[test]
    fn continuation_lines_join_their_start() {
        let re = Regex::new(r"^\d{4}-\d{2}-\d{2}").unwrap();
        let mut m = Multiline::new(Some(StartMatcher::Pattern(re)));
        let out = run(
            &mut m,
            &["orphan", "2026-01-01 a", "  at x", "  at y", "2026-01-01 b"],
        );
        assert_eq!(
            out,
            [
                ("orphan".to_string(), 10),
                ("2026-01-01 a\n  at x\n  at y".to_string(), 40)
            ]
        );
        assert!(m.has_pending());
        assert_eq!(m.flush().unwrap().text, "2026-01-01 b");
        assert!(!m.has_pending());
    }

    #[test]
    fn timestamp_starts_events() {
        let p = TimestampParser::new(TimestampFormat::EpochSeconds, Timezone::Utc);
        let mut m = Multiline::new(Some(StartMatcher::Timestamp(p)));
        let out = run(&mut m, &["1767225600 a", "b", "1767225601 c"]);
        assert_eq!(out, [("1767225600 a\nb".to_string(), 20)]);
    }

    #[test]
    fn without_a_matcher_each_line_is_an_event() {
        let mut m = Multiline::new(None);
        assert_eq!(run(&mut m, &["a", "b"]).len(), 2);
        assert!(m.flush().is_none());
    }

    #[test]
    fn a_huge_event_stays_within_the_limit() {
        let re = Regex::new("^S").unwrap();
        let mut m = Multiline::new(Some(StartMatcher::Pattern(re)));
        let big = "x".repeat(MAX_MESSAGE_BYTES / 2);
        for _ in 0..4 {
            m.push(line(&big, 1));
        }
        assert!(m.push(line("S", 2)).is_some());
        let mut m2 = Multiline::new(Some(StartMatcher::Pattern(Regex::new("^S").unwrap())));
        m2.push(line("S", 0));
        for _ in 0..4 {
            m2.push(line(&big, 1));
        }
        let e = m2.flush().unwrap();
        assert!(e.text.len() <= MAX_MESSAGE_BYTES);
        assert!(e.dropped_bytes > 0);
        assert_eq!(
            e.text.len() as u64 + e.dropped_bytes,
            1 + 4 * (big.len() as u64 + 1)
        );
    }
}
