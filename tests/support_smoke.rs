//! Smoke tests of the test support itself: the stub AWS endpoint (`tests/support/moto_front.py`
//! in front of moto) answers the Rust SDK clients the agent uses, refuses unsigned sampling
//! requests, journals requests and injects faults; the Prometheus parser reads what it should.
//! These run no agent: when they fail, the other integration tests' failures mean nothing.

mod support;

use std::time::Duration;

use aws_sdk_xray::error::ProvideErrorMetadata;
use serde_json::json;
use support::{
    batch_get_trace_documents, batch_get_traces, cloudwatch_client, http_request, json_diff,
    new_segment_id, new_trace_id, now_secs, test_credentials, xray_client, Metrics, Moto,
};

fn segment(trace_id: &str) -> serde_json::Value {
    let now = now_secs();
    json!({
        "id": new_segment_id(),
        "name": "support-smoke",
        "trace_id": trace_id,
        "start_time": now - 0.25,
        "end_time": now,
        "annotations": {"customer_id": "c-1", "retries": 2, "cached": true},
        "metadata": {"debug": {"items": [1, 2, 3]}},
        "subsegments": [{
            "id": new_segment_id(),
            "name": "db.query",
            "start_time": now - 0.2,
            "end_time": now - 0.1,
            "namespace": "remote"
        }]
    })
}

#[tokio::test]
async fn put_trace_segments_round_trips_through_batch_get_traces() {
    let moto = Moto::start();
    let client = xray_client(&moto.endpoint());
    let trace_id = new_trace_id();
    let doc = segment(&trace_id);

    let out = client
        .put_trace_segments()
        .trace_segment_documents(doc.to_string())
        .send()
        .await
        .expect("PutTraceSegments");
    assert!(
        out.unprocessed_trace_segments().is_empty(),
        "{:?}",
        out.unprocessed_trace_segments()
    );

    // moto hands back the text that was put, byte for byte.
    let sent = doc.to_string();
    let raw = batch_get_trace_documents(&client, std::slice::from_ref(&trace_id)).await;
    assert_eq!(raw, [sent]);
    let docs = batch_get_traces(&client, std::slice::from_ref(&trace_id)).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(json_diff(&docs[0], &doc), None);
    let unknown = batch_get_traces(&client, &[new_trace_id()]).await;
    assert!(unknown.is_empty(), "{unknown:?}");

    let puts = moto.requests_for("PutTraceSegments");
    assert_eq!(puts.len(), 1, "{puts:?}");
    let auth = puts[0]["headers"]["Authorization"]
        .as_str()
        .unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=testing/"),
        "{auth}"
    );
    assert_eq!(puts[0]["status"], 200);
    assert_eq!(
        puts[0]["body"]["TraceSegmentDocuments"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    moto.reset();
    assert!(moto.requests().is_empty());
    assert!(batch_get_traces(&client, &[trace_id]).await.is_empty());
}

#[test]
fn unsigned_sampling_requests_get_403() {
    let moto = Moto::start();
    for path in ["/GetSamplingRules", "/SamplingTargets"] {
        let resp = http_request(
            moto.addr(),
            "POST",
            path,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .expect("POST to moto_front");
        assert_eq!(resp.status, 403, "{path}: {}", resp.text());
        let body = resp.json();
        assert_eq!(
            body["__type"], "MissingAuthenticationTokenException",
            "{body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Authorization"),
            "{body}"
        );
    }
    let resp = http_request(
        moto.addr(),
        "POST",
        "/GetSamplingRules",
        &[
            ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/xray/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123"),
            ("X-Amz-Date", "20250101T000000Z"),
        ],
        b"{}",
    )
    .expect("POST to moto_front");
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.json()["__type"], "IncompleteSignatureException");
}

/// The stub's SigV4 check agrees with the Rust SDK's signer (so a 403 seen by the proxy test is
/// the agent's fault, not the stub's).
#[tokio::test]
async fn sdk_signed_sampling_requests_are_answered() {
    let moto = Moto::start();
    let client = xray_client(&moto.endpoint());
    let rules = client
        .get_sampling_rules()
        .send()
        .await
        .expect("GetSamplingRules");
    let names: Vec<_> = rules
        .sampling_rule_records()
        .iter()
        .filter_map(|r| r.sampling_rule().and_then(|s| s.rule_name()))
        .collect();
    assert_eq!(names, ["Default"]);

    let stats = aws_sdk_xray::types::SamplingStatisticsDocument::builder()
        .rule_name("Default")
        .client_id("0123456789abcdef01234567")
        .timestamp(aws_smithy_types::DateTime::from_secs(now_secs() as i64))
        .request_count(3)
        .sampled_count(1)
        .borrow_count(0)
        .build()
        .expect("statistics document");
    let targets = client
        .get_sampling_targets()
        .sampling_statistics_documents(stats)
        .send()
        .await
        .expect("GetSamplingTargets");
    assert_eq!(targets.sampling_target_documents().len(), 1);

    // A signature made with the wrong secret is refused.
    let wrong = aws_sdk_xray::Config::builder()
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .region(aws_sdk_xray::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "not-the-secret",
            None,
            None,
            "wrong",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    let err = aws_sdk_xray::Client::from_conf(wrong)
        .get_sampling_rules()
        .send()
        .await
        .expect_err("wrong secret must be refused");
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
}

#[tokio::test]
async fn cloudwatch_cbor_requests_reach_moto() {
    let moto = Moto::start();
    let client = cloudwatch_client(&moto.endpoint());
    let datum = aws_sdk_cloudwatch::types::MetricDatum::builder()
        .metric_name("smoke_total")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("host")
                .value("a")
                .build(),
        )
        .value(2.5)
        .unit(aws_sdk_cloudwatch::types::StandardUnit::Count)
        .timestamp(aws_smithy_types::DateTime::from_secs(now_secs() as i64))
        .build();
    client
        .put_metric_data()
        .namespace("Cloudtail/Smoke")
        .metric_data(datum)
        .send()
        .await
        .expect("PutMetricData");
    let listed = client
        .list_metrics()
        .namespace("Cloudtail/Smoke")
        .send()
        .await
        .expect("ListMetrics");
    let names: Vec<_> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    assert_eq!(names, ["smoke_total"]);

    let now = now_secs() as i64;
    let stats = client
        .get_metric_statistics()
        .namespace("Cloudtail/Smoke")
        .metric_name("smoke_total")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("host")
                .value("a")
                .build(),
        )
        .start_time(aws_smithy_types::DateTime::from_secs(now - 600))
        .end_time(aws_smithy_types::DateTime::from_secs(now + 600))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("GetMetricStatistics");
    let sum: f64 = stats.datapoints().iter().filter_map(|d| d.sum()).sum();
    assert_eq!(sum, 2.5);

    let puts = moto.requests_for("PutMetricData");
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["protocol"], "rpcv2-cbor");
    assert_eq!(puts[0]["body"]["Namespace"], "Cloudtail/Smoke");
}

#[tokio::test]
async fn injected_faults_hit_the_next_requests_then_stop() {
    let moto = Moto::start();
    let config = aws_sdk_xray::Config::builder()
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .region(aws_sdk_xray::config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(moto.endpoint())
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .timeout_config(
            aws_smithy_types::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    let client = aws_sdk_xray::Client::from_conf(config);
    let put = |doc: String| {
        client
            .put_trace_segments()
            .trace_segment_documents(doc)
            .send()
    };

    moto.inject_faults(json!({"status": 503, "count": 1, "operation": "PutTraceSegments"}));
    let err = put(segment(&new_trace_id()).to_string())
        .await
        .expect_err("503");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(503), "{err:?}");
    put(segment(&new_trace_id()).to_string())
        .await
        .expect("fault used up");

    moto.inject_faults(json!({"throttle": 1}));
    let err = put(segment(&new_trace_id()).to_string())
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottledException"), "{err:?}");

    moto.inject_faults(json!({"down": true}));
    put(segment(&new_trace_id()).to_string())
        .await
        .expect_err("down");
    moto.inject_faults(json!({"down": false}));
    put(segment(&new_trace_id()).to_string())
        .await
        .expect("up again");

    let faults: Vec<_> = moto
        .requests_for("PutTraceSegments")
        .iter()
        .map(|r| r["fault"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(faults, ["status:503", "-", "throttle", "down:close", "-"]);
}

#[test]
fn prometheus_text_is_parsed() {
    let text = "\
# HELP cloudtail_xray_segments_received_total Segments received.
# TYPE cloudtail_xray_segments_received_total counter
cloudtail_xray_segments_received_total 12
cloudtail_buffer_bytes_in_use 1.5e3
cloudtail_sink_requests_total{sink=\"xray\",outcome=\"ok\"} 3 1700000000000
cloudtail_sink_requests_total{outcome=\"error\", sink=\"xray\"} 1
latency_bucket{le=\"+Inf\"} +Inf
weird{path=\"a\\\"b\"} NaN
";
    let m = Metrics::parse(text);
    assert_eq!(m.get("cloudtail_xray_segments_received_total"), Some(12.0));
    assert_eq!(m.get("cloudtail_buffer_bytes_in_use"), Some(1500.0));
    assert_eq!(
        m.get("cloudtail_sink_requests_total{sink=\"xray\",outcome=\"ok\"}"),
        Some(3.0)
    );
    assert_eq!(
        m.get("cloudtail_sink_requests_total{outcome=\"ok\",sink=\"xray\"}"),
        Some(3.0)
    );
    assert_eq!(m.sum("cloudtail_sink_requests_total"), Some(4.0));
    assert_eq!(m.value("cloudtail_sink_requests_total"), Some(4.0));
    assert_eq!(m.get("latency_bucket{le=\"+Inf\"}"), Some(f64::INFINITY));
    assert!(m.get("weird{path=\"a\\\"b\"}").is_some_and(f64::is_nan));
    assert_eq!(m.value("cloudtail_xray_kernel_drops_total"), None);
}

#[test]
fn json_diff_ignores_float_noise_and_key_order_only() {
    let a = json!({"t": 1795828505.8094707, "x": [1, {"k": "v", "j": true}]});
    let b = json!({"x": [1, {"j": true, "k": "v"}], "t": 1795828505.809471});
    assert_eq!(json_diff(&a, &b), None);
    let c = json!({"x": [1, {"j": false, "k": "v"}], "t": 1795828505.809471});
    assert_eq!(
        json_diff(&a, &c).as_deref(),
        Some("$.x[1].j: true != false")
    );
    let d = json!({"x": [1, {"j": true, "k": "v"}], "t": 1795828505.81});
    assert!(json_diff(&a, &d).is_some());
    let e = json!({"x": [1, {"j": true, "k": "v"}]});
    assert_eq!(
        json_diff(&a, &e).as_deref(),
        Some("$.t: Some(Number(1795828505.8094707)) != None")
    );
}
