//! The fake against the real SDK clients: each service's success and throttling answers must
//! be what its SDK parses (a throttling error the retry layer recognises, not an unhandled
//! one), and `/stats` must count what the SDK sent.

use super::*;

use aws_sdk_cloudwatch::types::MetricDatum;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_runtime_api::client::result::SdkError;

/// A fake on a free port, throttling every second data call; its base URL and counts.
async fn start_fake() -> (String, Arc<Stats>) {
    start_fake_with(&["--throttle-every", "2"]).await
}

async fn start_fake_with(args: &[&str]) -> (String, Arc<Stats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let stats = Arc::new(Stats::default());
    let options = parse_options(args.iter().map(|a| a.to_string())).expect("options");
    tokio::spawn(accept_loop(
        listener,
        None,
        Arc::clone(&stats),
        Arc::new(options),
    ));
    (url, stats)
}

macro_rules! client {
    ($sdk:ident, $url:expr) => {{
        use $sdk::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
        let config = $sdk::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url($url)
            .credentials_provider(Credentials::new("x", "x", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build();
        $sdk::Client::from_conf(config)
    }};
}

/// The error code of a failed call, or "ok".
fn code<E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::fmt::Debug, R>(
    result: &Result<R, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(SdkError::ServiceError(e)) => e.err().code().unwrap_or("no code").to_string(),
        Err(other) => format!("{other:?}"),
    }
}

#[tokio::test]
async fn cloudwatch_logs_accepts_then_throttles_and_counts_duplicates() {
    let (url, stats) = start_fake().await;
    let client = client!(aws_sdk_cloudwatchlogs, &url);
    let event = |m: &str| {
        InputLogEvent::builder()
            .timestamp(1)
            .message(m)
            .build()
            .expect("event")
    };
    let mut codes = Vec::new();
    for _ in 0..3 {
        let put = client
            .put_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .log_events(event("000001 a"))
            .log_events(event("000002 bb"))
            .send()
            .await;
        codes.push(code(&put));
    }
    assert_eq!(codes, ["ok", "ThrottlingException", "ok"]);
    let json: serde_json::Value = serde_json::from_str(&stats.to_json()).expect("JSON");
    assert_eq!(json["log_calls"], 2);
    assert_eq!(json["events"], 4);
    assert_eq!(json["event_bytes"], 2 * (8 + 9));
    assert_eq!(json["distinct_events"], 2);
    assert_eq!(json["duplicate_events"], 2);
    assert_eq!(json["operations"]["PutLogEvents"]["throttled"], 1);
    assert!(json["connections"].as_u64() >= Some(1));
}

#[tokio::test]
async fn xray_and_cloudwatch_accept_then_throttle() {
    let (url, stats) = start_fake().await;
    let xray = client!(aws_sdk_xray, &url);
    let mut codes = Vec::new();
    for _ in 0..2 {
        let put = xray
            .put_trace_segments()
            .trace_segment_documents(r#"{"id":"a"}"#)
            .trace_segment_documents(r#"{"id":"b"}"#)
            .send()
            .await;
        codes.push(code(&put));
    }
    let cloudwatch = client!(aws_sdk_cloudwatch, &url);
    for _ in 0..2 {
        let datum = MetricDatum::builder()
            .metric_name("m")
            .values(1.5)
            .counts(4.0)
            .build();
        let put = cloudwatch
            .put_metric_data()
            .namespace("n")
            .metric_data(datum)
            .send()
            .await;
        codes.push(code(&put));
    }
    assert_eq!(codes[..3], ["ok", "ThrottledException", "ok"]);
    assert!(
        ["ThrottlingException", "Throttling"].contains(&codes[3].as_str()),
        "CloudWatch's throttling code, got {}",
        codes[3]
    );
    let json: serde_json::Value = serde_json::from_str(&stats.to_json()).expect("JSON");
    assert_eq!(json["segments"], 2);
    assert_eq!(json["datums"], 1);
    assert_eq!(json["samples"], 4);
    assert_eq!(json["sum"], 6.0);
    assert_eq!(json["throttled"], 2);
}

#[tokio::test]
async fn a_delayed_call_is_counted_even_when_the_client_gives_up() {
    let (url, stats) = start_fake_with(&["--delay-ms", "5000"]).await;
    let client = {
        use aws_sdk_cloudwatchlogs::config::{retry::RetryConfig, timeout::TimeoutConfig};
        use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_millis(300))
            .build();
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(Credentials::new("x", "x", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        aws_sdk_cloudwatchlogs::Client::from_conf(config)
    };
    let event = InputLogEvent::builder()
        .timestamp(1)
        .message("000007 late")
        .build()
        .expect("event");
    let put = client
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event)
        .send()
        .await;
    assert!(matches!(put, Err(SdkError::TimeoutError(_))), "{put:?}");
    let json: serde_json::Value = serde_json::from_str(&stats.to_json()).expect("JSON");
    assert_eq!(
        json["log_calls"], 1,
        "taken, as AWS would, though unanswered"
    );
    assert_eq!(json["distinct_events"], 1);
}
