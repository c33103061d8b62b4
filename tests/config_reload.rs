//! SIGHUP, end to end: the real binary re-reads its config file while tailing; the events are
//! read back from the emulator. An unchanged entry keeps its tailer, an added entry starts, a
//! changed entry moves its file to the new stream without losing or repeating a line, and a
//! config that does not load leaves the running one in place.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::logs::{count_numbers, file_table, wait_for_events, LogsHarness};
use support::{Agent, Moto};

fn append(path: &Path, range: std::ops::Range<usize>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let text: String = range.map(|n| format!("line {n:08}\n")).collect();
    file.write_all(text.as_bytes()).expect("append");
}

/// Waits until the agent's output contains `needle` `times` times.
fn wait_for_log(agent: &Agent, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.logs().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "no {needle:?}:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many times each of `0..total` appears across the messages of `streams`.
fn counts(streams: &[&[(i64, String)]], total: usize) -> Vec<u32> {
    let messages: Vec<String> = streams
        .iter()
        .flat_map(|s| s.iter().map(|(_, m)| m.clone()))
        .collect();
    count_numbers(&messages, total)
}

fn assert_once(counts: &[u32], what: &str, agent: &Agent) {
    let lost = counts.iter().filter(|&&c| c == 0).count();
    let repeated: u32 = counts.iter().map(|c| c.saturating_sub(1)).sum();
    assert_eq!(
        (lost, repeated),
        (0, 0),
        "{what}: lost, repeated\n{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_file_list_without_losing_or_repeating_lines() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let (a, b, c) = (
        h.log_path("a.log"),
        h.log_path("b.log"),
        h.log_path("c.log"),
    );
    let group = "/test/reload";
    // c's events are multi-line ones: the last is still pending when the reload comes.
    let multiline = "multiline_start = '^line'";
    let before = [
        file_table(&a, group, "a", ""),
        file_table(&c, group, "c1", multiline),
    ]
    .concat();
    append(&a, 0..1000);
    append(&c, 0..1000);
    let agent = h.start(&before);
    let wait = |stream: &'static str, n: usize| {
        wait_for_events(&h.endpoint, group, stream, n, Duration::from_secs(60))
    };
    assert_eq!(wait("a", 1000).await.len(), 1000, "{}", agent.logs());
    assert_eq!(wait("c1", 1000).await.len(), 1000, "{}", agent.logs());

    // a unchanged, c moved to another stream, b added; lines keep arriving meanwhile.
    let after = [
        file_table(&a, group, "a", ""),
        file_table(&c, group, "c2", multiline),
        file_table(&b, group, "b", ""),
    ]
    .concat();
    let config_path = h.dir.path().join("cloudtail.toml");
    let telemetry = agent.telemetry_addr().port();
    std::fs::write(&config_path, h.config(telemetry, &after)).expect("write config");
    append(&a, 1000..2000);
    append(&c, 1000..2000);
    std::thread::sleep(Duration::from_millis(300));
    agent.signal(libc::SIGHUP);
    wait_for_log(&agent, "Log file entries reloaded", 1);
    append(&a, 2000..3000);
    append(&c, 2000..3000);
    append(&b, 0..500);

    assert_eq!(wait("b", 500).await.len(), 500, "{}", agent.logs());
    let in_a = wait("a", 3000).await;
    assert_once(&counts(&[&in_a], 3000), "a", &agent);
    let (c1, c2) = (wait("c1", 0).await, wait("c2", 1000).await);
    assert_once(&counts(&[&c1, &c2], 3000), "c1 + c2", &agent);
    let after_reload = counts(&[&c2], 3000);
    assert!(
        after_reload[2000..].iter().all(|&n| n == 1),
        "lines written after the reload belong to the new stream\n{}",
        agent.logs()
    );
    let a_tailers = agent
        .logs()
        .lines()
        .filter(|l| l.contains("Tailing a log file") && l.contains("a.log"))
        .count();
    assert_eq!(
        a_tailers,
        1,
        "the unchanged entry kept its tailer\n{}",
        agent.logs()
    );

    // A config that does not load: logged, and the running one goes on.
    std::fs::write(&config_path, "[logs\nbroken").expect("write config");
    agent.signal(libc::SIGHUP);
    wait_for_log(&agent, "the new configuration is rejected", 1);
    append(&b, 500..600);
    assert_eq!(wait("b", 600).await.len(), 600, "{}", agent.logs());
    assert!(agent.metric("cloudtail_logs_lines_read_total").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_names_changes_that_wait_for_a_restart() {
    let moto = Moto::start();
    let h = LogsHarness::new(&moto);
    let a = h.log_path("a.log");
    let table = file_table(&a, "/test/reload-deferred", "a", "");
    let mut agent = h.start(&table);
    let config_path = h.dir.path().join("cloudtail.toml");
    let telemetry = agent.telemetry_addr().port();
    let changed = h
        .config(telemetry, &table)
        .replace("flush_interval = \"1s\"", "flush_interval = \"2s\"");
    std::fs::write(&config_path, changed).expect("write config");
    agent.signal(libc::SIGHUP);
    wait_for_log(&agent, "take effect at the next start", 1);
    assert!(agent
        .logs()
        .contains("[logs] settings other than [[logs.files]]"));
    append(&a, 0..10);
    let events = wait_for_events(
        &h.endpoint,
        "/test/reload-deferred",
        "a",
        10,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(events.len(), 10, "{}", agent.logs());
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(15)).success());
}
