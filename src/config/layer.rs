//! [`Layer`]: what one source (the flags, or the config file) says, already checked, before
//! precedence and defaults are applied.
//!
//! Every field is an `Option`: `None` means "this source is silent", so [`Layer::over`] is the
//! whole precedence rule and [`Layer::resolve`] the only place defaults are filled in. This file
//! also names the flags in errors (`-b/--bind`); the file formats build their layers themselves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::logs::LogsConfig;
use super::{validate, AgentConfig, AwsConfig, BufferConfig, Config, ConfigError, XrayConfig};
use super::{EmfConfig, HostMetricsConfig, StatsdConfig};
use super::{LogLevel, DEFAULT_BATCH_MAX_DOCUMENTS, DEFAULT_CONCURRENCY, DEFAULT_FLUSH_INTERVAL};
use super::{DEFAULT_LOG_LEVEL, DEFAULT_RECEIVE_BUFFER_BYTES, DEFAULT_RETRY_MAX_DURATION};
use super::{DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TELEMETRY_ADDRESS, DEFAULT_XRAY_ADDRESS};
use crate::cli::RunArgs;

/// One source's settings, each checked, each `None` when the source does not set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layer {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub role_arn: Option<String>,
    pub proxy_address: Option<String>,
    pub no_verify_ssl: Option<bool>,
    pub ca_bundle: Option<PathBuf>,
    pub local_mode: Option<bool>,
    pub resource_arn: Option<String>,
    pub memory_mb: Option<u64>,
    /// `[buffer]` less `memory_mb`, from the TOML file only.
    pub buffer: Option<BufferConfig>,
    /// Whether the X-Ray role runs.
    pub traces: Option<bool>,
    pub udp_address: Option<SocketAddr>,
    pub tcp_address: Option<SocketAddr>,
    pub concurrency: Option<usize>,
    pub batch_max_documents: Option<usize>,
    pub flush_interval: Option<Duration>,
    pub receive_buffer_bytes: Option<usize>,
    pub telemetry_records: Option<bool>,
    pub retry_max_duration: Option<Duration>,
    /// `Some(None)` is "off".
    pub telemetry_address: Option<Option<SocketAddr>>,
    pub log_level: Option<LogLevel>,
    pub log_file: Option<PathBuf>,
    pub shutdown_timeout: Option<Duration>,
    /// The log-file role; only a config file sets it.
    pub logs: Option<LogsConfig>,
    /// `[emf]`, from the TOML file only.
    pub emf: Option<EmfConfig>,
    /// `[statsd]`, from the TOML file only.
    pub statsd: Option<StatsdConfig>,
    /// `[host_metrics]`, from the TOML file only.
    pub host_metrics: Option<HostMetricsConfig>,
}

impl Layer {
    /// The flags' layer. The command line parser already checked the syntax of typed values;
    /// this checks what it could not (ranges, region and ARN shapes). `-b`/`-t` turn traces on.
    pub(crate) fn from_args(a: &RunArgs) -> Result<Self, ConfigError> {
        let traces = (a.bind.is_some() || a.bind_tcp.is_some()).then_some(true);
        Ok(Self {
            region: check(&a.region, |v| validate::region("-n/--region", v))?,
            endpoint: check(&a.endpoint, |v| validate::endpoint("--endpoint", v))?,
            role_arn: check(&a.role_arn, |v| validate::role_arn("-r/--role-arn", v))?,
            proxy_address: a.proxy_address.clone(),
            no_verify_ssl: None,
            local_mode: a.local_mode,
            resource_arn: a.resource_arn.clone(),
            memory_mb: check(&a.buffer_memory_mb, |v| {
                validate::buffer_memory_mb("-m/--buffer-memory", *v)
            })?,
            traces,
            udp_address: a.bind,
            tcp_address: a.bind_tcp,
            telemetry_address: a.telemetry_address,
            log_level: a.log_level,
            log_file: a.log_file.clone(),
            shutdown_timeout: check(&a.shutdown_timeout, |v| {
                validate::shutdown_timeout("--shutdown-timeout", *v)
            })?,
            ..Self::default()
        })
    }

    /// This layer where it speaks, `base` where it is silent.
    pub(crate) fn over(self, base: Layer) -> Layer {
        Layer {
            region: self.region.or(base.region),
            endpoint: self.endpoint.or(base.endpoint),
            role_arn: self.role_arn.or(base.role_arn),
            proxy_address: self.proxy_address.or(base.proxy_address),
            no_verify_ssl: self.no_verify_ssl.or(base.no_verify_ssl),
            ca_bundle: self.ca_bundle.or(base.ca_bundle),
            local_mode: self.local_mode.or(base.local_mode),
            resource_arn: self.resource_arn.or(base.resource_arn),
            memory_mb: self.memory_mb.or(base.memory_mb),
            buffer: self.buffer.or(base.buffer),
            traces: self.traces.or(base.traces),
            udp_address: self.udp_address.or(base.udp_address),
            tcp_address: self.tcp_address.or(base.tcp_address),
            concurrency: self.concurrency.or(base.concurrency),
            batch_max_documents: self.batch_max_documents.or(base.batch_max_documents),
            flush_interval: self.flush_interval.or(base.flush_interval),
            receive_buffer_bytes: self.receive_buffer_bytes.or(base.receive_buffer_bytes),
            telemetry_records: self.telemetry_records.or(base.telemetry_records),
            retry_max_duration: self.retry_max_duration.or(base.retry_max_duration),
            telemetry_address: self.telemetry_address.or(base.telemetry_address),
            log_level: self.log_level.or(base.log_level),
            log_file: self.log_file.or(base.log_file),
            shutdown_timeout: self.shutdown_timeout.or(base.shutdown_timeout),
            logs: self.logs.or(base.logs),
            emf: self.emf.or(base.emf),
            statsd: self.statsd.or(base.statsd),
            host_metrics: self.host_metrics.or(base.host_metrics),
        }
    }

    /// Fills in the defaults. Traces run unless a source said otherwise.
    pub(crate) fn resolve(self) -> Config {
        let xray = self.traces.unwrap_or(true).then(|| self.xray());
        Config {
            aws: AwsConfig {
                region: self.region,
                endpoint: self.endpoint,
                role_arn: self.role_arn,
                proxy_address: self.proxy_address,
                no_verify_ssl: self.no_verify_ssl.unwrap_or(false),
                ca_bundle: self.ca_bundle,
                local_mode: self.local_mode.unwrap_or(false),
                resource_arn: self.resource_arn,
            },
            buffer: BufferConfig {
                memory_mb: self.memory_mb,
                ..self.buffer.unwrap_or_default()
            },
            xray,
            agent: AgentConfig {
                telemetry_address: self
                    .telemetry_address
                    .unwrap_or(Some(DEFAULT_TELEMETRY_ADDRESS)),
                log_level: self.log_level.unwrap_or(DEFAULT_LOG_LEVEL),
                log_file: self.log_file,
                shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            },
            logs: self.logs,
            emf: self.emf,
            statsd: self.statsd,
            host_metrics: self.host_metrics,
        }
    }

    /// The X-Ray role's settings with defaults filled in.
    fn xray(&self) -> XrayConfig {
        XrayConfig {
            udp_address: self.udp_address.unwrap_or(DEFAULT_XRAY_ADDRESS),
            tcp_address: self.tcp_address.unwrap_or(DEFAULT_XRAY_ADDRESS),
            concurrency: self.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            batch_max_documents: self
                .batch_max_documents
                .unwrap_or(DEFAULT_BATCH_MAX_DOCUMENTS),
            flush_interval: self.flush_interval.unwrap_or(DEFAULT_FLUSH_INTERVAL),
            receive_buffer_bytes: self
                .receive_buffer_bytes
                .unwrap_or(DEFAULT_RECEIVE_BUFFER_BYTES),
            telemetry_records: self.telemetry_records.unwrap_or(true),
            retry_max_duration: self
                .retry_max_duration
                .unwrap_or(DEFAULT_RETRY_MAX_DURATION),
        }
    }
}

/// Runs `f` on the value when there is one.
pub(crate) fn check<T, U>(
    value: &Option<T>,
    f: impl FnOnce(&T) -> Result<U, ConfigError>,
) -> Result<Option<U>, ConfigError> {
    value.as_ref().map(f).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_prefers_the_top_layer_per_field() {
        let top = Layer {
            region: Some("eu-west-1".into()),
            ..Layer::default()
        };
        let base = Layer {
            region: Some("us-east-1".into()),
            concurrency: Some(4),
            ..Layer::default()
        };
        let merged = top.over(base);
        assert_eq!(merged.region.as_deref(), Some("eu-west-1"));
        assert_eq!(merged.concurrency, Some(4));
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let args = RunArgs {
            buffer_memory_mb: Some(2),
            ..RunArgs::default()
        };
        let e = Layer::from_args(&args).unwrap_err().to_string();
        assert!(
            e.starts_with("config: `-m/--buffer-memory` = 2 is too small"),
            "{e}"
        );
        let args = RunArgs {
            role_arn: Some("nope".into()),
            ..RunArgs::default()
        };
        let e = Layer::from_args(&args).unwrap_err().to_string();
        assert!(e.contains("`-r/--role-arn` = \"nope\""), "{e}");
    }

    #[test]
    fn bind_flags_turn_traces_on() {
        let args = RunArgs {
            bind_tcp: Some("127.0.0.1:3000".parse().unwrap()),
            ..RunArgs::default()
        };
        assert_eq!(Layer::from_args(&args).unwrap().traces, Some(true));
        assert_eq!(Layer::from_args(&RunArgs::default()).unwrap().traces, None);
    }
}
