//! cloudtail's own TOML config file: the [`RawConfig`] schema (serde only, the reference docs of
//! every key) and its checks.
//!
//! Stage one of two: this file turns text into checked values and names the TOML key
//! (`xray.udp_address`) in every error; `mod.rs` merges them with the flags and defaults. It does
//! no I/O. To add a table (`[logs]`, `[emf]`, `[statsd]`, `[host_metrics]`): add an
//! `Option<...Section>` field to [`RawConfig`] (present = enabled), a section struct with
//! `deny_unknown_fields` and named default fns, and its checks in `to_layer`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

pub use super::buffer::BufferSection;
use super::layer::{check, Layer};
pub use super::logs_file::{LogFileSection, LogsSection};
use super::metrics::{EmfSection, HostMetricsSection, StatsdSection};
use super::validate;
use super::{
    ConfigError, DEFAULT_BATCH_MAX_DOCUMENTS, DEFAULT_CONCURRENCY, DEFAULT_FLUSH_INTERVAL,
};
use super::{DEFAULT_RECEIVE_BUFFER_BYTES, DEFAULT_RETRY_MAX_DURATION, DEFAULT_SHUTDOWN_TIMEOUT};
use super::{DEFAULT_TELEMETRY_ADDRESS, DEFAULT_XRAY_ADDRESS};

/// A cloudtail TOML file. Every table is optional; `[xray]` being present turns traces on.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[aws]`: where and how to reach AWS, shared by every pipeline.
    #[serde(default)]
    pub aws: AwsSection,
    /// `[buffer]`: the memory budget shared by every pipeline.
    #[serde(default)]
    pub buffer: BufferSection,
    /// `[xray]`: the X-Ray daemon role. Absent: no traces (unless `-b` or `-t` is given).
    #[serde(default)]
    pub xray: Option<XraySection>,
    /// `[agent]`: logging, the telemetry server, shutdown.
    #[serde(default)]
    pub agent: AgentSection,
    /// `[logs]`: tail log files to CloudWatch Logs. Absent: no log files.
    #[serde(default)]
    pub logs: Option<LogsSection>,
    /// `[emf]`: Embedded Metric Format over TCP and UDP. Absent: no EMF listener.
    #[serde(default)]
    pub emf: Option<EmfSection>,
    /// `[statsd]`: StatsD over UDP. Absent: no StatsD listener.
    #[serde(default)]
    pub statsd: Option<StatsdSection>,
    /// `[host_metrics]`: host CPU, memory, disk, network and cgroup metrics. Absent: none.
    #[serde(default)]
    pub host_metrics: Option<HostMetricsSection>,
}

/// `[aws]`. Every key unset by default means "let the AWS SDK's standard chain decide"
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance metadata). An empty string is unset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// The region to send to, e.g. "us-east-1". Default: the SDK's chain, then instance metadata.
    /// Flag `-n/--region` wins over it.
    pub region: Option<String>,
    /// One URL (http:// or https://) for every AWS service, e.g. a LocalStack or a VPC
    /// endpoint. Default: the region's public endpoints. Flag `--endpoint` wins over it.
    pub endpoint: Option<String>,
    /// An IAM role ARN assumed with the base credentials, to write to another account.
    /// Default: none (use the base credentials). Flag `-r/--role-arn` wins over it.
    pub role_arn: Option<String>,
    /// An HTTP(S) proxy for every AWS call, e.g. "http://proxy:3128". Default: none (the
    /// `HTTPS_PROXY` environment is not read either). Flag `-p/--proxy-address` wins over it.
    pub proxy_address: Option<String>,
    /// Skip TLS certificate checks on AWS calls. Default false. Only for test endpoints with
    /// self-signed certificates: it lets anyone on the path read and alter the data.
    #[serde(default)]
    pub no_verify_ssl: bool,
    /// A PEM file of extra root certificates trusted for every AWS call, on top of the
    /// system's (a TLS-inspecting proxy's CA, a private endpoint's). Default: none. The
    /// `AWS_CA_BUNDLE` environment variable does the same when this is unset. Checked at start.
    pub ca_bundle: Option<String>,
    /// Never ask EC2/ECS instance metadata (for the region or telemetry). Default false. Set it
    /// off-cloud to save the metadata timeout at startup. Flag `-o/--local-mode` wins over it.
    #[serde(default)]
    pub local_mode: bool,
    /// The ARN of the resource running the agent, reported in X-Ray telemetry records.
    /// Default: none. Flag `-a/--resource-arn` wins over it.
    pub resource_arn: Option<String>,
}

/// `[xray]`: UDP segments in, `PutTraceSegments` out, and the TCP sampling proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XraySection {
    /// IP:PORT where SDKs send segments over UDP. Default "127.0.0.1:2000"; use "0.0.0.0:2000"
    /// to accept other hosts or containers. Flag `-b/--bind` wins over it.
    #[serde(default = "default_xray_address")]
    pub udp_address: String,
    /// IP:PORT of the TCP proxy the SDKs call for sampling rules. Default "127.0.0.1:2000".
    /// Flag `-t/--bind-tcp` wins over it.
    #[serde(default = "default_xray_address")]
    pub tcp_address: String,
    /// `PutTraceSegments` calls in flight, 1 to 64. Default 8. More drains a backlog faster,
    /// at the cost of throttling sooner.
    #[serde(default = "default_concurrency")]
    pub concurrency: u64,
    /// Segment documents per `PutTraceSegments` call, 1 to 50 (the API's limit). Default 50.
    /// Fewer means more calls for the same traffic.
    #[serde(default = "default_batch_max_documents")]
    pub batch_max_documents: u64,
    /// How long a partly full batch waits before it is sent, 10ms to 60s. Default "1s".
    /// Shorter: traces appear sooner; longer: fewer calls.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: String,
    /// SO_RCVBUF asked of the kernel for the UDP socket, in bytes, at least 65536. Default
    /// 4194304 (4 MiB). Larger absorbs bursts; the kernel caps it at `net.core.rmem_max`.
    #[serde(default = "default_receive_buffer_bytes")]
    pub receive_buffer_bytes: u64,
    /// Send `PutTelemetryRecords` every 60 s once segments arrive, as the daemon does (the X-Ray
    /// console's daemon health view). Default true. Needs `xray:PutTelemetryRecords`.
    #[serde(default = "default_true")]
    pub telemetry_records: bool,
    /// How long a failing batch is retried (with backoff) before it is dropped and counted.
    /// Default "10m". Longer survives longer outages but holds buffer memory meanwhile.
    #[serde(default = "default_retry_max_duration")]
    pub retry_max_duration: String,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// IP:PORT of the HTTP server for `/metrics` (Prometheus) and `/healthz`, or "off".
    /// Default "127.0.0.1:2020". Flag `--telemetry-address` wins over it.
    #[serde(default = "default_telemetry_address")]
    pub telemetry_address: String,
    /// Log level: dev, debug, info, warn, error, prod (= info) or quiet. Default "info".
    /// Flag `-l/--log-level` wins over it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// A file to log to, appended to and never rotated by cloudtail. Default: stdout.
    /// Flag `-f/--log-file` wins over it.
    pub log_file: Option<PathBuf>,
    /// How long SIGTERM waits for queued data to be sent, more than 0 and at most 1h; what is
    /// still queued then is dropped and counted. Default "10s". Keep it under the supervisor's
    /// kill timeout (systemd 90 s, ECS 30 s, Kubernetes 30 s). Flag `--shutdown-timeout` wins.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: String,
}

impl Default for XraySection {
    fn default() -> Self {
        Self {
            udp_address: default_xray_address(),
            tcp_address: default_xray_address(),
            concurrency: default_concurrency(),
            batch_max_documents: default_batch_max_documents(),
            flush_interval: default_flush_interval(),
            receive_buffer_bytes: default_receive_buffer_bytes(),
            telemetry_records: default_true(),
            retry_max_duration: default_retry_max_duration(),
        }
    }
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            telemetry_address: default_telemetry_address(),
            log_level: default_log_level(),
            log_file: None,
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_xray_address() -> String {
    DEFAULT_XRAY_ADDRESS.to_string()
}
fn default_concurrency() -> u64 {
    DEFAULT_CONCURRENCY as u64
}
fn default_batch_max_documents() -> u64 {
    DEFAULT_BATCH_MAX_DOCUMENTS as u64
}
fn default_flush_interval() -> String {
    humantime::format_duration(DEFAULT_FLUSH_INTERVAL).to_string()
}
fn default_receive_buffer_bytes() -> u64 {
    DEFAULT_RECEIVE_BUFFER_BYTES as u64
}
fn default_true() -> bool {
    true
}
fn default_retry_max_duration() -> String {
    humantime::format_duration(DEFAULT_RETRY_MAX_DURATION).to_string()
}
fn default_telemetry_address() -> String {
    DEFAULT_TELEMETRY_ADDRESS.to_string()
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_shutdown_timeout() -> String {
    humantime::format_duration(DEFAULT_SHUTDOWN_TIMEOUT).to_string()
}

/// Parses a cloudtail TOML file against the schema. An error names the line and the full key
/// path (`xray.udp_adress`) as well as toml's message.
pub fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| describe_span(text, span))
            .unwrap_or_default();
        ConfigError::Toml {
            path: path.to_owned(),
            location,
            message: e.message().trim_end().to_owned(),
        }
    })
}

/// ` line 7, key `xray.udp_adress`` for an error at `span`.
fn describe_span(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line = text.as_bytes()[..start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    match DeTable::parse(text)
        .ok()
        .and_then(|t| key_at(t.get_ref(), "", start))
    {
        Some(key) => format!(" line {line}, key `{key}`"),
        None => format!(" line {line}"),
    }
}

/// The dotted path of the key, or of the value, that covers byte `offset`.
fn key_at(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = join(prefix, key.get_ref());
        if covers(key.span(), offset) {
            return Some(path);
        }
        value_at(value.get_ref(), value.span(), path, offset)
    })
}

/// The path inside `value` (a table, an array or a leaf spanning `span`) covering `offset`.
fn value_at(
    value: &DeValue<'_>,
    span: Range<usize>,
    path: String,
    offset: usize,
) -> Option<String> {
    match value {
        DeValue::Table(t) => {
            key_at(t, &path, offset).or_else(|| covers(span, offset).then_some(path))
        }
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            value_at(item.get_ref(), item.span(), format!("{path}[{i}]"), offset)
        }),
        _ => covers(span, offset).then_some(path),
    }
}

fn covers(span: Range<usize>, offset: usize) -> bool {
    span.contains(&offset)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

impl RawConfig {
    /// Checks every value and turns the file into a [`Layer`].
    pub(crate) fn to_layer(&self) -> Result<Layer, ConfigError> {
        let mut layer = self.aws.to_layer()?;
        layer.memory_mb = check(&self.buffer.memory_mb, |mb| {
            validate::buffer_memory_mb("buffer.memory_mb", *mb)
        })?;
        layer.buffer = Some(self.buffer.resolve()?);
        layer.traces = Some(self.xray.is_some());
        if let Some(xray) = &self.xray {
            xray.fill(&mut layer)?;
        }
        self.agent.fill(&mut layer)?;
        layer.logs = self.logs.as_ref().map(LogsSection::resolve).transpose()?;
        layer.emf = self.emf.as_ref().map(EmfSection::resolve).transpose()?;
        layer.statsd = self
            .statsd
            .as_ref()
            .map(StatsdSection::resolve)
            .transpose()?;
        layer.host_metrics = self
            .host_metrics
            .as_ref()
            .map(HostMetricsSection::resolve)
            .transpose()?;
        Ok(layer)
    }
}

impl AwsSection {
    fn to_layer(&self) -> Result<Layer, ConfigError> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(Layer {
            region: check(&set(&self.region), |v| validate::region("aws.region", v))?,
            endpoint: check(&set(&self.endpoint), |v| {
                validate::endpoint("aws.endpoint", v)
            })?,
            role_arn: check(&set(&self.role_arn), |v| {
                validate::role_arn("aws.role_arn", v)
            })?,
            proxy_address: set(&self.proxy_address),
            no_verify_ssl: Some(self.no_verify_ssl),
            ca_bundle: set(&self.ca_bundle).map(PathBuf::from),
            local_mode: Some(self.local_mode),
            resource_arn: set(&self.resource_arn),
            ..Layer::default()
        })
    }
}

impl XraySection {
    fn fill(&self, layer: &mut Layer) -> Result<(), ConfigError> {
        let example = "127.0.0.1:2000";
        layer.udp_address = Some(validate::address(
            "xray.udp_address",
            &self.udp_address,
            example,
        )?);
        layer.tcp_address = Some(validate::address(
            "xray.tcp_address",
            &self.tcp_address,
            example,
        )?);
        layer.concurrency = Some(validate::concurrency("xray.concurrency", self.concurrency)?);
        layer.batch_max_documents = Some(validate::batch_max_documents(
            "xray.batch_max_documents",
            self.batch_max_documents,
        )?);
        let key = "xray.flush_interval";
        let flush = validate::duration(key, &self.flush_interval)?;
        layer.flush_interval = Some(validate::flush_interval(key, flush)?);
        layer.receive_buffer_bytes = Some(validate::receive_buffer_bytes(
            "xray.receive_buffer_bytes",
            self.receive_buffer_bytes,
        )?);
        layer.telemetry_records = Some(self.telemetry_records);
        let key = "xray.retry_max_duration";
        layer.retry_max_duration = Some(validate::duration(key, &self.retry_max_duration)?);
        Ok(())
    }
}

impl AgentSection {
    fn fill(&self, layer: &mut Layer) -> Result<(), ConfigError> {
        let key = "agent.telemetry_address";
        layer.telemetry_address = Some(validate::telemetry_address(key, &self.telemetry_address)?);
        layer.log_level = Some(validate::log_level("agent.log_level", &self.log_level)?);
        layer.log_file = self.log_file.clone().filter(|p| !p.as_os_str().is_empty());
        let key = "agent.shutdown_timeout";
        let timeout = validate::duration(key, &self.shutdown_timeout)?;
        layer.shutdown_timeout = Some(validate::shutdown_timeout(key, timeout)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../config/cloudtail.toml");

    fn err(text: &str) -> String {
        match parse(Path::new("ct.toml"), text).and_then(|raw| raw.to_layer()) {
            Ok(_) => panic!("{text:?} should fail"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_keys_name_their_full_path_and_line() {
        let e = err("[aws]\nregion = \"us-east-1\"\n\n[xray]\nudp_adress = \"0.0.0.0:2000\"\n");
        assert!(
            e.starts_with("config: `ct.toml` line 5, key `xray.udp_adress`: unknown field `udp_adress`, expected one of"),
            "{e}"
        );
        assert!(e.contains("`udp_address`"), "{e}");
        let e = err("xray = { concurrency = 4, batch = 5 }\n");
        assert!(e.contains("key `xray.batch`"), "{e}");
        let e = err("[xray2]\n");
        assert!(e.contains("key `xray2`: unknown field `xray2`"), "{e}");
        let e = err("agent.log_levle = \"info\"\n");
        assert!(e.contains("key `agent.log_levle`"), "{e}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = err("[xray]\nconcurrency = \"8\"\n");
        assert!(
            e.starts_with("config: `ct.toml` line 2, key `xray.concurrency`: "),
            "{e}"
        );
        let e = err("[buffer]\nmemory_mb = -1\n");
        assert!(e.contains("key `buffer.memory_mb`"), "{e}");
        let e = err("[aws\n");
        assert!(e.starts_with("config: `ct.toml` line 1"), "{e}");
    }

    #[test]
    fn bad_values_name_the_toml_key() {
        assert_eq!(
            err("[xray]\nudp_address = \"abc\"\n"),
            "config: `xray.udp_address` = \"abc\" is not an address: use IP:PORT, e.g. 127.0.0.1:2000"
        );
        assert!(err("[xray]\nflush_interval = \"5ms\"\n")
            .contains("`xray.flush_interval` = \"5ms\" is out of range"));
        assert!(err("[xray]\nflush_interval = \"1x\"\n")
            .contains("`xray.flush_interval` = \"1x\" is not a duration"));
        assert!(
            err("[xray]\nretry_max_duration = \"soon\"\n").contains("`xray.retry_max_duration`")
        );
        assert!(err("[xray]\nconcurrency = 0\n").contains("`xray.concurrency` = 0 is out of range"));
        assert!(
            err("[xray]\nbatch_max_documents = 51\n").contains("`xray.batch_max_documents` = 51")
        );
        assert!(
            err("[xray]\nreceive_buffer_bytes = 1024\n").contains("`xray.receive_buffer_bytes`")
        );
        assert!(err("[aws]\nregion = \"EU\"\n").contains("`aws.region` = \"EU\""));
        assert!(err("[aws]\nendpoint = \"localhost\"\n").contains("`aws.endpoint`"));
        assert!(err("[aws]\nrole_arn = \"r\"\n").contains("`aws.role_arn`"));
        assert!(err("[buffer]\nmemory_mb = 0\n").contains("`buffer.memory_mb` = 0 is too small"));
        assert!(err("[agent]\nlog_level = \"loud\"\n").contains("`agent.log_level`"));
        assert!(err("[agent]\ntelemetry_address = \"x\"\n").contains("`agent.telemetry_address`"));
        assert!(err("[agent]\nshutdown_timeout = \"0s\"\n")
            .contains("`agent.shutdown_timeout` = \"0s\""));
    }

    #[test]
    fn absent_xray_table_means_no_traces() {
        let raw = parse(Path::new("ct.toml"), "").unwrap();
        assert_eq!(raw, RawConfig::default());
        assert_eq!(raw.to_layer().unwrap().traces, Some(false));
        let raw = parse(Path::new("ct.toml"), "[xray]\n").unwrap();
        assert_eq!(raw.xray, Some(XraySection::default()));
        assert_eq!(raw.to_layer().unwrap().traces, Some(true));
    }

    #[test]
    fn paths_inside_arrays_of_tables() {
        let text = "[[a.b]]\nc = 1\n[[a.b]]\nd = 2\n";
        let table = DeTable::parse(text).unwrap();
        let offset = text.find('d').unwrap();
        assert_eq!(
            key_at(table.get_ref(), "", offset).as_deref(),
            Some("a.b[1].d")
        );
    }

    /// The reference with every `# key = value` and `# [table]` line uncommented.
    fn uncommented(text: &str) -> String {
        let is_key = |rest: &str| {
            let table = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
            let key = rest.split_once(" = ").map(|(k, _)| k).or(table);
            key.is_some_and(|k| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
        };
        let is_table = |rest: &str| {
            ["[logs]", "[[logs.files]]", "[[logs.files.metric_filters]]"].contains(&rest)
        };
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_key(rest) || is_table(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_reference_documents_every_key_with_valid_values() {
        let text = uncommented(REFERENCE);
        let raw = parse(Path::new("cloudtail.toml"), &text).unwrap();
        raw.to_layer().unwrap();
        let table: toml::Table = text.parse().unwrap();
        let keys = |t: &str| -> Vec<&str> {
            let mut keys: Vec<&str> = table[t]
                .as_table()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort_unstable();
            keys
        };
        let mut tables: Vec<&str> = table.keys().map(|k| k.as_str()).collect();
        tables.sort_unstable();
        assert_eq!(
            tables,
            [
                "agent",
                "aws",
                "buffer",
                "emf",
                "host_metrics",
                "logs",
                "statsd",
                "xray"
            ]
        );
        let emf = [
            "log_group",
            "log_stream",
            "mode",
            "tcp_address",
            "udp_address",
        ];
        assert_eq!(keys("emf"), emf);
        assert_eq!(
            keys("statsd"),
            ["address", "aggregation_interval", "namespace"]
        );
        let host = ["append_dimensions", "collect", "interval", "namespace"];
        assert_eq!(keys("host_metrics"), host);
        let mut logs: Vec<&str> = table["logs"]
            .as_table()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        logs.sort_unstable();
        assert_eq!(
            logs,
            [
                "concurrency",
                "files",
                "flush_interval",
                "metric_filter_interval",
                "state_dir"
            ]
        );
        let file = table["logs"]["files"][0].as_table().unwrap();
        let mut file_keys: Vec<&str> = file.keys().map(|k| k.as_str()).collect();
        file_keys.sort_unstable();
        let expected = [
            "encoding",
            "exclude_lines",
            "exclude_paths",
            "group_class",
            "include_lines",
            "log_group",
            "log_stream",
            "metric_filters",
            "multiline_start",
            "path",
            "paths",
            "retention_days",
            "start_at",
            "timestamp_format",
            "timezone",
        ];
        assert_eq!(file_keys, expected);
        let filter = file["metric_filters"][0].as_table().unwrap();
        let mut filter_keys: Vec<&str> = filter.keys().map(|k| k.as_str()).collect();
        filter_keys.sort_unstable();
        let expected = [
            "default_value",
            "dimensions",
            "metric",
            "namespace",
            "pattern",
            "unit",
            "value",
        ];
        assert_eq!(filter_keys, expected);
        let aws = [
            "ca_bundle",
            "endpoint",
            "local_mode",
            "no_verify_ssl",
            "proxy_address",
            "region",
            "resource_arn",
            "role_arn",
        ];
        assert_eq!(keys("aws"), aws);
        let buffer = [
            "disk_mb",
            "logs_floor",
            "memory_mb",
            "metrics_floor",
            "spill_dir",
            "traces_floor",
        ];
        assert_eq!(keys("buffer"), buffer);
        let xray = [
            "batch_max_documents",
            "concurrency",
            "flush_interval",
            "receive_buffer_bytes",
            "retry_max_duration",
            "tcp_address",
            "telemetry_records",
            "udp_address",
        ];
        assert_eq!(keys("xray"), xray);
        let agent = [
            "log_file",
            "log_level",
            "shutdown_timeout",
            "telemetry_address",
        ];
        assert_eq!(keys("agent"), agent);
        // The commented defaults are the defaults.
        let xray = raw.xray.unwrap();
        assert_eq!(xray, XraySection::default());
        let logs = raw.logs.unwrap();
        assert_eq!(logs.state_dir, PathBuf::from("/var/lib/cloudtail"));
        assert_eq!(logs.flush_interval, "5s");
        assert_eq!(logs.concurrency, 4);
        assert_eq!(logs.metric_filter_interval, "60s");
        let filter = &logs.files[0].metric_filters[0];
        assert_eq!((filter.unit.as_str(), filter.value), ("Count", 1.0));
        assert_eq!(
            raw.agent,
            AgentSection {
                log_file: reference_log_file(),
                ..AgentSection::default()
            }
        );
    }

    #[test]
    fn the_reference_metrics_tables_show_the_defaults() {
        let raw = parse(Path::new("cloudtail.toml"), &uncommented(REFERENCE)).unwrap();
        assert_eq!(raw.emf, Some(EmfSection::default()));
        assert_eq!(raw.statsd, Some(StatsdSection::default()));
        let host = raw.host_metrics.unwrap();
        assert_eq!(
            host,
            HostMetricsSection {
                append_dimensions: [("InstanceId".into(), "{instance_id}".into())].into(),
                ..HostMetricsSection::default()
            }
        );
        // Commented out, the tables are off.
        let plain = parse(Path::new("cloudtail.toml"), REFERENCE).unwrap();
        assert_eq!(
            (plain.emf, plain.statsd, plain.host_metrics),
            (None, None, None)
        );
    }

    fn reference_log_file() -> Option<PathBuf> {
        Some(PathBuf::from("/var/log/cloudtail.log"))
    }
}
