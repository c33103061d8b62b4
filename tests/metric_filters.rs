//! Local metric filters through the real binary: lines written to a real file, counted by
//! `[[logs.files.metric_filters]]`, published with PutMetricData and read back from the
//! emulator with `GetMetricStatistics`; the excluded lines are counted but never shipped.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Datapoint, Dimension, Statistic};
use aws_smithy_types::DateTime;
use support::logs::{file_table, wait_for_events, LogsHarness};
use support::{cloudwatch_client, now_secs, wait_until, Moto};

/// 1,000 lines, of which exactly `errors` (spread through the file) contain `ERROR`.
fn write_lines(path: &Path, total: usize, errors: usize) {
    let mut text = String::new();
    for n in 0..total {
        let level = if n * errors % total < errors {
            "ERROR"
        } else {
            "INFO"
        };
        text.push_str(&format!("{level} line {n:08}\n"));
    }
    assert_eq!(text.matches("ERROR").count(), errors);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    file.write_all(text.as_bytes()).expect("append");
}

/// A `[[logs.files]]` table for `path` whose metric filter counts ERROR into App/ErrorCount
/// (dimension Service=api) and whose `exclude_lines` keeps the ERROR lines from shipping.
fn files(path: &Path, interval: &str) -> String {
    let filter = "exclude_lines = [\"ERROR\"]\n\
                  [[logs.files.metric_filters]]\npattern = \"ERROR\"\nmetric = \"ErrorCount\"\n\
                  namespace = \"App\"\ndimensions = { Service = \"api\" }\n";
    format!(
        "metric_filter_interval = \"{interval}\"\n{}",
        file_table(path, "/test/filters", "app", filter)
    )
}

/// Every datapoint of App/ErrorCount{Service=api} in the last hour, one per hour period.
async fn error_counts(endpoint: &str) -> Vec<Datapoint> {
    let now = now_secs() as i64;
    cloudwatch_client(endpoint)
        .get_metric_statistics()
        .namespace("App")
        .metric_name("ErrorCount")
        .dimensions(Dimension::builder().name("Service").value("api").build())
        .start_time(DateTime::from_secs(now - 3600))
        .end_time(DateTime::from_secs(now + 600))
        .period(3600)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .map(|out| out.datapoints().to_vec())
        .unwrap_or_default()
}

fn sum(points: &[Datapoint]) -> f64 {
    points.iter().filter_map(|p| p.sum()).sum()
}

/// Polls the sum until it is `want` or `timeout` passed; fails at once if it ever exceeds it.
async fn wait_for_sum(endpoint: &str, want: f64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = sum(&error_counts(endpoint).await);
        assert!(seen <= want, "the sum went past {want}: {seen}");
        if seen == want || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_seven_error_lines_among_a_thousand_sum_to_37() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    write_lines(&path, 1_000, 37);
    let mut agent = h.start(&files(&path, "1s"));
    let endpoint = moto.endpoint();
    // The metrics pipeline ships every 10 s; the filter publishes every second.
    let seen = wait_for_sum(&endpoint, 37.0, Duration::from_secs(60)).await;
    assert_eq!(seen, 37.0, "{}", agent.logs());
    let events = wait_for_events(
        &endpoint,
        "/test/filters",
        "app",
        963,
        Duration::from_secs(30),
    );
    let events = events.await;
    assert_eq!(events.len(), 963, "{}", agent.logs());
    assert!(events.iter().all(|(_, m)| !m.contains("ERROR")));
    let series = "cloudtail_logs_metric_filter_matches_total";
    assert!(
        wait_until(Duration::from_secs(5), || agent.metric(series)
            == Some(37.0)),
        "{:?}",
        agent.metric(series)
    );
    // Quiet intervals publish nothing (no default_value), and shutdown adds no phantom count.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(sum(&error_counts(&endpoint).await), 37.0);
    agent.sigterm();
    assert!(
        agent.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        agent.logs()
    );
    let points = error_counts(&endpoint).await;
    assert_eq!(sum(&points), 37.0, "{points:?}");
    let samples: f64 = points.iter().filter_map(|p| p.sample_count()).sum();
    assert_eq!(samples, 37.0, "{points:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_not_yet_published_go_out_at_shutdown() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    write_lines(&path, 200, 5);
    let mut agent = h.start(&files(&path, "1h"));
    let endpoint = moto.endpoint();
    let series = "cloudtail_logs_metric_filter_matches_total";
    assert!(
        wait_until(Duration::from_secs(10), || agent.metric(series)
            == Some(5.0)),
        "{:?}\n{}",
        agent.metric(series),
        agent.logs()
    );
    assert_eq!(sum(&error_counts(&endpoint).await), 0.0);
    agent.sigterm();
    assert!(
        agent.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        agent.logs()
    );
    assert_eq!(sum(&error_counts(&endpoint).await), 5.0, "{}", agent.logs());
}
