//! The `PutTraceSegments` request body, written in one pass into one buffer.
//!
//! The body is `{"TraceSegmentDocuments":["…","…"]}`: each document, already validated JSON
//! text, becomes a JSON string. Escaping copies the runs between the few bytes that need it
//! (`"`, `\` and control bytes), so a ~1 KB document costs a handful of copies instead of a
//! step per byte, and the finished body is shared (not copied) by every attempt of a batch.
//! It never looks inside a document beyond escaping it.

use bytes::Bytes;

/// The JSON body for `documents`.
pub fn put_trace_segments_body<'a>(documents: impl Iterator<Item = &'a str> + Clone) -> Bytes {
    const OPEN: &[u8] = br#"{"TraceSegmentDocuments":["#;
    const CLOSE: &[u8] = b"]}";
    // Quotes and commas, plus a little room for escapes, so most bodies never reallocate.
    let capacity = documents
        .clone()
        .map(|d| d.len() + d.len() / 8 + 3)
        .sum::<usize>()
        + OPEN.len()
        + CLOSE.len()
        + ROOM;
    let mut body = Vec::with_capacity(capacity);
    body.extend_from_slice(OPEN);
    for (i, document) in documents.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        push_json_string(&mut body, document);
    }
    body.extend_from_slice(CLOSE);
    Bytes::from(body)
}

/// Bytes read and written at a time.
const WORD: usize = 8;

/// Appends `text` as a quoted JSON string. Works a word (8 bytes) at a time: a word without a
/// byte to escape is copied with one store; otherwise the bytes before the first such byte are
/// (the store writes all 8, and the cursor only moves past the clean ones), then its escape.
/// The output is sized for the usual share of escapes and grown when a document has more.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    let text = text.as_bytes();
    let mut o = out.len();
    out.resize(o + text.len() + text.len() / 8 + ROOM, 0);
    out[o] = b'"';
    o += 1;
    let mut i = 0;
    while let Some(chunk) = text.get(i..i + WORD) {
        make_room(out, o, text.len() - i);
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        out[o..o + WORD].copy_from_slice(&word);
        let special = special_bytes(u64::from_le_bytes(word));
        if special == 0 {
            i += WORD;
            o += WORD;
            continue;
        }
        let clean = (special.trailing_zeros() / 8) as usize;
        o += clean;
        o += write_escape(&mut out[o..], word[clean]);
        i += clean + 1;
    }
    make_room(out, o, text.len() - i);
    for &byte in &text[i..] {
        if needs_escape(byte) {
            o += write_escape(&mut out[o..], byte);
        } else {
            out[o] = byte;
            o += 1;
        }
    }
    out[o] = b'"';
    out.truncate(o + 1);
}

/// Room past the cursor that one step may write: a word, or the longest escape (`\u00XX`) of
/// each byte of a word, plus the closing quote.
const ROOM: usize = 6 * WORD + 1;

/// Grows `out` when fewer than [`ROOM`] bytes are left after `o`, by what the `rest` of the
/// input needs when nothing else is escaped.
fn make_room(out: &mut Vec<u8>, o: usize, rest: usize) {
    if o + ROOM > out.len() {
        out.resize(o + rest + rest / 8 + ROOM, 0);
    }
}

fn needs_escape(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// The high bit of every byte of `word` that needs escaping (`"`, `\`, below 0x20), exactly.
fn special_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const fn ones(byte: u8) -> u64 {
        u64::from_le_bytes([byte; 8])
    }
    // The high bit of each byte of `x` that is zero (no carry crosses a byte).
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    zero(word ^ ones(b'"')) | zero(word ^ ones(b'\\')) | zero(word & ones(0xe0))
}

/// Writes the escape of `byte` at the start of `dst`; returns its length.
fn write_escape(dst: &mut [u8], byte: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            let hex = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
            dst[..6].copy_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            return 6;
        }
    };
    dst[..2].copy_from_slice(&[b'\\', short]);
    2
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
                for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}"] {
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
        fn any_text_round_trips(docs in proptest::collection::vec(any::<String>(), 0..5)) {
            let body = put_trace_segments_body(docs.iter().map(String::as_str));
            prop_assert_eq!(decode(&body), docs);
        }
    }
}
