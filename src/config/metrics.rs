//! The metrics tables of the TOML file, `[emf]`, `[statsd]` and `[host_metrics]`: their raw
//! schema (serde only, the reference docs of every key), their checks, and the resolved types
//! the sources run with.
//!
//! Each table's presence turns its source on; there are no flags for them. Like the rest of
//! `config`, this file does no I/O and reads no environment: placeholders such as
//! `{instance_id}` are only checked here and resolved by the agent at startup
//! (`crate::placeholders`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{self, quote};
use super::ConfigError;
use crate::placeholders::PLACEHOLDERS;

/// `[emf]` resolved: Embedded Metric Format documents over TCP and UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfConfig {
    /// Where clients connect (TCP, one document per line).
    pub tcp_address: SocketAddr,
    /// Where clients send datagrams (UDP, one or more lines per datagram).
    pub udp_address: SocketAddr,
    /// Log group template for documents without `_aws.LogGroupName` (placeholders unresolved).
    pub log_group: String,
    /// Log stream template for documents without `_aws.LogStreamName`.
    pub log_stream: String,
    /// Where EMF documents go.
    pub mode: EmfMode,
}

/// Where EMF documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmfMode {
    /// As log events to CloudWatch Logs, which extracts the metrics (what the CloudWatch agent
    /// does): the documents stay searchable in Logs Insights.
    Logs,
    /// Metrics extracted here and sent with `PutMetricData`; nothing goes to CloudWatch Logs.
    Metrics,
}

/// `[statsd]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdConfig {
    /// The UDP address to listen on.
    pub address: SocketAddr,
    /// The CloudWatch namespace of every StatsD metric.
    pub namespace: String,
    /// How long lines are aggregated into one datum per series.
    pub aggregation_interval: Duration,
}

/// `[host_metrics]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMetricsConfig {
    /// How often the host is measured.
    pub interval: Duration,
    /// The CloudWatch namespace.
    pub namespace: String,
    /// What to measure, without duplicates, in the order given.
    pub collect: Vec<HostCollector>,
    /// Dimensions added to every datum; values may hold placeholders (unresolved here).
    pub append_dimensions: BTreeMap<String, String>,
}

/// One group of host metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostCollector {
    /// `cpu`: usage percentages from `/proc/stat`.
    Cpu,
    /// `mem`: memory used and available from `/proc/meminfo`.
    Mem,
    /// `disk`: space and inodes per mounted file system.
    Disk,
    /// `diskio`: reads, writes and times per block device from `/proc/diskstats`.
    DiskIo,
    /// `net`: bytes, packets, errors and drops per interface from `/proc/net/dev`.
    Net,
    /// `cgroup`: the CPU and memory of the container cloudtail runs in (cgroup v2).
    Cgroup,
}

impl HostCollector {
    /// Every collector, in the default order.
    pub const ALL: [HostCollector; 6] = [
        HostCollector::Cpu,
        HostCollector::Mem,
        HostCollector::Disk,
        HostCollector::DiskIo,
        HostCollector::Net,
        HostCollector::Cgroup,
    ];

    /// The name used in `collect`.
    pub fn name(self) -> &'static str {
        match self {
            HostCollector::Cpu => "cpu",
            HostCollector::Mem => "mem",
            HostCollector::Disk => "disk",
            HostCollector::DiskIo => "diskio",
            HostCollector::Net => "net",
            HostCollector::Cgroup => "cgroup",
        }
    }
}

/// `[emf]`: Embedded Metric Format documents from the `aws-embedded-metrics` clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmfSection {
    /// IP:PORT for TCP clients (one JSON document per line). Default "127.0.0.1:25888", the
    /// CloudWatch agent's port; "0.0.0.0:25888" accepts other hosts and containers.
    #[serde(default = "default_emf_address")]
    pub tcp_address: String,
    /// IP:PORT for UDP clients (one or more lines per datagram). Default "127.0.0.1:25888".
    #[serde(default = "default_emf_address")]
    pub udp_address: String,
    /// Log group for documents that name none (`_aws.LogGroupName` wins). Placeholders:
    /// {hostname}, {instance_id}, {task_id}. Default "/metrics/{task_id}".
    #[serde(default = "default_emf_log_group")]
    pub log_group: String,
    /// Log stream for documents that name none (`_aws.LogStreamName` wins). Same
    /// placeholders. Default "{hostname}".
    #[serde(default = "default_emf_log_stream")]
    pub log_stream: String,
    /// "logs": documents go to CloudWatch Logs, which extracts the metrics (searchable logs,
    /// Logs ingestion cost). "metrics": metrics are extracted here and sent with PutMetricData
    /// (no log ingestion; the documents' other fields are lost). Default "logs".
    #[serde(default = "default_emf_mode")]
    pub mode: String,
}

/// `[statsd]`: StatsD lines over UDP, aggregated before they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsdSection {
    /// IP:PORT to listen on (UDP). Default "127.0.0.1:8125".
    #[serde(default = "default_statsd_address")]
    pub address: String,
    /// CloudWatch namespace of every StatsD metric, 1 to 255 characters, not starting with
    /// "AWS/". Default "StatsD".
    #[serde(default = "default_statsd_namespace")]
    pub namespace: String,
    /// How long lines are aggregated into one datum per series, at least 1s. Default "60s".
    /// Shorter: finer graphs and more PutMetricData calls.
    #[serde(default = "default_interval")]
    pub aggregation_interval: String,
}

/// `[host_metrics]`: CPU, memory, disk, network and cgroup metrics of the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetricsSection {
    /// How often the host is measured, at least 1s. Default "60s".
    #[serde(default = "default_interval")]
    pub interval: String,
    /// CloudWatch namespace, 1 to 255 characters, not starting with "AWS/". Default
    /// "CWAgent", as the CloudWatch agent, so its dashboards and alarms keep working.
    #[serde(default = "default_host_namespace")]
    pub namespace: String,
    /// What to measure: any of "cpu", "mem", "disk", "diskio", "net", "cgroup". Default all.
    #[serde(default = "default_collect")]
    pub collect: Vec<String>,
    /// Dimensions added to every host metric (at most 25 here: per-device metrics add up to
    /// five of their own). Values may use {hostname}, {instance_id}, {task_id}. Default none.
    #[serde(default)]
    pub append_dimensions: BTreeMap<String, String>,
}

impl Default for EmfSection {
    fn default() -> Self {
        Self {
            tcp_address: default_emf_address(),
            udp_address: default_emf_address(),
            log_group: default_emf_log_group(),
            log_stream: default_emf_log_stream(),
            mode: default_emf_mode(),
        }
    }
}

impl Default for StatsdSection {
    fn default() -> Self {
        Self {
            address: default_statsd_address(),
            namespace: default_statsd_namespace(),
            aggregation_interval: default_interval(),
        }
    }
}

impl Default for HostMetricsSection {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            namespace: default_host_namespace(),
            collect: default_collect(),
            append_dimensions: BTreeMap::new(),
        }
    }
}

fn default_emf_address() -> String {
    "127.0.0.1:25888".to_owned()
}
fn default_emf_log_group() -> String {
    "/metrics/{task_id}".to_owned()
}
fn default_emf_log_stream() -> String {
    "{hostname}".to_owned()
}
fn default_emf_mode() -> String {
    "logs".to_owned()
}
fn default_statsd_address() -> String {
    "127.0.0.1:8125".to_owned()
}
fn default_statsd_namespace() -> String {
    "StatsD".to_owned()
}
fn default_interval() -> String {
    "60s".to_owned()
}
fn default_host_namespace() -> String {
    "CWAgent".to_owned()
}
fn default_collect() -> Vec<String> {
    HostCollector::ALL
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

/// Dimensions `append_dimensions` may hold: per-device metrics add up to five of their own.
const MAX_APPENDED_DIMENSIONS: usize = 25;

impl EmfSection {
    /// Checks every key.
    pub(crate) fn resolve(&self) -> Result<EmfConfig, ConfigError> {
        let example = "127.0.0.1:25888";
        let mode = match self.mode.as_str() {
            "logs" => EmfMode::Logs,
            "metrics" => EmfMode::Metrics,
            other => {
                return Err(ConfigError::invalid(
                    "emf.mode",
                    quote(other),
                    "is not a mode",
                    "use \"logs\" (CloudWatch Logs extracts the metrics) or \"metrics\" (PutMetricData)",
                ))
            }
        };
        Ok(EmfConfig {
            tcp_address: validate::address("emf.tcp_address", &self.tcp_address, example)?,
            udp_address: validate::address("emf.udp_address", &self.udp_address, example)?,
            log_group: template("emf.log_group", &self.log_group, "/metrics/{task_id}")?,
            log_stream: template("emf.log_stream", &self.log_stream, "{hostname}")?,
            mode,
        })
    }
}

impl StatsdSection {
    /// Checks every key.
    pub(crate) fn resolve(&self) -> Result<StatsdConfig, ConfigError> {
        Ok(StatsdConfig {
            address: validate::address("statsd.address", &self.address, "127.0.0.1:8125")?,
            namespace: namespace("statsd.namespace", &self.namespace)?,
            aggregation_interval: interval(
                "statsd.aggregation_interval",
                &self.aggregation_interval,
            )?,
        })
    }
}

impl HostMetricsSection {
    /// Checks every key.
    pub(crate) fn resolve(&self) -> Result<HostMetricsConfig, ConfigError> {
        let mut collect = Vec::new();
        for (i, name) in self.collect.iter().enumerate() {
            let key = format!("host_metrics.collect[{i}]");
            let collector = HostCollector::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        &key,
                        quote(name),
                        "is not a host metric group",
                        "use any of \"cpu\", \"mem\", \"disk\", \"diskio\", \"net\", \"cgroup\"",
                    )
                })?;
            if !collect.contains(&collector) {
                collect.push(collector);
            }
        }
        if self.append_dimensions.len() > MAX_APPENDED_DIMENSIONS {
            return Err(ConfigError::invalid(
                "host_metrics.append_dimensions",
                format!("{} dimensions", self.append_dimensions.len()),
                "is too many",
                "use at most 25 (CloudWatch allows 30 per metric, devices add their own)",
            ));
        }
        for (name, value) in &self.append_dimensions {
            let key = format!("host_metrics.append_dimensions.{name}");
            if name.is_empty() || name.len() > 255 {
                return Err(ConfigError::invalid(
                    &key,
                    quote(name),
                    "is not a dimension name",
                    "use 1 to 255 characters, e.g. InstanceId",
                ));
            }
            template(&key, value, "{instance_id}")?;
        }
        Ok(HostMetricsConfig {
            interval: interval("host_metrics.interval", &self.interval)?,
            namespace: namespace("host_metrics.namespace", &self.namespace)?,
            collect,
            append_dimensions: self.append_dimensions.clone(),
        })
    }
}

/// A CloudWatch namespace: 1 to 255 characters, not in the reserved `AWS/` space.
pub(crate) fn namespace(key: &str, text: &str) -> Result<String, ConfigError> {
    let fix = "use 1 to 255 characters not starting with \"AWS/\", e.g. \"MyApp\"";
    if text.is_empty() || text.chars().count() > 255 || text.starts_with("AWS/") {
        return Err(ConfigError::invalid(
            key,
            quote(text),
            "is not a usable namespace",
            fix,
        ));
    }
    Ok(text.to_owned())
}

/// An interval of at least 1 s and at most 1 h.
fn interval(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = validate::duration(key, text)?;
    if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        return Ok(d);
    }
    Err(ConfigError::invalid(
        key,
        quote(text),
        "is out of range",
        "use 1s to 1h, e.g. \"60s\"",
    ))
}

/// A non-empty name template whose `{...}` placeholders are all known.
fn template(key: &str, text: &str, example: &str) -> Result<String, ConfigError> {
    let fix = || {
        format!(
            "use text and the placeholders {}, e.g. \"{example}\"",
            PLACEHOLDERS.join(", ")
        )
    };
    if text.is_empty() {
        return Err(ConfigError::invalid(key, quote(text), "is empty", fix()));
    }
    if let Err(bad) = crate::placeholders::check(text) {
        let problem = format!("has an unknown placeholder {bad}");
        return Err(ConfigError::invalid(key, quote(text), &problem, fix()));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let emf = EmfSection::default().resolve().expect("emf");
        assert_eq!(emf.mode, EmfMode::Logs);
        assert_eq!(emf.tcp_address, "127.0.0.1:25888".parse().expect("addr"));
        let statsd = StatsdSection::default().resolve().expect("statsd");
        assert_eq!(statsd.aggregation_interval, Duration::from_secs(60));
        let host = HostMetricsSection::default().resolve().expect("host");
        assert_eq!(host.collect, HostCollector::ALL);
        assert_eq!(host.namespace, "CWAgent");
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let emf = EmfSection {
            mode: "both".into(),
            ..EmfSection::default()
        };
        let e = emf.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with("config: `emf.mode` = \"both\" is not a mode: use"),
            "{e}"
        );
        let emf = EmfSection {
            log_group: "/m/{taskid}".into(),
            ..EmfSection::default()
        };
        let e = emf.resolve().unwrap_err().to_string();
        assert!(
            e.contains("`emf.log_group`") && e.contains("{taskid}"),
            "{e}"
        );
        let statsd = StatsdSection {
            namespace: "AWS/EC2".into(),
            ..StatsdSection::default()
        };
        assert!(statsd
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("`statsd.namespace`"));
        let statsd = StatsdSection {
            aggregation_interval: "500ms".into(),
            ..StatsdSection::default()
        };
        let e = statsd.resolve().unwrap_err().to_string();
        assert!(
            e.contains("`statsd.aggregation_interval` = \"500ms\" is out of range"),
            "{e}"
        );
        let host = HostMetricsSection {
            collect: vec!["cpu".into(), "gpu".into()],
            ..HostMetricsSection::default()
        };
        let e = host.resolve().unwrap_err().to_string();
        assert!(e.contains("`host_metrics.collect[1]` = \"gpu\""), "{e}");
        let host = HostMetricsSection {
            namespace: String::new(),
            ..HostMetricsSection::default()
        };
        assert!(host.resolve().is_err());
        let host = HostMetricsSection {
            append_dimensions: [("InstanceId".to_string(), "{instance}".to_string())].into(),
            ..HostMetricsSection::default()
        };
        let e = host.resolve().unwrap_err().to_string();
        assert!(
            e.contains("`host_metrics.append_dimensions.InstanceId`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_collectors_collapse() {
        let host = HostMetricsSection {
            collect: vec!["net".into(), "cpu".into(), "net".into()],
            ..HostMetricsSection::default()
        };
        let host = host.resolve().expect("valid");
        assert_eq!(host.collect, [HostCollector::Net, HostCollector::Cpu]);
    }
    fn toml_err(text: &str) -> String {
        let parsed = super::super::file::parse(std::path::Path::new("ct.toml"), text);
        match parsed.and_then(|raw| raw.to_layer()) {
            Ok(_) => panic!("{text:?} should fail"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn metrics_tables_turn_their_sources_on() {
        let text = "[emf]\nmode = \"metrics\"\n[statsd]\n[host_metrics]\ncollect = [\"cpu\"]\n";
        let layer = super::super::file::parse(std::path::Path::new("ct.toml"), text)
            .unwrap()
            .to_layer()
            .unwrap();
        let emf = layer.emf.unwrap();
        assert_eq!(emf.mode, crate::config::EmfMode::Metrics);
        assert_eq!(layer.statsd.unwrap().namespace, "StatsD");
        let host = layer.host_metrics.unwrap();
        assert_eq!(host.collect, [crate::config::HostCollector::Cpu]);
        let e = toml_err("[emf]\nmode = \"both\"\n");
        assert!(e.contains("`emf.mode` = \"both\""), "{e}");
        let e = toml_err("[statsd]\nadress = \"x\"\n");
        assert!(e.contains("key `statsd.adress`"), "{e}");
        let e = toml_err("[host_metrics]\ninterval = \"0s\"\n");
        assert!(e.contains("`host_metrics.interval`"), "{e}");
    }
}
