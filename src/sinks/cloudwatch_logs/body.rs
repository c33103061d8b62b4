//! The `PutLogEvents` request body, written in one pass into one pre-sized buffer.
//!
//! `{"logGroupName":"…","logStreamName":"…","logEvents":[{"timestamp":…,"message":"…"},…]}`,
//! the awsJson1_1 document the SDK would serialise for the same input, with strings escaped
//! by [`json_body`](crate::sinks::json_body). Writing it here spares a copy of every message
//! into the SDK's `InputLogEvent`s (the SDK consumes its input) and the SDK's byte-at-a-time
//! escaping into a body that grows by doubling. Pure: it never sorts, splits or checks limits
//! (`batch.rs` made the request valid); events are written in the order given.

use std::ops::Range;

use bytes::Bytes;

use crate::sinks::json_body::{push_i64, push_string};

/// JSON around one event, digits of its timestamp included (`{"timestamp":…,"message":""},`).
const PER_EVENT_BYTES: usize = 48;

/// The capacity a body for these events is written into without growing: the text, the
/// JSON around it, and a sixteenth more for escapes.
pub fn body_capacity<'a>(
    group: &str,
    stream: &str,
    events: impl Iterator<Item = (i64, &'a str)>,
) -> usize {
    let text: usize = events
        .map(|(_, message)| message.len() + PER_EVENT_BYTES)
        .sum();
    text + text / 16 + group.len() + stream.len() + 64
}

/// The JSON body of one `PutLogEvents` call for `events` (timestamp in ms, message) to
/// `group`/`stream`, written into `body` (cleared first; a buffer of a finished call, or a
/// new one of [`body_capacity`]).
pub fn put_log_events_body<'a>(
    mut body: Vec<u8>,
    group: &str,
    stream: &str,
    events: impl Iterator<Item = (i64, &'a str)> + Clone,
) -> Bytes {
    body.clear();
    body.reserve(body_capacity(group, stream, events.clone()));
    body.extend_from_slice(br#"{"logGroupName":"#);
    push_string(&mut body, group);
    body.extend_from_slice(br#","logStreamName":"#);
    push_string(&mut body, stream);
    body.extend_from_slice(br#","logEvents":["#);
    // The events of a read share a millisecond (a file read at full speed is a thousand lines
    // or more per millisecond): an equal timestamp copies the last one's digits, not formats
    // them again digit by digit.
    let mut last: Option<(i64, Range<usize>)> = None;
    for (i, (timestamp_ms, message)) in events.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"timestamp":"#);
        match &last {
            Some((last_ms, digits)) if *last_ms == timestamp_ms => {
                body.extend_from_within(digits.clone());
            }
            _ => {
                let start = body.len();
                push_i64(&mut body, timestamp_ms);
                last = Some((timestamp_ms, start..body.len()));
            }
        }
        body.extend_from_slice(br#","message":"#);
        push_string(&mut body, message);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use aws_credential_types::Credentials;
    use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    use aws_sdk_cloudwatchlogs::Client;
    use proptest::prelude::*;
    use serde_json::Value;

    fn body(events: &[(i64, String)]) -> Bytes {
        put_log_events_body(
            Vec::new(),
            "/app/g",
            "s-1",
            events.iter().map(|(t, m)| (*t, m.as_str())),
        )
    }

    /// The body the SDK itself serialises for the same input: captured just before signing
    /// from a call to a closed port (it fails to connect; nothing leaves the machine).
    async fn sdk_body(group: &str, stream: &str, events: &[(i64, String)]) -> Vec<u8> {
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(RetryConfig::disabled())
            .build();
        let mut input = Vec::new();
        for (t, m) in events {
            let event = InputLogEvent::builder().timestamp(*t).message(m).build();
            input.push(event.expect("timestamp and message are set"));
        }
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        let result = Client::from_conf(config)
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(input))
            .customize()
            .mutate_request(move |request| {
                let bytes = request.body().bytes().unwrap_or_default().to_vec();
                *sink.lock().expect("not poisoned") = bytes;
            })
            .send()
            .await;
        assert!(result.is_err(), "nothing listens on port 1");
        let body = captured.lock().expect("not poisoned").clone();
        assert!(!body.is_empty(), "the SDK's body was captured");
        body
    }

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the body is JSON")
    }

    fn tricky_events() -> Vec<(i64, String)> {
        vec![
            (1_764_000_000_000, "plain text line".to_owned()),
            (
                1_764_000_000_001,
                r#"{"json":"with \"quotes\" and \\ backslashes"}"#.to_owned(),
            ),
            (
                1_764_000_000_001,
                "tab\tcr\rnl\n bs\u{8} ff\u{c} nul\u{0} us\u{1f} del\u{7f}".to_owned(),
            ),
            (0, "non-ASCII: é ✓ 日本 🚀".to_owned()),
            (
                -1,
                String::from_utf8_lossy(b"invalid \xff\xfe utf-8 replaced").into_owned(),
            ),
            (i64::MAX, "x".repeat(1000)),
        ]
    }

    #[tokio::test]
    async fn equals_what_the_sdk_serialises() {
        let events = tricky_events();
        let sdk = sdk_body("/app/g", "s-1", &events).await;
        assert_eq!(value(&body(&events)), value(&sdk));
        let none = sdk_body("/app/g", "s-1", &[]).await;
        assert_eq!(value(&body(&[])), value(&none));
    }

    #[test]
    fn events_come_back_in_order_byte_for_byte() {
        let events = tricky_events();
        let parsed = value(&body(&events));
        assert_eq!(parsed["logGroupName"], "/app/g");
        assert_eq!(parsed["logStreamName"], "s-1");
        let back: Vec<(i64, String)> = parsed["logEvents"]
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                let t = e["timestamp"].as_i64().expect("an integer");
                (t, e["message"].as_str().expect("a string").to_owned())
            })
            .collect();
        assert_eq!(back, events);
    }

    #[test]
    fn plain_lines_fit_the_initial_capacity() {
        let events: Vec<(i64, String)> = (0..5000)
            .map(|i| {
                (
                    1_764_000_000_000 + i,
                    format!("{i:012} level=INFO {}", "x".repeat(180)),
                )
            })
            .collect();
        let text: usize = events.iter().map(|(_, m)| m.len()).sum();
        let bytes = body(&events);
        assert!(bytes.len() < text + events.len() * PER_EVENT_BYTES);
    }

    #[test]
    fn a_used_buffer_gives_the_same_body_as_a_new_one() {
        let events = tricky_events();
        let fresh = body(&events);
        let mut used = vec![b'#'; 3 * fresh.len()];
        used.truncate(fresh.len() / 2);
        let again = put_log_events_body(
            used,
            "/app/g",
            "s-1",
            events.iter().map(|(t, m)| (*t, m.as_str())),
        );
        assert_eq!(again, fresh);
    }

    /// Our body and the SDK's for `events` to `g`/`s`, parsed.
    fn ours_and_sdk(events: &[(i64, String)]) -> (Value, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let sdk = runtime.block_on(sdk_body("g", "s", events));
        let ours = put_log_events_body(
            Vec::new(),
            "g",
            "s",
            events.iter().map(|(t, m)| (*t, m.as_str())),
        );
        (value(&ours), value(&sdk))
    }

    fn event() -> impl Strategy<Value = (i64, String)> {
        (any::<i64>(), any::<String>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_events_equal_the_sdk_body(events in proptest::collection::vec(event(), 0..20)) {
            let (ours, sdk) = ours_and_sdk(&events);
            prop_assert_eq!(ours, sdk);
        }

        /// Runs of equal timestamps (digits copied) and changes between them.
        #[test]
        fn repeated_timestamps_equal_the_sdk_body(
            events in proptest::collection::vec(repeated_event(), 0..40)
        ) {
            let (ours, sdk) = ours_and_sdk(&events);
            prop_assert_eq!(ours, sdk);
        }
    }

    fn repeated_event() -> impl Strategy<Value = (i64, String)> {
        let timestamps = vec![
            i64::MIN,
            -1,
            0,
            7,
            1_764_000_000_000,
            1_764_000_000_001,
            i64::MAX,
        ];
        (proptest::sample::select(timestamps), "[a-z]{0,8}")
    }
}
