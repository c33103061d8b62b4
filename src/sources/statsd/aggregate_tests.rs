//! Aggregation math per StatsD type, tags as dimensions, idle series forgotten, and the
//! lines-per-second check of the hot path (run with `--ignored` in release mode).

use super::*;
use crate::sources::statsd::parse::parse_line;

fn ns() -> Arc<str> {
    Arc::from("StatsD")
}

fn feed(agg: &mut Aggregator, lines: &[&str]) {
    for line in lines {
        let parsed = parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        agg.add(&parsed).expect("aggregated");
    }
}

fn by_name(datums: &[MetricDatum], name: &str) -> MetricDatum {
    datums
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} missing from {datums:?}"))
        .clone()
}

fn single(v: f64) -> MetricValue {
    MetricValue::Values {
        values: vec![v],
        counts: vec![1.0],
    }
}

#[test]
fn counters_sum_with_rate_correction() {
    let mut agg = Aggregator::new();
    feed(
        &mut agg,
        &["hits:1|c", "hits:2|c", "hits:1|c|@0.1", "hits:1:1|c"],
    );
    let d = by_name(&agg.flush(&ns(), 1000), "hits");
    assert_eq!(d.value, single(15.0));
    assert_eq!((d.unit, d.timestamp_ms), (Unit::COUNT, 1000));
}

#[test]
fn gauges_keep_the_last_value_and_move_relatively() {
    let mut agg = Aggregator::new();
    feed(
        &mut agg,
        &["temp:10|g", "temp:20|g", "temp:+5|g", "temp:-2|g"],
    );
    assert_eq!(by_name(&agg.flush(&ns(), 0), "temp").value, single(23.0));
    feed(&mut agg, &["temp:+1|g"]);
    assert_eq!(by_name(&agg.flush(&ns(), 0), "temp").value, single(24.0));
}

#[test]
fn timers_report_values_and_counts() {
    let mut agg = Aggregator::new();
    feed(
        &mut agg,
        &["lat:10|ms", "lat:20|ms", "lat:10|ms", "lat:30|ms|@0.5"],
    );
    let d = by_name(&agg.flush(&ns(), 0), "lat");
    assert_eq!(d.unit, Unit::MILLISECONDS);
    assert_eq!(
        d.value,
        MetricValue::Values {
            values: vec![10.0, 20.0, 30.0],
            counts: vec![2.0, 1.0, 2.0]
        }
    );
}

#[test]
fn more_than_150_distinct_values_become_a_statistic_set() {
    let mut agg = Aggregator::new();
    for i in 0..200 {
        let line = format!("size:{i}|h");
        agg.add(&parse_line(&line).expect("line")).expect("added");
    }
    let d = by_name(&agg.flush(&ns(), 0), "size");
    assert_eq!(d.unit, Unit::NONE);
    assert_eq!(
        d.value,
        MetricValue::Statistics(StatisticSet {
            sample_count: 200.0,
            sum: (0..200).sum::<i32>() as f64,
            minimum: 0.0,
            maximum: 199.0
        })
    );
}

#[test]
fn sets_count_distinct_members() {
    let mut agg = Aggregator::new();
    feed(&mut agg, &["users:alice|s", "users:bob|s", "users:alice|s"]);
    assert_eq!(by_name(&agg.flush(&ns(), 0), "users").value, single(2.0));
}

#[test]
fn tags_become_sorted_dimensions_and_split_series() {
    let mut agg = Aggregator::new();
    feed(
        &mut agg,
        &[
            "req:1|c|#zone:a,env:prod",
            "req:1|c|#zone:b,env:prod",
            "req:1|c",
        ],
    );
    let mut out = agg.flush(&ns(), 0);
    out.sort_by(|a, b| a.dimensions.cmp(&b.dimensions));
    let dims: Vec<_> = out.iter().map(|d| d.dimensions.clone()).collect();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        dims,
        vec![
            vec![],
            vec![pair("env", "prod"), pair("zone", "a")],
            vec![pair("env", "prod"), pair("zone", "b")],
        ]
    );
    let many: String = (0..40).map(|i| format!("k{i:02}:v,")).collect();
    assert_eq!(dimensions(&many).len(), MAX_DIMENSIONS);
}

#[test]
fn idle_series_are_forgotten_and_types_never_mix() {
    let mut agg = Aggregator::new();
    feed(&mut agg, &["x:1|c", "x:1|g"]);
    assert_eq!(agg.flush(&ns(), 0).len(), 2);
    assert_eq!(agg.len(), 2, "kept for the next interval");
    assert!(agg.flush(&ns(), 0).is_empty(), "nothing new, nothing sent");
    assert!(agg.is_empty(), "idle for a whole interval");
}

/// Lines per second through parse + aggregate on one core:
/// `cargo test --release --lib statsd_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn statsd_throughput() {
    let mut datagram = String::new();
    for i in 0..20 {
        datagram.push_str(&format!(
            "app.requests.{i}:1|c|#env:prod,service:api\napp.latency.{}:{}|ms|@0.5\n\
             app.queue:{i}|g\n",
            i % 5,
            i * 7 % 300
        ));
    }
    let lines: Vec<&str> = datagram.lines().collect();
    let mut agg = Aggregator::new();
    let started = std::time::Instant::now();
    let rounds = 50_000;
    let mut n = 0u64;
    for _ in 0..rounds {
        for chunk in datagram.split('\n') {
            if let Ok(line) = parse_line(chunk) {
                let _ = agg.add(&line);
                n += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let per_sec = n as f64 / secs;
    println!(
        "{n} lines ({} per datagram) in {secs:.2}s: {:.2} M lines/s",
        lines.len(),
        per_sec / 1e6
    );
    assert_eq!(agg.flush(&ns(), 0).len(), 20 + 5 + 1);
}
