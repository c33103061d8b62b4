//! Log files to CloudWatch Logs, end to end: the real binary tails real files (rotated by
//! Debian's real `logrotate`, killed with SIGKILL, starved of its endpoint) and the events are
//! read back from the emulator with `GetLogEvents`.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::logs::{count_numbers, file_table, log_events, wait_for_events, LogsHarness};
use support::{wait_until, Agent, Moto};

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).expect("append");
}

/// Bytes of one `numbered` line: `line 00000000\n`.
const LINE_BYTES: u64 = 14;

/// The highest offset in the agent's checkpoint file (0 when there is none yet).
fn checkpointed_bytes(state_dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(state_dir.join("checkpoints.json")) else {
        return 0;
    };
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut best = 0;
    let mut stack = vec![&doc];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(offset) = map.get("offset").and_then(|o| o.as_u64()) {
                    best = best.max(offset);
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    best
}

fn numbered(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|n| format!("line {n:08}"))
}

fn messages(events: &[(i64, String)]) -> Vec<String> {
    events.iter().map(|(_, m)| m.clone()).collect()
}

/// Losses and duplicates among numbered lines `0..total`.
fn losses_and_duplicates(events: &[(i64, String)], total: usize) -> (usize, usize) {
    let seen = count_numbers(&messages(events), total);
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicated = seen.iter().map(|&c| c.saturating_sub(1) as usize).sum();
    (lost, duplicated)
}

#[tokio::test(flavor = "multi_thread")]
async fn appended_lines_all_land_in_order_and_once() {
    const TOTAL: usize = 100_000;
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, std::iter::empty());
    let agent = h.start(&file_table(&path, "/test/append", "app", ""));
    for chunk in (0..TOTAL).step_by(5_000) {
        append(&path, numbered(chunk..chunk + 5_000));
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = wait_for_events(
        &h.endpoint,
        "/test/append",
        "app",
        TOTAL,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        losses_and_duplicates(&events, TOTAL),
        (0, 0),
        "{}",
        agent.logs()
    );
    assert_eq!(events.len(), TOTAL);
    let mut by_time = events.clone();
    by_time.sort_by_key(|(t, m)| (*t, m.clone()));
    let order: Vec<String> = messages(&by_time);
    let expected: Vec<String> = numbered(0..TOTAL).collect();
    assert!(order == expected, "events out of order by timestamp");
    let m = agent.metrics();
    assert_eq!(m.get("cloudtail_logs_lines_read_total"), Some(TOTAL as f64));
    assert_eq!(
        m.get("cloudtail_logs_events_sent_total"),
        Some(TOTAL as f64)
    );
}

/// Rotates `path` with the real logrotate every 200 ms while a writer appends `total` numbered
/// lines, reopening the file for each write as a logging library does after a rotation.
fn write_while_rotating(h: &LogsHarness, path: &Path, mode: &str, total: usize) {
    let conf = h.dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  {mode}\n  rotate 10000\n  missingok\n  nocompress\n}}\n",
            path.display()
        ),
    )
    .expect("logrotate conf");
    let state = h.dir.path().join("logrotate.state");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rotations = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let status = Command::new("logrotate")
                    .arg("-f")
                    .arg("-s")
                    .arg(&state)
                    .arg(&conf)
                    .status()
                    .expect("run logrotate (apt-get install logrotate)");
                assert!(status.success(), "logrotate failed");
                rotations += 1;
            }
            rotations
        })
    };
    for chunk in (0..total).step_by(50) {
        append(path, numbered(chunk..(chunk + 50).min(total)));
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rotations = rotator.join().expect("rotator");
    eprintln!("{mode}: {rotations} rotations while writing {total} lines");
    assert!(
        rotations >= 20,
        "too few rotations to mean anything: {rotations}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logrotate_create_mode_loses_and_repeats_nothing() {
    const TOTAL: usize = 50_000;
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, std::iter::empty());
    let agent = h.start(&file_table(&path, "/test/rotate", "create", ""));
    write_while_rotating(&h, &path, "create", TOTAL);
    let events = wait_for_events(
        &h.endpoint,
        "/test/rotate",
        "create",
        TOTAL,
        Duration::from_secs(90),
    )
    .await;
    std::thread::sleep(Duration::from_secs(2));
    let events = if events.len() >= TOTAL {
        log_events(&h.endpoint, "/test/rotate", "create").await
    } else {
        events
    };
    assert_eq!(
        losses_and_duplicates(&events, TOTAL),
        (0, 0),
        "{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logrotate_copytruncate_mode_repeats_nothing() {
    const TOTAL: usize = 50_000;
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, std::iter::empty());
    let agent = h.start(&file_table(&path, "/test/rotate", "copytruncate", ""));
    write_while_rotating(&h, &path, "copytruncate", TOTAL);
    std::thread::sleep(Duration::from_secs(8));
    let events = log_events(&h.endpoint, "/test/rotate", "copytruncate").await;
    let (lost, duplicated) = losses_and_duplicates(&events, TOTAL);
    let m = agent.metrics();
    eprintln!(
        "copytruncate: read {:?} lines, sent {:?} events",
        m.get("cloudtail_logs_lines_read_total"),
        m.get("cloudtail_logs_events_sent_total")
    );
    eprintln!(
        "copytruncate: {lost} of {TOTAL} lines lost ({:.3}%), {duplicated} duplicated",
        lost as f64 * 100.0 / TOTAL as f64
    );
    assert_eq!(duplicated, 0, "{}", agent.logs());
    // Only lines written between logrotate's copy and its truncation may be lost: the rest
    // of a truncated generation is read from the copy.
    assert!(
        lost < TOTAL / 50,
        "copytruncate lost {lost} lines: more than the race explains"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_9_loses_nothing() {
    const TOTAL: usize = 30_000;
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, std::iter::empty());
    let files = file_table(&path, "/test/kill", "app", "");
    let mut agent = h.start(&files);
    let per_kill = TOTAL / 6;
    // What a kill may send again: the lines not yet below the checkpoint when it struck.
    let mut uncheckpointed = 0;
    for round in 0..6 {
        let start = round * per_kill;
        for chunk in (start..start + per_kill).step_by(100) {
            append(&path, numbered(chunk..chunk + 100));
            std::thread::sleep(Duration::from_millis(2 + rand::random::<u64>() % 5));
        }
        if round < 5 {
            std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 1500));
            let checkpointed = checkpointed_bytes(&h.state_dir()) / LINE_BYTES;
            agent.kill9();
            uncheckpointed += (start + per_kill).saturating_sub(checkpointed as usize);
            agent = h.start(&files);
        }
    }
    let events = wait_for_events(
        &h.endpoint,
        "/test/kill",
        "app",
        TOTAL,
        Duration::from_secs(90),
    )
    .await;
    std::thread::sleep(Duration::from_secs(3));
    let events = if events.len() >= TOTAL {
        log_events(&h.endpoint, "/test/kill", "app").await
    } else {
        events
    };
    let (lost, duplicated) = losses_and_duplicates(&events, TOTAL);
    eprintln!("kill -9 ×5: {lost} lost, {duplicated} duplicated of {TOTAL}");
    assert_eq!(lost, 0, "{}", agent.logs());
    assert!(
        duplicated <= uncheckpointed,
        "{duplicated} duplicates, but only {uncheckpointed} lines were above the checkpoints at the kills"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_while_stopped_loses_and_resends_nothing() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, numbered(0..1000));
    let files = file_table(&path, "/test/stopped", "app", "");
    let mut agent = h.start(&files);
    let events = wait_for_events(
        &h.endpoint,
        "/test/stopped",
        "app",
        1000,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(events.len(), 1000, "{}", agent.logs());
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(15)).success());
    append(&path, numbered(1000..1100));
    std::fs::rename(&path, h.log_path("app.log.1")).expect("rotate");
    append(&path, numbered(1100..1200));
    let agent = h.start(&files);
    let events = wait_for_events(
        &h.endpoint,
        "/test/stopped",
        "app",
        1200,
        Duration::from_secs(30),
    )
    .await;
    std::thread::sleep(Duration::from_secs(3));
    let events = if events.len() >= 1200 {
        log_events(&h.endpoint, "/test/stopped", "app").await
    } else {
        events
    };
    assert_eq!(
        losses_and_duplicates(&events, 1200),
        (0, 0),
        "{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_60_s_delays_but_loses_nothing() {
    const TOTAL: usize = 20_000;
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(&path, std::iter::empty());
    let agent = h.start(&file_table(&path, "/test/outage", "app", ""));
    moto.inject_faults(json!({"down": true, "mode": "503"}));
    let started = Instant::now();
    let mut peak_kb = 0;
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(60) {
        if written < TOTAL {
            append(&path, numbered(written..written + 500));
            written += 500;
        }
        peak_kb = peak_kb.max(agent.rss_kb());
        std::thread::sleep(Duration::from_millis(500));
    }
    moto.inject_faults(json!({"down": false}));
    let events = wait_for_events(
        &h.endpoint,
        "/test/outage",
        "app",
        TOTAL,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        losses_and_duplicates(&events, TOTAL).0,
        0,
        "{}",
        agent.logs()
    );
    let budget_kb = agent
        .metrics()
        .get("cloudtail_buffer_bytes_total")
        .unwrap_or(0.0)
        / 1024.0;
    eprintln!("outage: peak RSS {peak_kb} kB, budget {budget_kb} kB");
    assert!(
        (peak_kb as f64) < budget_kb + 20.0 * 1024.0,
        "peak RSS {peak_kb} kB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn java_stack_traces_become_one_event_with_their_own_time() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("java.log");
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let plus_two = chrono::FixedOffset::east_opt(2 * 3600).expect("offset");
    let minus_five = chrono::FixedOffset::west_opt(5 * 3600).expect("offset");
    let t1 = now.with_timezone(&plus_two);
    let t2 = (now + chrono::Duration::seconds(1)).with_timezone(&minus_five);
    let fmt = "%Y-%m-%dT%H:%M:%S%.3f%z";
    append(
        &path,
        [
            format!("{} ERROR Request failed", t1.format(fmt)),
            "java.lang.IllegalStateException: boom".to_string(),
            "\tat com.example.Orders.get(Orders.java:42)".to_string(),
            "\tat com.example.Api.handle(Api.java:7)".to_string(),
            format!("{} INFO recovered", t2.format(fmt)),
        ],
    );
    let extra = "multiline_start = '^\\d{4}-\\d{2}-\\d{2}'\ntimestamp_format = \"%Y-%m-%dT%H:%M:%S%.f%z\"\n";
    let agent = h.start(&file_table(&path, "/test/java", "app", extra));
    let events =
        wait_for_events(&h.endpoint, "/test/java", "app", 2, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 2, "{events:?}\n{}", agent.logs());
    assert!(
        events[0].1.contains("boom") && events[0].1.contains("Api.java:7"),
        "{events:?}"
    );
    assert_eq!(events[0].1.lines().count(), 4);
    assert_eq!(events[0].0, now.timestamp_millis());
    assert_eq!(events[1].0, now.timestamp_millis() + 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn include_lines_ships_only_matches_and_counts_the_rest() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("app.log");
    append(
        &path,
        (0..1000).map(|n| {
            if n % 10 == 0 {
                format!("ERROR {n}")
            } else {
                format!("INFO {n}")
            }
        }),
    );
    let agent = h.start(&file_table(
        &path,
        "/test/filter",
        "app",
        "include_lines = [\"ERROR\"]\n",
    ));
    let events = wait_for_events(
        &h.endpoint,
        "/test/filter",
        "app",
        100,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .metric("cloudtail_logs_events_filtered_total")
            == Some(900.0)),
        "{}",
        agent.logs()
    );
    let events = if events.len() == 100 {
        log_events(&h.endpoint, "/test/filter", "app").await
    } else {
        events
    };
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|(_, m)| m.starts_with("ERROR")));
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_and_class_are_set_on_new_and_existing_groups() {
    let moto = Moto::start();
    let client = support::logs_client(&moto.endpoint());
    client
        .create_log_group()
        .log_group_name("/test/existing")
        .send()
        .await
        .expect("create group");
    client
        .put_retention_policy()
        .log_group_name("/test/existing")
        .retention_in_days(30)
        .send()
        .await
        .expect("retention 30");
    let h = LogsHarness::new(&moto);
    let (a, b) = (h.log_path("a.log"), h.log_path("b.log"));
    append(&a, ["a".to_string()]);
    append(&b, ["b".to_string()]);
    let files = file_table(
        &a,
        "/test/new",
        "a",
        "retention_days = 7\ngroup_class = \"INFREQUENT_ACCESS\"\n",
    ) + &file_table(&b, "/test/existing", "b", "retention_days = 7\n");
    let agent = h.start(&files);
    wait_for_events(
        &h.endpoint,
        "/test/existing",
        "b",
        1,
        Duration::from_secs(30),
    )
    .await;
    let groups = client
        .describe_log_groups()
        .log_group_name_prefix("/test/")
        .send()
        .await
        .expect("describe");
    let find = |name: &str| {
        groups
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .cloned()
    };
    let new = find("/test/new").unwrap_or_else(|| panic!("group not created\n{}", agent.logs()));
    assert_eq!(new.retention_in_days(), Some(7));
    // moto does not keep the class: check that the agent asked for it.
    let created = moto.requests_for("CreateLogGroup");
    let asked = created
        .iter()
        .find(|r| r["body"]["logGroupName"] == "/test/new")
        .unwrap_or_else(|| panic!("no CreateLogGroup for /test/new: {created:?}"));
    assert_eq!(
        asked["body"]["logGroupClass"], "INFREQUENT_ACCESS",
        "{asked}"
    );
    assert_eq!(
        find("/test/existing").and_then(|g| g.retention_in_days()),
        Some(7)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_3_mb_line_is_truncated_and_the_file_goes_on() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let path = h.log_path("big.log");
    append(
        &path,
        [
            "before".to_string(),
            "x".repeat(3 * 1024 * 1024),
            "after".to_string(),
        ],
    );
    let agent = h.start(&file_table(&path, "/test/big", "app", ""));
    let events = wait_for_events(&h.endpoint, "/test/big", "app", 3, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 3, "{}", agent.logs());
    assert_eq!(events[0].1, "before");
    assert!(events[1].1.len() <= 1_048_576 - 26 && events[1].1.starts_with("xxxx"));
    assert_eq!(events[2].1, "after");
    assert_eq!(
        agent.metric("cloudtail_logs_events_truncated_total"),
        Some(1.0)
    );
}

#[test]
fn bad_log_config_values_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("retention_days = 8", "retention_days"),
        ("include_lines = [\"(unclosed\"]", "include_lines"),
        ("start_at = \"middle\"", "start_at"),
        ("no_such_key = 1", "no_such_key"),
    ];
    for (line, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!(
            "[logs]\nstate_dir = \"{}\"\n[[logs.files]]\npath = \"/var/log/*.log\"\nlog_group = \"g\"\nlog_stream = \"s\"\n{line}\n",
            dir.path().display()
        )).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_cloudtail"))
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        assert!(
            stderr.contains(key),
            "{line}: the error must name {key}: {stderr}"
        );
    }
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, format!("[logs]\nstate_dir = \"{}\"\n[[logs.files]]\npath = \"/x/*.log\"\nlog_group = \"g\"\nlog_stream = \"s\"\nretention_days = 8\n", dir.path().display())).expect("write");
    let mut agent = Agent::start(["--config", path.to_str().expect("path")]);
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert!(
        agent.stderr().contains("7") && agent.stderr().contains("14"),
        "valid values listed: {}",
        agent.stderr()
    );
}
