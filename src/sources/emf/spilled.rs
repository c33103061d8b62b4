//! EMF log events as disk spill records: what `run_udp` writes when an event finds no memory,
//! and what the replay turns back into a [`LogEvent`].
//!
//! A record is a JSON array `[timestamp_ms, emf, group, stream, message]`: the event after
//! routing, so a replayed event is neither parsed nor counted a second time. Pure: no I/O.

use std::sync::Arc;

use crate::pipeline::ack::Ack;
use crate::pipeline::budget::Permit;
use crate::pipeline::{Destination, LogEvent};

/// One routed event as a spill record.
pub fn encode(timestamp_ms: i64, destination: &Destination, message: &str) -> Vec<u8> {
    let record = (
        timestamp_ms,
        destination.emf,
        &destination.group,
        &destination.stream,
        message,
    );
    serde_json::to_vec(&record).unwrap_or_default()
}

/// A spill record back as an event holding `permit`; `None` if it is not one of ours.
pub fn decode(payload: Vec<u8>, permit: Permit) -> Option<LogEvent> {
    let (timestamp_ms, emf, group, stream, message): (i64, bool, String, String, String) =
        serde_json::from_slice(&payload).ok()?;
    Some(LogEvent {
        timestamp_ms,
        message: message.into(),
        destination: Arc::new(Destination {
            group,
            stream,
            retention_days: None,
            group_class: None,
            emf,
        }),
        ack: Ack::none(),
        permit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::budget::Budget;

    #[test]
    fn an_event_survives_the_round_trip() {
        let destination = Destination {
            group: "/app/metrics".into(),
            stream: "host\tone".into(),
            retention_days: None,
            group_class: None,
            emf: true,
        };
        let message = r#"{"_aws":{"Timestamp":1},"a":"line\nbreak"}"#;
        let record = encode(1_700_000_000_000, &destination, message);
        let budget = Budget::new(1 << 20);
        let permit = budget.try_acquire(record.len()).expect("budget");
        let event = decode(record, permit).expect("decodes");
        assert_eq!(event.timestamp_ms, 1_700_000_000_000);
        assert_eq!(event.message, message);
        assert_eq!(*event.destination, destination);
        let permit = budget.try_acquire(1).expect("budget");
        assert!(decode(b"not a record".to_vec(), permit).is_none());
    }
}
