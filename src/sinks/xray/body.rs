//! The `PutTraceSegments` request body, written in one pass into one buffer.
//!
//! The body is `{"TraceSegmentDocuments":["…","…"]}`: each document, already validated JSON
//! text, becomes a JSON string, and the finished body is shared (not copied) by every attempt
//! of a batch. JSON in JSON is dense in bytes to escape (a quote every dozen bytes or so), so
//! copying the runs between them, as [`json_body`](crate::sinks::json_body) does for log text,
//! would be one copy call per run. Instead a document is written into room for its worst case
//! (validated JSON has no raw control byte but the whitespace between tokens, so every byte
//! that needs escaping becomes exactly two), eight clean bytes at a time and byte by byte
//! where a word holds something to escape; any other text falls back to the general escaper.
//! It never looks inside a document beyond escaping it.

use bytes::Bytes;

use crate::sinks::json_body::push_string;

/// The JSON body for `documents`.
pub fn put_trace_segments_body<'a>(documents: impl Iterator<Item = &'a str> + Clone) -> Bytes {
    const OPEN: &[u8] = br#"{"TraceSegmentDocuments":["#;
    const CLOSE: &[u8] = b"]}";
    // Quotes and commas, plus room for the usual share of escapes and for the worst case of
    // the document being written, so most bodies never reallocate.
    let (total, longest) = documents.clone().fold((0, 0), |(total, longest), d| {
        (total + d.len() + d.len() / 4 + 3, longest.max(d.len()))
    });
    let mut body = Vec::with_capacity(total + longest + OPEN.len() + CLOSE.len());
    body.extend_from_slice(OPEN);
    for (i, document) in documents.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        push_document(&mut body, document);
    }
    body.extend_from_slice(CLOSE);
    Bytes::from(body)
}

/// The second byte of the two-byte escape of each byte (0: none needed; 1: not two bytes,
/// a control byte JSON text cannot hold raw).
static ESCAPES: [u8; 256] = escapes();

const fn escapes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = 1;
        byte += 1;
    }
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table
}

/// Appends `document` as a quoted JSON string.
fn push_document(out: &mut Vec<u8>, document: &str) {
    let start = out.len();
    out.resize(start + 2 * document.len() + 2, 0);
    match escape_into(&mut out[start..], document.as_bytes()) {
        Some(written) => out.truncate(start + written),
        None => {
            out.truncate(start);
            push_string(out, document);
        }
    }
}

/// Writes `bytes` quoted and escaped into `room` (at least twice as long, plus two); returns
/// the length written, or `None` for text with a control byte that needs a `\u` escape.
///
/// Eight bytes are copied at a time whatever they hold; when the word has a byte to escape,
/// the output moves on only up to it, the escape is written, and the next word is read from
/// the byte after it. So the work is per word and per escape, not per byte, and the one
/// unpredictable branch is taken once per escape.
fn escape_into(room: &mut [u8], bytes: &[u8]) -> Option<usize> {
    room[0] = b'"';
    let mut at = 1;
    let mut from = 0;
    while let Some(word) = bytes.get(from..from + 8) {
        // `at` is at most `2 × from + 1`, so these eight bytes fit in the room.
        room[at..at + 8].copy_from_slice(word);
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let marks = marks(u64::from_le_bytes(lanes));
        if marks == 0 {
            at += 8;
            from += 8;
            continue;
        }
        // The lowest mark is exact (see [`marks`]): the first byte to escape.
        let clean = (marks.trailing_zeros() / 8) as usize;
        at = push_byte(room, at + clean, bytes[from + clean])?;
        from += clean + 1;
    }
    for &byte in &bytes[from..] {
        at = push_byte(room, at, byte)?;
    }
    room[at] = b'"';
    Some(at + 1)
}

#[inline(always)]
fn push_byte(room: &mut [u8], at: usize, byte: u8) -> Option<usize> {
    match ESCAPES[usize::from(byte)] {
        0 => {
            room[at] = byte;
            Some(at + 1)
        }
        1 => None,
        second => {
            room[at] = b'\\';
            room[at + 1] = second;
            Some(at + 2)
        }
    }
}

/// The high bit of every byte lane of `word` (read little-endian) that holds a `"`, a `\`
/// or a byte below 0x20. A borrow may mark lanes above a true match, never below one, so the
/// lowest mark is always exact, and no mark means no such byte.
fn marks(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_lanes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    control
        | zero_lanes(word ^ (ONES * u64::from(b'"')))
        | zero_lanes(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(body: &[u8]) -> Vec<String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Input {
            trace_segment_documents: Vec<String>,
        }
        let input: Input = serde_json::from_slice(body).expect("the body is JSON");
        input.trace_segment_documents
    }

    #[test]
    fn documents_come_back_byte_for_byte() {
        let docs = [
            r#"{"name":"a \"quoted\" \\ name","id":"70de5b6f19ff9a0a"}"#,
            "[{\"name\":\"tab\\tand é ✓\"},\n\t{}]",
            "{\"ctl\":\"\u{1}\u{1f}\"}",
        ];
        let body = put_trace_segments_body(docs.iter().copied());
        assert_eq!(decode(&body), docs);
    }

    #[test]
    fn an_empty_batch_is_an_empty_list() {
        assert_eq!(
            &put_trace_segments_body(std::iter::empty())[..],
            br#"{"TraceSegmentDocuments":[]}"#
        );
    }

    #[test]
    fn every_byte_position_in_a_word_is_escaped() {
        for len in 0..20 {
            for at in 0..len {
                for special in ["\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}"] {
                    let mut doc = "a".repeat(len);
                    doc.replace_range(at..at + 1, special);
                    let body = put_trace_segments_body(std::iter::once(doc.as_str()));
                    assert_eq!(decode(&body), [doc.clone()], "{doc:?}");
                }
            }
        }
    }

    #[test]
    fn documents_made_of_escapes_grow_the_buffer() {
        let docs = ["\u{1}".repeat(1000), "\"".repeat(999), "x\\".repeat(333)];
        let body = put_trace_segments_body(docs.iter().map(String::as_str));
        assert_eq!(decode(&body), docs);
    }

    proptest! {
        #[test]
        fn text_dense_in_escapes_round_trips(
            docs in proptest::collection::vec("[a\"\\\\\n\r\té{}:,]{0,40}", 0..5)
        ) {
            let body = put_trace_segments_body(docs.iter().map(String::as_str));
            prop_assert_eq!(decode(&body), docs);
        }

        #[test]
        fn any_text_round_trips(docs in proptest::collection::vec(any::<String>(), 0..5)) {
            let body = put_trace_segments_body(docs.iter().map(String::as_str));
            prop_assert_eq!(decode(&body), docs);
        }
    }
}
