//! SIGHUP, end to end: the real binary re-reads its config file while tailing; the events are
//! read back from the emulator. An unchanged entry keeps its tailer, an added entry starts, a
//! changed entry moves its file to the new stream without losing or repeating a line, a moved
//! StatsD listener restarts alone (EMF keeps its TCP connection), and a config that does not
//! load leaves the running one in place.

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

/// The config of an agent running StatsD on `statsd` and EMF (logs mode) on `emf_tcp` and
/// `emf_udp`.
fn sockets_config(moto: &Moto, telemetry: u16, statsd: u16, emf_tcp: u16, emf_udp: u16) -> String {
    format!(
        "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\nlocal_mode = true\n\
         [statsd]\naddress = \"127.0.0.1:{statsd}\"\nnamespace = \"Reload/StatsD\"\n\
         aggregation_interval = \"1s\"\n\
         [emf]\ntcp_address = \"127.0.0.1:{emf_tcp}\"\nudp_address = \"127.0.0.1:{emf_udp}\"\n\
         log_group = \"/reload/emf\"\nlog_stream = \"emf\"\nmode = \"logs\"\n",
        moto.endpoint()
    )
}

/// An EMF document numbered `seq`.
fn emf_line(seq: usize) -> String {
    let ms = (support::now_secs() * 1000.0) as i64;
    format!(
        "{{\"_aws\":{{\"Timestamp\":{ms},\"CloudWatchMetrics\":[{{\"Namespace\":\"Reload\",\
         \"Dimensions\":[[\"Service\"]],\"Metrics\":[{{\"Name\":\"Requests\"}}]}}]}},\
         \"Service\":\"svc\",\"Requests\":1,\"Seq\":{seq}}}\n"
    )
}

/// The sum of `hits` CloudWatch reports for the last hour.
async fn hits_sum(moto: &Moto) -> f64 {
    support::metric_sum_last_hour(&moto.endpoint(), "Reload/StatsD", "hits").await
}

fn send_hits(port: u16, count: usize) {
    for _ in 0..count {
        support::send_udp(support::local(port), b"hits:1|c");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_moves_the_statsd_listener_while_emf_keeps_its_connection() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("cloudtail.toml");
    let telemetry = support::free_tcp_port();
    let (old_port, new_port) = (support::free_udp_port(), support::free_udp_port());
    let (emf_tcp, emf_udp) = (support::free_tcp_port(), support::free_udp_port());
    let config = |statsd| sockets_config(&moto, telemetry, statsd, emf_tcp, emf_udp);
    std::fs::write(&path, config(old_port)).expect("config");
    let mut agent = Agent::builder()
        .args(["--config", path.to_str().expect("utf-8"), "-l", "debug"])
        .telemetry_addr(support::local(telemetry))
        .start();
    agent.ready();

    let mut emf = std::net::TcpStream::connect(support::local(emf_tcp)).expect("connect");
    emf.write_all(emf_line(0).as_bytes()).expect("write");
    send_hits(old_port, 5);
    let lines = "cloudtail_statsd_lines_total{result=\"ok\"}";
    assert!(support::wait_until(Duration::from_secs(10), || agent
        .metric(lines)
        == Some(5.0)));

    std::fs::write(&path, config(new_port)).expect("config");
    agent.signal(libc::SIGHUP);
    wait_for_log(&agent, "StatsD source restarted", 1);
    // The old port is given back: another process can bind it.
    let freed = support::wait_until(Duration::from_secs(10), || {
        std::net::UdpSocket::bind(support::local(old_port)).is_ok()
    });
    assert!(
        freed,
        "the old StatsD port is still bound\n{}",
        agent.logs()
    );
    send_hits(new_port, 7);
    emf.write_all(emf_line(1).as_bytes())
        .expect("the EMF connection is still open");

    let events = wait_for_events(
        &moto.endpoint(),
        "/reload/emf",
        "emf",
        2,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        events.len(),
        2,
        "both EMF documents, before and after the reload\n{}",
        agent.logs()
    );
    let mut sum = 0.0;
    for _ in 0..60 {
        sum = hits_sum(&moto).await;
        if sum >= 12.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        sum,
        12.0,
        "hits before and after the move\n{}",
        agent.logs()
    );
    assert!(
        !agent.logs().contains("take effect at the next start"),
        "{}",
        agent.logs()
    );
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(15)).success());
}
