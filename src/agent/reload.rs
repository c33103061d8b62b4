//! SIGHUP: the config file is read again (by `main`, which knows the command line) and what
//! can change while running changes; the rest keeps running as it is.
//!
//! What changes live is the `[[logs.files]]` list: files an unchanged entry matches keep their
//! tailer, open handle and offset; the tailers of changed or removed entries stop after the
//! last event they handed on and their files are picked up by the new entries from there, so
//! a reload neither loses nor repeats a line. A changed `[statsd]` table, or a changed EMF
//! address, restarts that source alone (`agent/listeners.rs`); the other sources keep their
//! sockets. AWS settings, the budget, the pipelines and the other sources are kept as they
//! are: a change there is named in a warning and takes effect at the next start. A config that
//! does not load is rejected before it gets here, with the running one untouched.

use tokio::sync::mpsc;

use super::listeners::{emf_needs_restart, Listeners};
use super::Wiring;
use crate::config::{Config, LogFileConfig};
use crate::sinks::cloudwatch_logs::prepare_groups;
use crate::sources::file::{startup_destinations, NameContext};

/// Where a new `[[logs.files]]` list goes, and what setting retention on its new groups needs.
pub(super) struct FilesReload {
    /// The running file source's reload queue.
    pub tx: mpsc::Sender<Vec<LogFileConfig>>,
    /// The names the source renders groups with.
    pub names: NameContext,
    /// For the retention of groups new entries name.
    pub client: aws_sdk_cloudwatchlogs::Client,
}

/// The config the agent runs with, and how to change its live part.
pub(super) struct Reloader {
    running: Config,
    files: Option<FilesReload>,
    listeners: Listeners,
}

impl Reloader {
    /// `running`: the config the agent started with; `files`: set when log files are tailed;
    /// `listeners`: the socket sources that may restart.
    pub(super) fn new(running: Config, files: Option<FilesReload>, listeners: Listeners) -> Self {
        Reloader {
            running,
            files,
            listeners,
        }
    }

    /// Applies what can change of `new` and names what cannot.
    pub(super) fn apply(&mut self, new: Config, wiring: &Wiring) {
        let mut deferred = deferred_changes(&self.running, &new);
        match (&mut self.running.logs, &new.logs, &self.files) {
            (Some(running), Some(wanted), Some(files)) if running.files != wanted.files => {
                if files.tx.try_send(wanted.files.clone()).is_ok() {
                    set_new_retention(files, &running.files, &wanted.files, wiring);
                    running.files = wanted.files.clone();
                } else {
                    deferred.push(
                        "[[logs.files]] (a reload is still being applied; send SIGHUP again)",
                    );
                }
            }
            _ => {}
        }
        self.listeners.reload_statsd(new.statsd.as_ref(), wiring);
        self.listeners.reload_emf(new.emf.as_ref(), wiring);
        if deferred.is_empty() {
            tracing::info!("Configuration reloaded.");
        } else {
            tracing::warn!(
                changed = deferred.join(", "),
                "Configuration reloaded; these changes take effect at the next start."
            );
        }
    }
}

/// Sets the retention of the groups that entries new in `wanted` name, as at start-up.
fn set_new_retention(
    files: &FilesReload,
    running: &[LogFileConfig],
    wanted: &[LogFileConfig],
    wiring: &Wiring,
) {
    let added: Vec<LogFileConfig> = wanted
        .iter()
        .filter(|f| !running.contains(f))
        .cloned()
        .collect();
    let destinations = startup_destinations(&added, &files.names);
    if destinations.is_empty() {
        return;
    }
    let (client, tracker, token) = (
        files.client.clone(),
        wiring.tracker.clone(),
        wiring.token.child_token(),
    );
    wiring.tracker.spawn(async move {
        prepare_groups(&client, &destinations, &tracker, token).await;
    });
}

/// The sections of `new` that differ from `running` and are not applied live.
fn deferred_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            changed.push(name);
        }
    };
    check(
        running.aws != new.aws,
        "[aws] (or -n, -r, -p, -o, --endpoint)",
    );
    check(running.buffer != new.buffer, "[buffer] (or -m)");
    check(running.xray != new.xray, "[xray] (or the daemon's flags)");
    check(
        running.agent != new.agent,
        "[agent] (or -l, -f, --telemetry-address)",
    );
    check(
        running.statsd.is_some() != new.statsd.is_some(),
        "[statsd] added or removed",
    );
    check(
        emf_needs_restart(running.emf.as_ref(), new.emf.as_ref()),
        "[emf] added or removed, or settings other than its addresses",
    );
    check(running.host_metrics != new.host_metrics, "[host_metrics]");
    match (&running.logs, &new.logs) {
        (Some(old), Some(new)) => {
            let settings_differ = old.state_dir != new.state_dir
                || old.flush_interval != new.flush_interval
                || old.concurrency != new.concurrency
                || old.metric_filter_interval != new.metric_filter_interval;
            check(settings_differ, "[logs] settings other than [[logs.files]]");
            let filters =
                |files: &[LogFileConfig]| files.iter().any(|f| !f.metric_filters.is_empty());
            check(
                !filters(&old.files) && filters(&new.files),
                "the first metric filters (the metrics pipeline starts at the next start)",
            );
        }
        (None, None) => {}
        _ => check(true, "[logs] added or removed"),
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let file = crate::config::ConfigFile::Toml {
            path: "test.toml".into(),
            text: text.to_owned(),
        };
        crate::config::load(&crate::cli::RunArgs::default(), Some(file)).expect("loads")
    }

    const BASE: &str = "[aws]\nregion = \"us-east-1\"\n[logs]\nstate_dir = \"/tmp/x\"\n\
        [[logs.files]]\npath = \"/var/log/a.log\"\nlog_group = \"g\"\n";

    #[test]
    fn a_changed_file_list_alone_is_applied_live() {
        let added = format!("{BASE}[[logs.files]]\npath = \"/var/log/b.log\"\nlog_group = \"g\"\n");
        assert!(deferred_changes(&config(BASE), &config(&added)).is_empty());
    }

    #[test]
    fn other_changes_are_named() {
        let statsd = format!("{BASE}[statsd]\naddress = \"127.0.0.1:8125\"\n");
        let flush = BASE.replace("state_dir", "flush_interval = \"2s\"\nstate_dir");
        assert_eq!(
            deferred_changes(&config(BASE), &config(&statsd)),
            ["[statsd] added or removed"]
        );
        let moved = statsd.replace("8125", "8126");
        assert!(deferred_changes(&config(&statsd), &config(&moved)).is_empty());
        let emf = format!("{BASE}[emf]\ntcp_address = \"127.0.0.1:25888\"\n");
        let emf_moved = emf.replace("25888", "25999");
        assert!(deferred_changes(&config(&emf), &config(&emf_moved)).is_empty());
        let emf_mode = format!("{emf}mode = \"metrics\"\n");
        assert_eq!(
            deferred_changes(&config(&emf), &config(&emf_mode)),
            ["[emf] added or removed, or settings other than its addresses"]
        );
        assert_eq!(
            deferred_changes(&config(BASE), &config(&flush)),
            ["[logs] settings other than [[logs.files]]"]
        );
    }
}
