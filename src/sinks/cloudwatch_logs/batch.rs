//! Turns one closed batch of log events into `PutLogEvents` requests the API will accept.
//!
//! Pure: no I/O, no clock, no AWS types. The pipeline closes batches on count and bytes but not
//! on order or time span, so this file sorts each batch by timestamp (stably: events with equal
//! timestamps keep the order they were read in) and cuts it wherever one more event would break
//! a limit: 10,000 events, 1,048,576 bytes (message bytes + 26 per event), a span of less than
//! 24 hours. Events no request can ever carry (empty, or larger than a whole request) are set
//! apart for the sink to count as invalid. Every event comes out exactly once; this file never
//! drops, duplicates or reorders events with equal timestamps.

use crate::pipeline::{LogEvent, LOG_EVENT_OVERHEAD_BYTES};

/// Most events in one `PutLogEvents` call.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// Most bytes in one call, counted as message bytes plus [`LOG_EVENT_OVERHEAD_BYTES`] per event.
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// A request's first and last timestamps must be less than this far apart (24 hours).
pub const MAX_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// What the splitter needs to know about an event.
pub trait PutEvent {
    /// Milliseconds since the epoch.
    fn timestamp_ms(&self) -> i64;
    /// Bytes as `PutLogEvents` counts them (message + overhead).
    fn api_size(&self) -> usize;
}

impl PutEvent for LogEvent {
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn api_size(&self) -> usize {
        LogEvent::api_size(self)
    }
}

/// A batch cut into API-valid requests.
#[derive(Debug)]
pub struct Plan<T> {
    /// Requests in timestamp order, each keeping every limit.
    pub requests: Vec<Vec<T>>,
    /// Events no request can carry: an empty message, or one larger than a whole request.
    pub invalid: Vec<T>,
}

/// Sorts `events` by timestamp (stable) and splits them into requests that keep every
/// `PutLogEvents` limit.
pub fn plan<T: PutEvent>(events: Vec<T>) -> Plan<T> {
    let carried = |e: &T| {
        let size = e.api_size();
        size > LOG_EVENT_OVERHEAD_BYTES && size <= MAX_REQUEST_BYTES
    };
    // The common case, every event valid and already in time order (a file read at one
    // pace), moves the events without partitioning or sorting them.
    let (mut valid, invalid): (Vec<T>, Vec<T>) = if events.iter().all(carried) {
        (events, Vec::new())
    } else {
        events.into_iter().partition(carried)
    };
    if !valid.is_sorted_by_key(PutEvent::timestamp_ms) {
        valid.sort_by_key(PutEvent::timestamp_ms);
    }
    // A batch the pipeline closed at the API's limits is usually one request as it is: it
    // moves whole instead of event by event.
    if fits_one_request(&valid) {
        let requests = if valid.is_empty() {
            Vec::new()
        } else {
            vec![valid]
        };
        return Plan { requests, invalid };
    }
    let mut requests = Vec::new();
    let mut rest = valid.into_iter().peekable();
    while rest.peek().is_some() {
        let mut current: Vec<T> = Vec::with_capacity(rest.len().min(MAX_EVENTS_PER_REQUEST));
        let mut bytes = 0usize;
        let mut first_ms = 0i64;
        while let Some(event) = rest.peek() {
            let size = event.api_size();
            let fits = current.len() < MAX_EVENTS_PER_REQUEST
                && bytes + size <= MAX_REQUEST_BYTES
                && event.timestamp_ms().saturating_sub(first_ms) < MAX_SPAN_MS;
            if !current.is_empty() && !fits {
                break;
            }
            if current.is_empty() {
                first_ms = event.timestamp_ms();
            }
            bytes += size;
            current.extend(rest.next());
        }
        requests.push(current);
    }
    Plan { requests, invalid }
}

/// Whether `sorted` events (in timestamp order) keep every limit of one request together.
fn fits_one_request<T: PutEvent>(sorted: &[T]) -> bool {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return true;
    };
    sorted.len() <= MAX_EVENTS_PER_REQUEST
        && last.timestamp_ms().saturating_sub(first.timestamp_ms()) < MAX_SPAN_MS
        && sorted.iter().map(PutEvent::api_size).sum::<usize>() <= MAX_REQUEST_BYTES
}

/// Splits a request in two halves (the first gets the smaller half), for bisecting a request
/// the service refused as a whole. Both halves keep every limit because the whole did.
pub fn halves<T>(mut events: Vec<T>) -> (Vec<T>, Vec<T>) {
    let second = events.split_off(events.len() / 2);
    (events, second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stand-in event: (timestamp, api size, read order).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Ev {
        ts: i64,
        size: usize,
        id: usize,
    }

    impl PutEvent for Ev {
        fn timestamp_ms(&self) -> i64 {
            self.ts
        }
        fn api_size(&self) -> usize {
            self.size
        }
    }

    fn ev(id: usize, ts: i64, size: usize) -> Ev {
        Ev { ts, size, id }
    }

    const HOUR: i64 = 60 * 60 * 1000;
    const MAX_MESSAGE: usize = MAX_REQUEST_BYTES - LOG_EVENT_OVERHEAD_BYTES;

    /// Every limit, exactly once, chronological, stable.
    fn check(input: &[Ev], plan: &Plan<Ev>) {
        let mut seen: Vec<usize> = plan.invalid.iter().map(|e| e.id).collect();
        for request in &plan.requests {
            assert!(!request.is_empty());
            assert!(request.len() <= MAX_EVENTS_PER_REQUEST);
            let bytes: usize = request.iter().map(|e| e.size).sum();
            assert!(bytes <= MAX_REQUEST_BYTES, "request of {bytes} bytes");
            let (first, last) = (request[0].ts, request[request.len() - 1].ts);
            assert!(last - first < MAX_SPAN_MS, "span {}", last - first);
            for pair in request.windows(2) {
                assert!(pair[0].ts <= pair[1].ts, "not chronological");
                if pair[0].ts == pair[1].ts {
                    assert!(pair[0].id < pair[1].id, "equal timestamps reordered");
                }
            }
            seen.extend(request.iter().map(|e| e.id));
        }
        for window in plan.requests.windows(2) {
            let last = window[0][window[0].len() - 1];
            assert!(last.ts <= window[1][0].ts, "requests out of order");
        }
        for e in &plan.invalid {
            assert!(e.size <= LOG_EVENT_OVERHEAD_BYTES || e.size > MAX_REQUEST_BYTES);
        }
        seen.sort_unstable();
        let expected: Vec<usize> = input.iter().map(|e| e.id).collect();
        assert_eq!(seen, expected, "an event was lost or duplicated");
    }

    /// Mostly small messages, some huge, a few at and past the limit, some empty.
    fn size() -> impl Strategy<Value = usize> {
        prop_oneof![
            8 => 1usize..300,
            2 => 1usize..=MAX_MESSAGE,
            1 => MAX_MESSAGE - 64..=MAX_MESSAGE + 64,
            1 => Just(0usize),
        ]
        .prop_map(|message| message + LOG_EVENT_OVERHEAD_BYTES)
    }

    /// Timestamps over a few days, many of them equal, in shuffled order.
    fn timestamp() -> impl Strategy<Value = i64> {
        let base = 1_764_000_000_000i64;
        prop_oneof![
            4 => (0i64..5 * 24 * HOUR).prop_map(move |t| base + t),
            2 => (0i64..4).prop_map(move |h| base + h * 24 * HOUR),
            1 => (0i64..3).prop_map(move |k| base + k * MAX_SPAN_MS - 1),
        ]
    }

    fn stream(max: usize) -> impl Strategy<Value = Vec<Ev>> {
        prop::collection::vec((timestamp(), size()), 0..max).prop_map(|pairs| {
            pairs
                .into_iter()
                .enumerate()
                .map(|(id, (ts, size))| ev(id, ts, size))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn requests_keep_every_limit(events in stream(400)) {
            let plan = plan(events.clone());
            check(&events, &plan);
        }

        #[test]
        fn many_small_events_split_on_count(events in prop::collection::vec(0i64..3 * HOUR, 0..25_000)) {
            let events: Vec<Ev> = events.into_iter().enumerate().map(|(id, ts)| ev(id, ts, 30)).collect();
            let plan = plan(events.clone());
            check(&events, &plan);
            prop_assert_eq!(plan.requests.len(), events.len().div_ceil(MAX_EVENTS_PER_REQUEST));
        }

        #[test]
        fn halves_keep_every_event(events in stream(50)) {
            let (a, b) = halves(events.clone());
            prop_assert!(a.len() <= b.len());
            prop_assert_eq!([a, b].concat(), events);
        }
    }

    #[test]
    fn span_of_exactly_24_hours_is_cut() {
        let events = vec![
            ev(0, 0, 30),
            ev(1, MAX_SPAN_MS - 1, 30),
            ev(2, MAX_SPAN_MS, 30),
        ];
        let plan = plan(events);
        let ids: Vec<Vec<usize>> = plan
            .requests
            .iter()
            .map(|r| r.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn bytes_fill_exactly_to_the_limit() {
        let half = MAX_REQUEST_BYTES / 2;
        let events = vec![ev(0, 1, half), ev(1, 1, half), ev(2, 1, 27)];
        let plan = plan(events);
        assert_eq!(plan.requests.len(), 2);
        assert_eq!(plan.requests[0].len(), 2);
    }

    #[test]
    fn empty_and_oversized_events_are_set_apart() {
        let events = vec![
            ev(0, 5, LOG_EVENT_OVERHEAD_BYTES),
            ev(1, 4, MAX_REQUEST_BYTES + 1),
            ev(2, 3, MAX_REQUEST_BYTES),
        ];
        let plan = plan(events);
        let invalid: Vec<usize> = plan.invalid.iter().map(|e| e.id).collect();
        assert_eq!(invalid, vec![0, 1]);
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.requests[0][0].id, 2);
    }
}
