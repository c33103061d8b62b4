//! Helpers for the log-file tests: a directory of log files and checkpoints that outlives any
//! one agent (so a test can kill and restart it), a TOML config written for it, and the events
//! read back from CloudWatch Logs with `GetLogEvents`.

use std::path::{Path, PathBuf};

use super::{free_tcp_port, local, logs_client, Agent, Moto};

/// A test's log directory and the agents it starts over it.
pub struct LogsHarness {
    /// Holds the log files (`logs/`) and the agent's state dir (`state/`).
    pub dir: tempfile::TempDir,
    /// The emulator's endpoint.
    pub endpoint: String,
}

impl LogsHarness {
    /// A fresh directory for logs and state, against `moto`.
    pub fn new(moto: &Moto) -> LogsHarness {
        let dir = tempfile::Builder::new()
            .prefix("cloudtail-logs-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        LogsHarness {
            dir,
            endpoint: moto.endpoint(),
        }
    }

    /// `<dir>/logs/<name>`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    /// `<dir>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A config with `[agent]`, `[aws]` and `[logs]` set for this harness, then `files` (one or
    /// more `[[logs.files]]` tables, written by the test) appended.
    pub fn config(&self, telemetry_port: u16, files: &str) -> String {
        format!(
            "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry_port}\"\nshutdown_timeout = \"10s\"\n\n\
             [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\n\
             [logs]\nstate_dir = \"{}\"\nflush_interval = \"1s\"\n\n{files}",
            self.endpoint,
            self.state_dir().display()
        )
    }

    /// Writes the config for `files` and starts an agent on it; waits until it is ready.
    pub fn start(&self, files: &str) -> Agent {
        let telemetry = free_tcp_port();
        let path = self.dir.path().join("cloudtail.toml");
        std::fs::write(&path, self.config(telemetry, files)).expect("write config");
        let mut agent = Agent::builder()
            .args([
                "--config",
                path.to_str().expect("utf-8 path"),
                "-l",
                "debug",
            ])
            .telemetry_addr(local(telemetry))
            .start();
        agent.ready();
        agent
    }
}

/// One `[[logs.files]]` table shipping `path` to `group`/`stream`, plus `extra` TOML lines.
pub fn file_table(path: &Path, group: &str, stream: &str, extra: &str) -> String {
    format!(
        "[[logs.files]]\npath = \"{}\"\nlog_group = \"{group}\"\nlog_stream = \"{stream}\"\n{extra}\n",
        path.display()
    )
}

/// Every event of a stream, oldest first (`GetLogEvents` from the head, pages followed).
/// An absent group or stream reads as no events.
pub async fn log_events(endpoint: &str, group: &str, stream: &str) -> Vec<(i64, String)> {
    let client = logs_client(endpoint);
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let result = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        let Ok(page) = result else {
            return events;
        };
        let before = events.len();
        for e in page.events() {
            events.push((
                e.timestamp().unwrap_or(0),
                e.message().unwrap_or("").to_string(),
            ));
        }
        let next = page.next_forward_token().map(String::from);
        if events.len() == before || next.is_none() || next == token {
            return events;
        }
        token = next;
    }
}

/// Waits until the stream holds at least `count` events (or `timeout`); returns them once two
/// reads in a row agree. moto pages `GetLogEvents` by position in a timestamp-sorted list, so a
/// read taken while batches still land can see one event on two pages and miss another.
pub async fn wait_for_events(
    endpoint: &str,
    group: &str,
    stream: &str,
    count: usize,
    timeout: std::time::Duration,
) -> Vec<(i64, String)> {
    let deadline = std::time::Instant::now() + timeout;
    let mut previous: Option<Vec<(i64, String)>> = None;
    loop {
        let events = log_events(endpoint, group, stream).await;
        let settled = previous.as_ref() == Some(&events);
        if (events.len() >= count && settled) || std::time::Instant::now() >= deadline {
            return events;
        }
        previous = Some(events);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Numbered lines `"{prefix} {n:08}"`: the number of each message, and how many times each
/// number of `0..total` appears (to find losses and duplicates).
pub fn count_numbers(messages: &[String], total: usize) -> Vec<u32> {
    let mut seen = vec![0u32; total];
    for m in messages {
        if let Some(n) = m.rsplit(' ').next().and_then(|n| n.parse::<usize>().ok()) {
            if n < total {
                seen[n] += 1;
            }
        }
    }
    seen
}
