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
        + CLOSE.len();
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

/// Appends `text` as a quoted JSON string.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        if short.is_empty() {
            let hex = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex);
        } else {
            out.extend_from_slice(short);
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
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

    proptest! {
        #[test]
        fn any_text_round_trips(docs in proptest::collection::vec(any::<String>(), 0..5)) {
            let body = put_trace_segments_body(docs.iter().map(String::as_str));
            prop_assert_eq!(decode(&body), docs);
        }
    }
}
