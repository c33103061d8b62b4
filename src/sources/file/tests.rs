//! The file source on real files in a temp dir: real renames, truncations and restarts, with
//! the acks resolved (or not) by the test, asserting the exact events and the offsets in the
//! checkpoint file written at the end.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpoint;
use super::*;
use crate::cli::RunArgs;
use crate::config::{load, ConfigFile};
use crate::pipeline::testing::Events;

fn fast() -> Timing {
    Timing {
        idle_poll: Duration::from_millis(20),
        active_poll: Duration::from_millis(10),
        quiet: Duration::from_millis(300),
        check_every: Duration::from_millis(50),
        poll_every: Duration::from_millis(200),
        checkpoint_every: Duration::from_millis(100),
    }
}

/// A temp dir with `logs/` (the tailed files) and `state/` (the checkpoints).
struct Dirs {
    _root: tempfile::TempDir,
    logs: PathBuf,
    state: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    Dirs {
        logs,
        state: root.path().join("state"),
        _root: root,
    }
}

fn logs_config(d: &Dirs, glob: &str, extra: &str) -> LogsConfig {
    let text = format!(
        "[logs]\nstate_dir = \"{}\"\n[[logs.files]]\npath = \"{}/{glob}\"\nlog_group = \"g\"\n{extra}",
        d.state.display(),
        d.logs.display()
    );
    let file = ConfigFile::Toml {
        path: "t.toml".into(),
        text,
    };
    load(&RunArgs::default(), Some(file)).unwrap().logs.unwrap()
}

struct Running {
    rx: Events,
    token: CancellationToken,
    task: JoinHandle<()>,
    checkpointer: Checkpointer,
}

fn start(config: &LogsConfig) -> Running {
    start_with(config, fast())
}

fn start_with(config: &LogsConfig, timing: Timing) -> Running {
    let source = FileSource::new(config, NameContext::default())
        .unwrap()
        .with_timing(timing);
    let checkpointer = source.checkpointer();
    let (tx, rx) = mpsc::channel(64);
    let token = CancellationToken::new();
    let budget = Budget::new(8 << 20);
    let task = tokio::spawn(source.run(budget, tx, token.clone()));
    Running {
        rx: Events::new(rx),
        token,
        task,
        checkpointer,
    }
}

impl Running {
    /// The next `n` events, failing after 5 s.
    async fn take(&mut self, n: usize) -> Vec<LogEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await {
                Ok(Some(event)) => out.push(event),
                other => panic!("wanted {n} events, got {} then {other:?}", out.len()),
            }
        }
        out
    }

    /// Asserts nothing more arrives for a while.
    async fn nothing_more(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(700), self.rx.recv()).await;
        if let Ok(Some(event)) = next {
            panic!("unexpected event {:?}", event.message);
        }
    }

    /// Cancels, waits for the source, then writes the final checkpoint.
    async fn stop(self) {
        self.token.cancel();
        self.task.await.unwrap();
        drop(self.rx);
        self.checkpointer.flush_final().await.unwrap();
    }
}

fn messages(events: &[LogEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

fn ack_all(events: Vec<LogEvent>) {
    for e in events {
        e.ack.done();
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The committed offset the checkpoint file holds for the file at `path` now.
fn checkpointed(d: &Dirs, path: &Path) -> Option<u64> {
    let id = fingerprint::FileId::of(&std::fs::metadata(path).unwrap());
    let list = checkpoint::load(&d.state).unwrap();
    list.iter()
        .find(|c| c.fingerprint.id == id)
        .map(|c| c.offset)
}

#[tokio::test]
async fn events_carry_acks_and_only_acked_data_is_checkpointed() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "a\nb\r\nc\n");
    let config = logs_config(&d, "*.log", "log_stream = \"s-{file_name}\"");
    let mut run = start(&config);
    let mut events = run.take(3).await;
    assert_eq!(messages(&events), ["a", "b", "c"]);
    assert_eq!(events[0].destination.group, "g");
    assert_eq!(events[0].destination.stream, "s-app.log");
    let c = events.pop().unwrap();
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    // "c" was never acked: the checkpoint stays after "b".
    assert_eq!(checkpointed(&d, &app), Some(5));
    drop(c);
    // Restart: "c" is sent again, then what is new.
    let mut run = start(&config);
    append(&app, "d\n");
    let events = run.take(2).await;
    assert_eq!(messages(&events), ["c", "d"]);
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    assert_eq!(checkpointed(&d, &app), Some(9));
}

#[tokio::test]
async fn a_last_line_waits_for_its_newline_then_ships_when_quiet() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "one\npar");
    // A long quiet period, so that a slow machine cannot ship "par" on its own.
    let timing = Timing {
        quiet: Duration::from_secs(2),
        ..fast()
    };
    let mut run = start_with(&logs_config(&d, "app.log", ""), timing);
    assert_eq!(messages(&run.take(1).await), ["one"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&app, "tial\nlast");
    let events = run.take(2).await;
    assert_eq!(messages(&events), ["partial", "last"]);
    run.stop().await;
}

#[tokio::test]
async fn rename_and_create_reads_the_old_file_to_its_end() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "old-1\n");
    let mut run = start(&logs_config(&d, "app.log", ""));
    let first = run.take(1).await;
    // The writer still holds the old file after the rename and writes once more.
    let mut writer = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    std::fs::rename(&app, d.logs.join("app.log.1")).unwrap();
    append(&app, "new-1\n");
    writer.write_all(b"old-2\n").unwrap();
    let events = run.take(2).await;
    let got: BTreeSet<&str> = messages(&events).into_iter().collect();
    assert_eq!(got, BTreeSet::from(["new-1", "old-2"]));
    ack_all(first);
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    assert_eq!(checkpointed(&d, &app), Some(6), "the new app.log");
    let old = d.logs.join("app.log.1");
    assert_eq!(
        checkpointed(&d, &old),
        Some(12),
        "the old one, read to its end"
    );
}

#[tokio::test]
async fn copytruncate_starts_over_at_zero() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "aaaa\nbbbb\n");
    let mut run = start(&logs_config(&d, "app.log", ""));
    ack_all(run.take(2).await);
    std::fs::copy(&app, d.logs.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, "c\n");
    let events = run.take(1).await;
    assert_eq!(messages(&events), ["c"]);
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    assert_eq!(checkpointed(&d, &app), Some(2));
}

#[tokio::test]
async fn stop_rotate_append_start_loses_nothing_and_resends_nothing() {
    let d = dirs();
    let app = d.logs.join("app.log");
    let config = logs_config(&d, "app.log", "start_at = \"end\"");
    append(&app, "skipped by start_at\n");
    let mut run = start(&config);
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&app, "1\n2\n");
    ack_all(run.take(2).await);
    run.stop().await;
    // While stopped: more lines, then logrotate's create mode.
    append(&app, "3\n");
    std::fs::rename(&app, d.logs.join("app.log.1")).unwrap();
    append(&app, "4\n");
    let mut run = start(&config);
    let events = run.take(2).await;
    let got: BTreeSet<&str> = messages(&events).into_iter().collect();
    assert_eq!(got, BTreeSet::from(["3", "4"]));
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    assert_eq!(checkpointed(&d, &app), Some(2));
    assert_eq!(checkpointed(&d, &d.logs.join("app.log.1")), Some(26));
}

#[tokio::test]
async fn filters_multiline_and_timestamps_in_a_tailer() {
    let d = dirs();
    let app = d.logs.join("app.log");
    let extra = "multiline_start = '^\\d{4}-'\ntimestamp_format = \"%Y-%m-%dT%H:%M:%S%z\"\n\
                 exclude_lines = [\"healthcheck\"]\n";
    append(
        &app,
        "2026-01-01T00:00:00Z boom\n  at a\n  at b\n2026-01-01T00:00:01Z healthcheck ok\n\
         2026-01-01T00:00:02Z done\n",
    );
    let mut run = start(&logs_config(&d, "app.log", extra));
    let events = run.take(2).await;
    assert_eq!(
        messages(&events),
        [
            "2026-01-01T00:00:00Z boom\n  at a\n  at b",
            "2026-01-01T00:00:02Z done"
        ]
    );
    assert_eq!(events[0].timestamp_ms, 1_767_225_600_000);
    assert_eq!(events[1].timestamp_ms, 1_767_225_602_000);
    let size = std::fs::metadata(&app).unwrap().len();
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    // The filtered event is skipped in order: the checkpoint covers the whole file.
    assert_eq!(checkpointed(&d, &app), Some(size));
}

#[tokio::test]
async fn a_new_file_is_picked_up_while_running() {
    let d = dirs();
    let mut run = start(&logs_config(&d, "*.log", "start_at = \"end\""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&d.logs.join("late.log"), "hello\n");
    let events = tokio::time::timeout(Duration::from_secs(1), run.take(1)).await;
    assert_eq!(
        messages(&events.unwrap()),
        ["hello"],
        "read from 0 despite start_at"
    );
    run.stop().await;
}

#[tokio::test]
async fn a_full_budget_pauses_reading_until_events_are_done() {
    let d = dirs();
    let app = d.logs.join("app.log");
    let line = "x".repeat(1000);
    for _ in 0..10 {
        append(&app, &format!("{line}\n"));
    }
    let config = logs_config(&d, "app.log", "");
    let source = FileSource::new(&config, NameContext::default())
        .unwrap()
        .with_timing(fast());
    let (tx, rx) = mpsc::channel(64);
    let mut rx = Events::new(rx);
    let token = CancellationToken::new();
    // Room for three events (each 1000 + 26 bytes, its bookkeeping and the per-item overhead).
    let budget = Budget::new(3 * 1250);
    let task = tokio::spawn(source.run(budget.clone(), tx, token.clone()));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(rx.recv().await.unwrap());
    }
    let waited = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(waited.is_err(), "a fourth event needs budget");
    ack_all(held);
    for _ in 0..7 {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        event.unwrap().unwrap().ack.done();
    }
    token.cancel();
    task.await.unwrap();
    assert_eq!(budget.in_use_bytes(), 0);
}

#[tokio::test]
async fn reading_ahead_of_the_acks_stops_at_the_cap_whatever_the_budget() {
    let d = dirs();
    let app = d.logs.join("app.log");
    let line = "z".repeat(999);
    let lines = 12 * 1024;
    append(&app, &format!("{line}\n").repeat(lines));
    let config = logs_config(&d, "app.log", "");
    let source = FileSource::new(&config, NameContext::default())
        .unwrap()
        .with_timing(fast());
    let (tx, rx) = mpsc::channel(1024);
    let mut rx = Events::new(rx);
    let token = CancellationToken::new();
    // A budget far larger than the cap: only the cap can stop the reader.
    let budget = Budget::new(64 << 20);
    let task = tokio::spawn(source.run(budget.clone(), tx, token.clone()));
    let mut held = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
        held.push(event);
    }
    let read = held.len() as u64 * 1000;
    assert!(
        read <= tailer::MAX_UNACKED_BYTES + tailer::READ_BYTES as u64,
        "read {read} bytes ahead of the acks"
    );
    assert!(
        read >= tailer::MAX_UNACKED_BYTES - 1000,
        "stopped early at {read}"
    );
    let mut total = held.len();
    ack_all(held);
    while total < lines {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        event.unwrap().unwrap().ack.done();
        total += 1;
    }
    token.cancel();
    task.await.unwrap();
    assert_eq!(budget.in_use_bytes(), 0);
}

#[tokio::test]
async fn a_3mb_line_ships_truncated_and_the_file_goes_on() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, &format!("{}\nafter\n", "y".repeat(3 << 20)));
    let mut run = start(&logs_config(&d, "app.log", ""));
    let events = run.take(2).await;
    assert!(events[0].message.len() <= reader::MAX_MESSAGE_BYTES);
    assert!(events[0].message.ends_with(" bytes]"));
    assert_eq!(events[1].message, "after");
    let size = std::fs::metadata(&app).unwrap().len();
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
    assert_eq!(checkpointed(&d, &app), Some(size));
}

#[tokio::test]
async fn a_deleted_file_is_read_to_its_end_and_forgotten() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "a\n");
    let mut run = start(&logs_config(&d, "app.log", ""));
    let first = run.take(1).await;
    let mut writer = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    let id = fingerprint::FileId::of(&std::fs::metadata(&app).unwrap());
    std::fs::remove_file(&app).unwrap();
    writer.write_all(b"b\n").unwrap();
    let events = run.take(1).await;
    assert_eq!(messages(&events), ["b"]);
    ack_all(first);
    ack_all(events);
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.stop().await;
    let list = checkpoint::load(&d.state).unwrap();
    assert!(list.iter().all(|c| c.fingerprint.id != id), "{list:?}");
}

#[test]
fn the_counters_render_for_prometheus() {
    let text = crate::telemetry::render_prometheus(&[]);
    for name in [
        "cloudtail_logs_lines_read_total",
        "cloudtail_logs_events_filtered_total",
        "cloudtail_logs_events_truncated_total",
        "cloudtail_logs_invalid_utf8_total",
        "cloudtail_logs_timestamp_unparsed_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} counter\n{name} ")),
            "{name}"
        );
    }
    assert!(text.contains("# TYPE cloudtail_logs_files_watched gauge\n"));
}

#[tokio::test]
async fn a_retargeted_symlink_drains_the_old_target_and_follows_the_new() {
    let d = dirs();
    let real = d.logs.join("real");
    std::fs::create_dir(&real).unwrap();
    append(&real.join("app-1.log"), "one\n");
    let link = d.logs.join("current.log");
    std::os::unix::fs::symlink(real.join("app-1.log"), &link).unwrap();
    let mut run = start(&logs_config(&d, "*.log", ""));
    assert_eq!(messages(&run.take(1).await), ["one"]);
    append(&real.join("app-2.log"), "two\n");
    let tmp = d.logs.join("tmp-link");
    std::os::unix::fs::symlink(real.join("app-2.log"), &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    append(&real.join("app-1.log"), "one-b\n");
    let events = run.take(2).await;
    let got: BTreeSet<&str> = messages(&events).into_iter().collect();
    assert_eq!(got, BTreeSet::from(["one-b", "two"]));
    run.nothing_more().await;
    run.stop().await;
}

#[tokio::test]
async fn after_a_kill_only_unacked_events_are_sent_again() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(&app, "1\n2\n3\n4\n");
    let config = logs_config(&d, "app.log", "");
    let mut run = start(&config);
    let mut events = run.take(4).await;
    let in_flight = events.split_off(2);
    ack_all(events);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // What a kill -9 now would leave behind: the periodic checkpoint, copied aside.
    let killed = Dirs {
        logs: d.logs.clone(),
        state: d.logs.parent().unwrap().join("state-after-kill"),
        _root: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir(&killed.state).unwrap();
    std::fs::copy(
        d.state.join(checkpoint::FILE_NAME),
        killed.state.join(checkpoint::FILE_NAME),
    )
    .unwrap();
    drop(in_flight);
    run.stop().await;
    let mut run = start(&logs_config(&killed, "app.log", ""));
    let events = run.take(2).await;
    assert_eq!(messages(&events), ["3", "4"]);
    ack_all(events);
    run.nothing_more().await;
    run.stop().await;
}

#[tokio::test]
async fn metric_filters_count_grouped_events_before_the_line_filters_and_publish_at_stop() {
    let d = dirs();
    let app = d.logs.join("app.log");
    append(
        &app,
        "ERROR a\n  at x\nINFO b\nERROR c\nINFO d\nERROR e\n  at y\nINFO f\n",
    );
    let extra = "multiline_start = '^[A-Z]'\nexclude_lines = [\"ERROR\"]\n\
                 [[logs.files.metric_filters]]\npattern = \"ERROR\"\nmetric = \"E\"\nnamespace = \"App\"\n\
                 [[logs.files.metric_filters]]\npattern = \"at \"\nmetric = \"Traces\"\nnamespace = \"App\"\n";
    let config = logs_config(&d, "*.log", extra);
    let (metric_tx, mut metric_rx) = mpsc::channel(16);
    let source = FileSource::new(&config, NameContext::default())
        .unwrap()
        .with_timing(fast())
        .with_metrics(metric_tx);
    let (tx, rx) = mpsc::channel(64);
    let mut rx = Events::new(rx);
    let token = CancellationToken::new();
    let task = tokio::spawn(source.run(Budget::new(8 << 20), tx, token.clone()));
    let mut shipped = Vec::new();
    while shipped.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        shipped.push(event.unwrap().unwrap().message);
    }
    assert_eq!(shipped, ["INFO b", "INFO d", "INFO f"]);
    // The default interval (60 s) has not passed: the counts go out when the source stops.
    assert!(metric_rx.try_recv().is_err());
    token.cancel();
    task.await.unwrap();
    let mut sums = Vec::new();
    while let Some(datum) = metric_rx.recv().await {
        let crate::pipeline::MetricValue::Statistics(s) = datum.value else {
            panic!("a statistic set");
        };
        sums.push((datum.name, s.sum));
    }
    assert_eq!(sums, [("E".to_owned(), 3.0), ("Traces".to_owned(), 2.0)]);
}

#[test]
fn read_slots_follow_the_budget() {
    assert_eq!(tailer::read_slots_for_budget(3 << 20), 2);
    assert_eq!(tailer::read_slots_for_budget(32 << 20), 4);
    assert_eq!(tailer::read_slots_for_budget(64 << 20), 8);
    assert_eq!(tailer::read_slots_for_budget(1 << 30), tailer::READ_SLOTS);
}
