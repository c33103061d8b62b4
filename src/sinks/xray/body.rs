//! The `PutTraceSegments` request body, written in one pass into one buffer.
//!
//! The body is `{"TraceSegmentDocuments":["…","…"]}`: each document, already validated JSON
//! text, becomes a JSON string, escaped by [`json_body`](crate::sinks::json_body) (runs
//! copied whole between the few bytes that need escaping), and the finished body is shared
//! (not copied) by every attempt of a batch.
//! It never looks inside a document beyond escaping it.

use bytes::Bytes;

use crate::sinks::json_body::push_string;

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
        push_string(&mut body, document);
    }
    body.extend_from_slice(CLOSE);
    Bytes::from(body)
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
