//! AWS SDK clients pointed at the stub (test credentials, us-east-1), reading traces back with
//! `BatchGetTraces`, and comparing JSON documents. Never: uses the machine's credentials or
//! region (everything is explicit), or the network.

use serde_json::Value;

use super::{TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY};

/// The static test credentials (`testing` / `testing`).
pub fn test_credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        TEST_ACCESS_KEY,
        TEST_SECRET_KEY,
        None,
        None,
        "cloudtail-tests",
    )
}

/// An X-Ray client for `endpoint`: test credentials, us-east-1, standard retries.
pub fn xray_client(endpoint: &str) -> aws_sdk_xray::Client {
    let config = aws_sdk_xray::Config::builder()
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .region(aws_sdk_xray::config::Region::new(TEST_REGION))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_xray::Client::from_conf(config)
}

/// A CloudWatch Logs client for `endpoint`: test credentials, us-east-1, standard retries.
pub fn logs_client(endpoint: &str) -> aws_sdk_cloudwatchlogs::Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatchlogs::config::Region::new(TEST_REGION))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// A CloudWatch (metrics) client for `endpoint`: test credentials, us-east-1, standard retries.
/// It speaks Smithy RPC v2 CBOR, which the stub translates for moto.
pub fn cloudwatch_client(endpoint: &str) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new(TEST_REGION))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// The sum CloudWatch reports for `namespace`/`name` (no dimensions) over the last hour, read
/// with `GetMetricStatistics`; 0 when there is none or the call fails (callers poll).
pub async fn metric_sum_last_hour(endpoint: &str, namespace: &str, name: &str) -> f64 {
    let now = super::now_secs() as i64;
    cloudwatch_client(endpoint)
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .start_time(aws_smithy_types::DateTime::from_secs(now - 3600))
        .end_time(aws_smithy_types::DateTime::from_secs(now + 600))
        .period(3600)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .map(|out| out.datapoints().iter().filter_map(|p| p.sum()).sum())
        .unwrap_or(0.0)
}

/// A CloudWatch client as the agent builds it: the SDK's own retries off, so a test sees each
/// injected fault once.
pub fn cloudwatch_client_without_retries(endpoint: &str) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new(TEST_REGION))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// Every segment document of the given traces, as `BatchGetTraces` returns them: the raw JSON
/// text (five trace ids per call, pages followed). Unknown trace ids are skipped. Panics on API
/// errors.
///
/// moto returns each document byte for byte as it was put, one entry per `PutTraceSegments`
/// document, sorted by `start_time`: subsegments streamed separately stay separate entries, and
/// a segment put twice is there twice (real X-Ray merges both). A trace whose latest-starting
/// document has no `end_time` comes back with `Id: null`.
pub async fn batch_get_trace_documents(
    client: &aws_sdk_xray::Client,
    trace_ids: &[String],
) -> Vec<String> {
    let mut docs = Vec::new();
    for chunk in trace_ids.chunks(5) {
        let mut next_token: Option<String> = None;
        loop {
            let out = client
                .batch_get_traces()
                .set_trace_ids(Some(chunk.to_vec()))
                .set_next_token(next_token.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("BatchGetTraces {chunk:?}: {e:?}"));
            for trace in out.traces() {
                for segment in trace.segments() {
                    docs.push(segment.document().unwrap_or("null").to_string());
                }
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
    }
    docs
}

/// [`batch_get_trace_documents`], parsed. Compare with [`json_diff`], not `==`, unless both
/// sides were parsed from the same text: serde_json (without its `float_roundtrip` feature)
/// may parse a float 1 ULP away from the value that was printed.
pub async fn batch_get_traces(client: &aws_sdk_xray::Client, trace_ids: &[String]) -> Vec<Value> {
    batch_get_trace_documents(client, trace_ids)
        .await
        .iter()
        .map(|doc| {
            serde_json::from_str(doc).unwrap_or_else(|e| panic!("segment document {doc:?}: {e}"))
        })
        .collect()
}

/// The first difference between two JSON values, as `path: left != right`, or None when they
/// are the same. Numbers are the same when they are within a few ULPs of each other (see
/// [`batch_get_traces`]); object key order does not matter.
pub fn json_diff(left: &Value, right: &Value) -> Option<String> {
    fn walk(path: &str, l: &Value, r: &Value) -> Option<String> {
        match (l, r) {
            (Value::Object(a), Value::Object(b)) => {
                for key in a.keys().chain(b.keys()) {
                    let here = format!("{path}.{key}");
                    match (a.get(key), b.get(key)) {
                        (Some(x), Some(y)) => {
                            if let Some(diff) = walk(&here, x, y) {
                                return Some(diff);
                            }
                        }
                        (x, y) => return Some(format!("{here}: {x:?} != {y:?}")),
                    }
                }
                None
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    return Some(format!("{path}: {} items != {} items", a.len(), b.len()));
                }
                a.iter()
                    .zip(b)
                    .enumerate()
                    .find_map(|(i, (x, y))| walk(&format!("{path}[{i}]"), x, y))
            }
            (Value::Number(a), Value::Number(b)) => {
                let close = match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => {
                        (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                    }
                    _ => false,
                };
                (a != b && !close).then(|| format!("{path}: {a} != {b}"))
            }
            _ => (l != r).then(|| format!("{path}: {l} != {r}")),
        }
    }
    walk("$", left, right)
}
