//! Bytes → lines: splits what was read from a file at `\n` (or `\r\n`), across reads of any
//! size, decodes each line (UTF-8, UTF-16LE, Latin-1) and caps it at the PutLogEvents
//! per-event limit.
//!
//! It owns only the unfinished last line; it never reads the file, never waits and never
//! counts (the tailer counts what the returned [`Line`]s say). A line longer than the limit
//! is not kept whole: bytes past the limit are skipped as they arrive, so a 3 MB line holds
//! at most the limit in memory and never blocks the file.

use bytes::Bytes;

use crate::config::Encoding;
use crate::pipeline::{Message, SharedText, LOG_EVENT_OVERHEAD_BYTES};

/// The longest message PutLogEvents takes in one event (1 MiB minus the per-event overhead).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576 - LOG_EVENT_OVERHEAD_BYTES;

/// Room kept at the end of a cut message for the marker (`…[truncated N bytes]`).
const MARKER_RESERVE: usize = 48;

/// One complete line, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text, without its line ending; at most [`MAX_MESSAGE_BYTES`] of source bytes.
    pub text: Message,
    /// The file offset just past the line's ending.
    pub end_offset: u64,
    /// Source bytes of this line that were skipped because it was too long.
    pub dropped_bytes: u64,
    /// The bytes were not valid in the encoding (replaced with U+FFFD).
    pub invalid: bool,
}

/// Splits a byte stream into lines; one per file.
#[derive(Debug)]
pub struct LineReader {
    encoding: Encoding,
    /// Bytes of the unfinished line, at most `max_line_bytes`.
    pending: Vec<u8>,
    /// Bytes of the unfinished line skipped past the cap.
    dropped: u64,
    /// For UTF-16: an odd byte waiting for its pair.
    carry: Option<u8>,
    /// File offset of the next byte to be fed.
    offset: u64,
    max_line_bytes: usize,
}

impl LineReader {
    /// A reader whose next byte is at file `offset`.
    pub fn new(encoding: Encoding, offset: u64) -> Self {
        Self::with_limit(encoding, offset, MAX_MESSAGE_BYTES)
    }

    /// Same with a smaller line cap (tests).
    pub fn with_limit(encoding: Encoding, offset: u64, max_line_bytes: usize) -> Self {
        LineReader {
            encoding,
            pending: Vec::new(),
            dropped: 0,
            carry: None,
            offset,
            max_line_bytes,
        }
    }

    /// The offset of the next byte to feed: where the next read starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The offset where the unfinished line starts: what a checkpoint may safely say.
    pub fn line_start(&self) -> u64 {
        self.offset - self.pending.len() as u64 - self.dropped - self.carry.map_or(0, |_| 1)
    }

    /// Whether an unfinished line is waiting for its ending.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty() || self.dropped > 0 || self.carry.is_some()
    }

    /// Starts over at `offset` (the file was truncated), forgetting the unfinished line.
    pub fn reset(&mut self, offset: u64) {
        *self = Self::with_limit(self.encoding, offset, self.max_line_bytes);
    }

    /// Feeds the bytes read at [`offset`](Self::offset); complete lines go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        let unit = self.unit();
        let joined;
        let mut data = bytes;
        if let Some(b) = self.carry.take() {
            joined = [&[b][..], bytes].concat();
            data = &joined;
            self.offset -= 1;
        }
        while !data.is_empty() {
            match find_newline(data, unit) {
                Some(at) => {
                    self.append(&data[..at]);
                    self.offset += (at + unit) as u64;
                    out.push(self.take_line(true));
                    data = &data[at + unit..];
                }
                None => {
                    let whole = data.len() - data.len() % unit;
                    self.append(&data[..whole]);
                    self.offset += data.len() as u64;
                    if whole < data.len() {
                        self.carry = Some(data[whole]);
                    }
                    data = &[];
                }
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 64 * 1024 {
            self.pending = Vec::new();
        }
    }

    /// As [`feed`](Self::feed), for bytes in a buffer the lines may share: a UTF-8 line that
    /// lies wholly in `chunk` and fits the cap is a slice of it, not a copy. Everything else
    /// (UTF-16 and Latin-1, the line continuing the unfinished one, lines too long or not
    /// valid UTF-8) goes the way of `feed`, so both give the same lines.
    pub fn feed_shared(&mut self, chunk: &Bytes, out: &mut Vec<Line>) {
        if self.encoding != Encoding::Utf8 {
            return self.feed(chunk, out);
        }
        let data = &chunk[..];
        let mut start = 0;
        if self.has_partial() {
            // The first line continues the unfinished one.
            match find_byte(data, b'\n') {
                Some(at) => start = at + 1,
                None => return self.feed(data, out),
            }
            self.feed(&data[..start], out);
        }
        // The complete lines are checked as UTF-8 in one go; if some line is not valid, each
        // is checked on its own and the invalid ones are copied (and flagged) by `feed`.
        let lines_end = memchr::memrchr(b'\n', &data[start..]).map_or(start, |at| start + at);
        let checked = SharedText::new(chunk.slice(start..lines_end)).ok();
        let base = start;
        while let Some(at) = find_byte(&data[start..], b'\n') {
            let end = start + at;
            match self.shared_line(chunk, checked.as_ref().map(|c| (c, base)), start, end) {
                Some(line) => out.push(line),
                None => self.feed(&data[start..=end], out),
            }
            start = end + 1;
        }
        self.feed(&data[start..], out);
    }

    /// The line at `chunk[start..end]` (`end` at its `\n`) as a slice, if it can be one.
    /// `checked`: the complete lines from offset `base` of `chunk`, known to be UTF-8.
    fn shared_line(
        &mut self,
        chunk: &Bytes,
        checked: Option<(&SharedText, usize)>,
        start: usize,
        end: usize,
    ) -> Option<Line> {
        if end - start > self.max_line_bytes {
            return None;
        }
        let mut text_end = end;
        if chunk[start..end].ends_with(b"\r") {
            text_end -= 1;
        }
        let mut text_start = start;
        if chunk[start..text_end].starts_with("\u{feff}".as_bytes()) {
            text_start += "\u{feff}".len();
        }
        let text = match checked {
            Some((text, base)) => text.message(text_start - base..text_end - base)?,
            None => Message::shared(chunk.slice(text_start..text_end)).ok()?,
        };
        self.offset += (end + 1 - start) as u64;
        Some(Line {
            text,
            end_offset: self.offset,
            dropped_bytes: 0,
            invalid: false,
        })
    }

    /// Ships the unfinished line as it is (the file went quiet without a last newline).
    pub fn flush_partial(&mut self) -> Option<Line> {
        if !self.has_partial() {
            return None;
        }
        if let Some(b) = self.carry.take() {
            self.append(&[b]);
        }
        Some(self.take_line(false))
    }

    fn unit(&self) -> usize {
        match self.encoding {
            Encoding::Utf16Le => 2,
            Encoding::Utf8 | Encoding::Latin1 => 1,
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes.saturating_sub(self.pending.len());
        let keep = bytes.len().min(room);
        self.pending.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    fn take_line(&mut self, ended: bool) -> Line {
        let mut bytes = std::mem::take(&mut self.pending);
        let unit = self.unit();
        let cr: &[u8] = if unit == 2 { b"\r\0" } else { b"\r" };
        if ended && self.dropped == 0 && bytes.ends_with(cr) {
            bytes.truncate(bytes.len() - unit);
        }
        let dropped_bytes = std::mem::take(&mut self.dropped);
        let (mut text, invalid) = decode(self.encoding, bytes, dropped_bytes > 0);
        if text.starts_with('\u{feff}') {
            // A byte order mark (UTF-8 or UTF-16 files written by Windows tools).
            text.drain(..'\u{feff}'.len_utf8());
        }
        Line {
            text: text.into(),
            end_offset: self.offset,
            dropped_bytes,
            invalid,
        }
    }
}

/// The index of the first line ending (`\n`, or `\n\0` on a 2-byte boundary) in `data`.
fn find_newline(data: &[u8], unit: usize) -> Option<usize> {
    if unit == 1 {
        return find_byte(data, b'\n');
    }
    data.chunks_exact(2)
        .position(|c| c == b"\n\0")
        .map(|i| i * 2)
}

/// The index of the first `needle` in `data`, with the SIMD search of `memchr` (a 256 KiB
/// read of 200-byte lines is ~1,300 searches; a word-at-a-time loop was 2% of the agent's CPU).
fn find_byte(data: &[u8], needle: u8) -> Option<usize> {
    memchr::memchr(needle, data)
}

/// Decodes one line; `cut` means the bytes end mid-line, so an incomplete last character is
/// dropped rather than reported as invalid. Valid UTF-8 becomes the message without a copy.
fn decode(encoding: Encoding, bytes: Vec<u8>, cut: bool) -> (String, bool) {
    match encoding {
        Encoding::Latin1 => (bytes.iter().map(|&b| char::from(b)).collect(), false),
        Encoding::Utf16Le => {
            let (text, had_errors) = encoding_rs::UTF_16LE.decode_without_bom_handling(&bytes);
            (text.into_owned(), had_errors)
        }
        Encoding::Utf8 => match String::from_utf8(bytes) {
            Ok(text) => (text, false),
            Err(e) => {
                let error = e.utf8_error();
                let bytes = e.into_bytes();
                if cut && error.error_len().is_none() {
                    let valid = &bytes[..error.valid_up_to()];
                    (String::from_utf8_lossy(valid).into_owned(), false)
                } else {
                    (String::from_utf8_lossy(&bytes).into_owned(), true)
                }
            }
        },
    }
}

/// The message as shipped: `text` cut to [`MAX_MESSAGE_BYTES`] with a marker when bytes were
/// dropped (`dropped` source bytes already, more if the text itself is too long). Returns
/// whether it was truncated.
pub fn finish_message(text: Message, dropped: u64) -> (Message, bool) {
    if dropped == 0 && text.len() <= MAX_MESSAGE_BYTES {
        return (text, false);
    }
    let mut text = text.into_string();
    let cut = floor_char_boundary(&text, MAX_MESSAGE_BYTES - MARKER_RESERVE);
    let total = dropped + (text.len() - cut) as u64;
    text.truncate(cut);
    text.push_str(&format!("…[truncated {total} bytes]"));
    (text.into(), true)
}

/// The largest char boundary of `text` at or below `at`.
pub fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader, chunks: &[&[u8]]) -> Vec<Line> {
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, &mut out);
        }
        out
    }

    fn texts(lines: &[Line]) -> Vec<(&str, u64)> {
        lines
            .iter()
            .map(|l| (l.text.as_str(), l.end_offset))
            .collect()
    }

    #[test]
    fn newlines_are_found_in_every_lane() {
        for len in 0..40 {
            for at in 0..len {
                let mut data = vec![b'x'; len];
                data[at] = b'\n';
                if at + 2 < len {
                    data[at + 2] = b'\n';
                }
                assert_eq!(find_byte(&data, b'\n'), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_byte(&vec![b'y'; len], b'\n'), None);
        }
        // Bytes one above and below the needle, and high bytes, are not matches.
        assert_eq!(find_byte(b"\x0b\x09\x8a\xff\x0a", b'\n'), Some(4));
    }

    #[test]
    fn splits_across_reads_including_a_split_crlf() {
        let mut r = LineReader::new(Encoding::Utf8, 100);
        let out = lines(&mut r, &[b"one\r", b"\ntw", b"o\nthree\r\n", b"four"]);
        assert_eq!(texts(&out), [("one", 105), ("two", 109), ("three", 116)]);
        assert!(r.has_partial());
        assert_eq!(r.line_start(), 116);
        assert_eq!(r.offset(), 120);
        let last = r.flush_partial().unwrap();
        assert_eq!((last.text.as_str(), last.end_offset), ("four", 120));
        assert!(!r.has_partial());
        assert_eq!(r.line_start(), 120);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let data = b"a\r\nbb\n\nccc\r\nd\n";
        let mut whole = LineReader::new(Encoding::Utf8, 0);
        let expected = lines(&mut whole, &[data]);
        assert_eq!(expected.len(), 5);
        for i in 0..data.len() {
            for j in i..data.len() {
                let mut r = LineReader::new(Encoding::Utf8, 0);
                let got = lines(&mut r, &[&data[..i], &data[i..j], &data[j..]]);
                assert_eq!(got, expected, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let mut r = LineReader::new(Encoding::Utf8, 0);
        let out = lines(&mut r, &[b"ok \xff\xfe x\n", "é\n".as_bytes()]);
        assert_eq!(out[0].text, "ok \u{fffd}\u{fffd} x");
        assert!(out[0].invalid);
        assert_eq!(out[1].text, "é");
        assert!(!out[1].invalid);
    }

    #[test]
    fn a_3mb_line_is_capped_while_reading_and_marked() {
        let mut r = LineReader::new(Encoding::Utf8, 0);
        let mut out = Vec::new();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..48 {
            r.feed(&chunk, &mut out);
            assert!(r.pending.len() <= MAX_MESSAGE_BYTES);
        }
        r.feed(b"\nnext\n", &mut out);
        assert_eq!(out.len(), 2);
        let total = 48 * 64 * 1024;
        assert_eq!(out[0].dropped_bytes, (total - MAX_MESSAGE_BYTES) as u64);
        assert_eq!(out[0].end_offset, total as u64 + 1);
        assert_eq!(out[1].text, "next");
        let (message, truncated) =
            finish_message(out.remove(0).text, (total - MAX_MESSAGE_BYTES) as u64);
        assert!(truncated);
        assert!(message.len() <= MAX_MESSAGE_BYTES);
        let dropped = total - (MAX_MESSAGE_BYTES - MARKER_RESERVE);
        assert!(
            message.ends_with(&format!("…[truncated {dropped} bytes]")),
            "{}",
            &message[message.len() - 40..]
        );
    }

    #[test]
    fn a_cut_multibyte_character_is_not_invalid() {
        let mut r = LineReader::with_limit(Encoding::Utf8, 0, 4);
        let out = lines(&mut r, &["abcé\n".as_bytes()]);
        assert_eq!(out[0].text, "abc");
        assert!(!out[0].invalid);
        assert_eq!(out[0].dropped_bytes, 1);
    }

    #[test]
    fn utf16le_and_latin1() {
        let mut bytes = Vec::new();
        for unit in "héllo\r\nwörld\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        bytes.splice(0..0, [0xff, 0xfe]); // BOM
        let mut r = LineReader::new(Encoding::Utf16Le, 0);
        let (a, b) = bytes.split_at(9); // odd split: a UTF-16 unit across reads
        let out = lines(&mut r, &[a, b]);
        assert_eq!(texts(&out), [("héllo", 16), ("wörld", 28)]);
        let mut r = LineReader::new(Encoding::Latin1, 0);
        let out = lines(&mut r, &[b"caf\xe9\n"]);
        assert_eq!(out[0].text, "café");
    }

    #[test]
    fn short_messages_are_untouched() {
        assert_eq!(finish_message("abc".into(), 0), ("abc".into(), false));
        let (m, t) = finish_message("abc".into(), 5);
        assert!(t);
        assert_eq!(m, "abc…[truncated 5 bytes]");
    }

    /// Fragments that exercise every branch of the shared path: line ends, `\r\n`, a byte
    /// order mark, invalid and cut UTF-8, multibyte characters and long lines.
    fn fragment() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just("\u{feff}".as_bytes().to_vec()),
            Just(b"\xff".to_vec()),
            Just("é".as_bytes().to_vec()),
            Just("€".as_bytes()[..2].to_vec()),
            "[a-z ]{0,12}".prop_map(String::into_bytes),
            Just(vec![b'x'; 40]),
        ]
    }

    proptest::proptest! {
        /// Shared reads give exactly the lines, offsets and flags copying reads give, however
        /// the bytes are split into reads, and end where the copying reader ends.
        #[test]
        fn shared_reads_give_the_same_lines_as_copied_ones(
            parts in proptest::collection::vec(fragment(), 0..40),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let data: Vec<u8> = parts.concat();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for point in points.into_iter().chain([data.len()]) {
                chunks.push(&data[from..point]);
                from = point;
            }
            let mut copied = LineReader::with_limit(Encoding::Utf8, 7, 32);
            let mut shared = LineReader::with_limit(Encoding::Utf8, 7, 32);
            let mut want = Vec::new();
            let mut got = Vec::new();
            for chunk in &chunks {
                copied.feed(chunk, &mut want);
                shared.feed_shared(&Bytes::copy_from_slice(chunk), &mut got);
                proptest::prop_assert_eq!(shared.offset(), copied.offset());
                proptest::prop_assert_eq!(shared.line_start(), copied.line_start());
            }
            want.extend(copied.flush_partial());
            got.extend(shared.flush_partial());
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn plain_lines_of_a_shared_read_are_slices_of_it() {
        let chunk = Bytes::from_static(b"partial\none\r\n\xef\xbb\xbfbom\nbad \xff\nrest");
        let mut r = LineReader::new(Encoding::Utf8, 0);
        r.feed(b"a ", &mut Vec::new());
        let mut out = Vec::new();
        r.feed_shared(&chunk, &mut out);
        let shared: Vec<bool> = out.iter().map(|l| l.text.is_shared()).collect();
        // The continued line and the invalid one are copied; the others are slices.
        assert_eq!(shared, [false, true, true, false]);
        assert_eq!(out[0].text, "a partial");
        assert_eq!(out[1].text, "one");
        assert_eq!(out[2].text, "bom");
        assert!(out[3].invalid);
        assert_eq!(r.line_start(), chunk.len() as u64 + 2 - 4);
    }
}
