//! The agent's configuration: what the user asked for, resolved into runtime values.
//!
//! Three inputs feed it, in this order of precedence: command-line flags (the X-Ray daemon's and
//! cloudtail's own), one config file (a cloudtail TOML file or an X-Ray daemon `cfg.yaml`), and
//! defaults. The AWS SDK environment (`AWS_REGION`, `AWS_ENDPOINT_URL`...) is read by `aws.rs`,
//! below both. Loading is pure: it reads no environment and opens no socket, so every rule here
//! is unit-tested; a bad value becomes a [`ConfigError`] that names the key and the fix.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::RunArgs;

mod buffer;
mod error;
pub mod file;
mod layer;
pub mod logs;
mod logs_file;
mod metric_filter;
pub mod metrics;
mod validate;
pub mod xray_yaml;

pub use buffer::BufferConfig;
pub use error::ConfigError;
use layer::Layer;
pub use logs::{
    Encoding, GroupClass, LogFileConfig, LogsConfig, MetricFilterConfig, MultilineStart, NameKind,
    NamePart, NameTemplate, Placeholder, StartAt, TimestampFormat, Timezone, MAX_NAME_LEN,
};
pub use metrics::{EmfConfig, EmfMode, HostCollector, HostMetricsConfig, StatsdConfig};

/// Where the X-Ray role listens by default, UDP and TCP: 127.0.0.1:2000, as the daemon.
pub const DEFAULT_XRAY_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2000));
/// Where `/metrics` and `/healthz` are served by default, and where `status` asks: 127.0.0.1:2020.
pub const DEFAULT_TELEMETRY_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2020));
/// `PutTraceSegments` calls in flight by default: 8, as the daemon.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Documents per `PutTraceSegments` call by default: 50, the API's maximum.
pub const DEFAULT_BATCH_MAX_DOCUMENTS: usize = 50;
/// How long a partly full batch waits by default: 1 s, as the daemon.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// SO_RCVBUF asked of the kernel by default: 4 MiB.
pub const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long a failing batch is retried by default: 10 minutes.
pub const DEFAULT_RETRY_MAX_DURATION: Duration = Duration::from_secs(600);
/// How long SIGTERM waits for queued data by default: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The log level by default: `info` (the daemon's `prod`).
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;

/// Everything the agent needs to start, after flags, file and defaults were merged and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where and how to reach AWS.
    pub aws: AwsConfig,
    /// The memory budget shared by the pipelines.
    pub buffer: BufferConfig,
    /// The X-Ray daemon role; `None` when the config file enables no traces.
    pub xray: Option<XrayConfig>,
    /// Process-wide settings: logging, telemetry server, shutdown.
    pub agent: AgentConfig,
    /// The log-file role (`[logs]` in a TOML file); `None` when no file is tailed.
    pub logs: Option<LogsConfig>,
    /// `[emf]`: Embedded Metric Format over TCP/UDP; `None` when the table is absent.
    pub emf: Option<EmfConfig>,
    /// `[statsd]`: StatsD over UDP; `None` when the table is absent.
    pub statsd: Option<StatsdConfig>,
    /// `[host_metrics]`: CPU, memory, disk, network, cgroup; `None` when the table is absent.
    pub host_metrics: Option<HostMetricsConfig>,
}

/// Where and how to reach AWS. `None` means "let the SDK's standard chain decide".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsConfig {
    /// `-n/--region`, `Region`, `[aws] region`.
    pub region: Option<String>,
    /// `--endpoint`, `Endpoint`, `[aws] endpoint`: overrides every service endpoint.
    pub endpoint: Option<String>,
    /// `-r/--role-arn`, `RoleARN`, `[aws] role_arn`: a role assumed with the base credentials.
    pub role_arn: Option<String>,
    /// `-p/--proxy-address`, `ProxyAddress`, `[aws] proxy_address`: an HTTP(S) proxy for AWS calls.
    pub proxy_address: Option<String>,
    /// `NoVerifySSL`, `[aws] no_verify_ssl`: accepted, not applied (a warning at start):
    /// certificates are always verified; `ca_bundle` trusts a private CA.
    pub no_verify_ssl: bool,
    /// `[aws] ca_bundle`: a PEM file of extra root certificates trusted for every AWS call
    /// (`AWS_CA_BUNDLE` when unset).
    pub ca_bundle: Option<PathBuf>,
    /// `-o/--local-mode`, `LocalMode`, `[aws] local_mode`: never ask EC2/ECS metadata.
    pub local_mode: bool,
    /// `-a/--resource-arn`, `ResourceARN`, `[aws] resource_arn`: reported in telemetry records.
    pub resource_arn: Option<String>,
}

/// The X-Ray daemon role: UDP segments in, `PutTraceSegments` out, TCP sampling proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct XrayConfig {
    /// `-b/--bind`, `Socket.UDPAddress`, `[xray] udp_address`; default 127.0.0.1:2000.
    pub udp_address: SocketAddr,
    /// `-t/--bind-tcp`, `Socket.TCPAddress`, `[xray] tcp_address`; default 127.0.0.1:2000.
    pub tcp_address: SocketAddr,
    /// `Concurrency`, `[xray] concurrency`: `PutTraceSegments` calls in flight; default 8.
    pub concurrency: usize,
    /// `[xray] batch_max_documents`: documents per call, 1..=50; default 50.
    pub batch_max_documents: usize,
    /// `[xray] flush_interval`: a partly full batch waits at most this long; default 1 s.
    pub flush_interval: Duration,
    /// `[xray] receive_buffer_bytes`: SO_RCVBUF asked of the kernel; default 4 MiB.
    pub receive_buffer_bytes: usize,
    /// `[xray] telemetry_records`: send `PutTelemetryRecords` every 60 s; default true.
    pub telemetry_records: bool,
    /// `[xray] retry_max_duration`: how long a failing batch is retried before it is dropped and
    /// counted; default 10 minutes.
    pub retry_max_duration: Duration,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `--telemetry-address`, `[agent] telemetry_address`: `/metrics` and `/healthz`;
    /// default 127.0.0.1:2020; `None` when set to "off".
    pub telemetry_address: Option<SocketAddr>,
    /// `-l/--log-level`, `Logging.LogLevel`, `[agent] log_level`; default `prod` (= info).
    pub log_level: LogLevel,
    /// `-f/--log-file`, `Logging.LogPath`, `[agent] log_file`; `None` logs to stdout.
    pub log_file: Option<PathBuf>,
    /// `--shutdown-timeout`, `[agent] shutdown_timeout`: how long SIGTERM waits for queued data
    /// to be sent; default 10 s.
    pub shutdown_timeout: Duration,
}

/// The daemon's log levels plus `quiet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-datagram traces (`dev`).
    Dev,
    /// `debug`.
    Debug,
    /// `info`, also spelled `prod` as in the daemon.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// Nothing at all.
    Quiet,
}

impl LogLevel {
    /// Reads a level name, in any case: `dev`, `debug`, `info`, `prod` (= `info`), `warn`,
    /// `error` or `quiet`. `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let level = match name.to_ascii_lowercase().as_str() {
            "dev" => Self::Dev,
            "debug" => Self::Debug,
            "info" | "prod" => Self::Info,
            "warn" => Self::Warn,
            "error" => Self::Error,
            "quiet" => Self::Quiet,
            _ => return None,
        };
        Some(level)
    }
}

/// A config file read from disk, tagged with its format; [`load`] parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// A cloudtail TOML file (see `config/cloudtail.toml` for every key).
    Toml {
        /// Where it was read from, for error messages.
        path: PathBuf,
        /// Its contents.
        text: String,
    },
    /// An X-Ray daemon `cfg.yaml`, Version 1 or 2.
    XrayYaml {
        /// Where it was read from, for error messages.
        path: PathBuf,
        /// Its contents.
        text: String,
    },
}

impl ConfigFile {
    /// Where the file was read from.
    pub fn path(&self) -> &Path {
        match self {
            Self::Toml { path, .. } | Self::XrayYaml { path, .. } => path,
        }
    }

    /// Tags `text` with its format: `.toml` is TOML; `.yaml` and `.yml` are the daemon's YAML;
    /// any other name is TOML if the text is valid TOML, else YAML.
    pub fn detect(path: PathBuf, text: String) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let is_toml = match ext.as_deref() {
            Some("toml") => true,
            Some("yaml" | "yml") => false,
            _ => text.parse::<toml::Table>().is_ok(),
        };
        if is_toml {
            Self::Toml { path, text }
        } else {
            Self::XrayYaml { path, text }
        }
    }
}

/// Reads the file given with `-c/--config` (or to `check-config`) and picks its format.
/// The only I/O of this module.
pub fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(ConfigFile::detect(path.to_owned(), text))
}

/// Merges the flags, the config file and the defaults (in that order of precedence) and checks
/// every value. Without a file, or with a daemon YAML, traces are on (the daemon's behaviour);
/// with a TOML file they are on iff it has an `[xray]` table or `-b`/`-t` is given.
/// Every value of every source is checked, even one that a flag overrides.
pub fn load(args: &RunArgs, file: Option<ConfigFile>) -> Result<Config, ConfigError> {
    let base = match &file {
        None => Layer {
            traces: Some(true),
            ..Layer::default()
        },
        Some(ConfigFile::XrayYaml { path, text }) => xray_yaml::parse(path, text)?.to_layer()?,
        Some(ConfigFile::Toml { path, text }) => file::parse(path, text)?.to_layer()?,
    };
    Ok(Layer::from_args(args)?.over(base).resolve())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_YAML: &str = include_str!("../../config/xray-daemon-cfg.yaml");
    const REFERENCE_TOML: &str = include_str!("../../config/cloudtail.toml");

    fn yaml(text: &str) -> Option<ConfigFile> {
        Some(ConfigFile::XrayYaml {
            path: "cfg.yaml".into(),
            text: text.into(),
        })
    }

    fn toml(text: &str) -> Option<ConfigFile> {
        Some(ConfigFile::Toml {
            path: "cloudtail.toml".into(),
            text: text.into(),
        })
    }

    fn flags(args: &[&str]) -> RunArgs {
        match crate::cli::parse(args.iter().map(|a| a.to_string())) {
            Ok(crate::cli::Command::Run(run)) => run,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    /// The agent with no config file and no flags.
    fn defaults() -> Config {
        Config {
            aws: AwsConfig::default(),
            buffer: BufferConfig::default(),
            xray: Some(XrayConfig {
                udp_address: "127.0.0.1:2000".parse().unwrap(),
                tcp_address: "127.0.0.1:2000".parse().unwrap(),
                concurrency: 8,
                batch_max_documents: 50,
                flush_interval: Duration::from_secs(1),
                receive_buffer_bytes: 4 * 1024 * 1024,
                telemetry_records: true,
                retry_max_duration: Duration::from_secs(600),
            }),
            agent: AgentConfig {
                telemetry_address: Some("127.0.0.1:2020".parse().unwrap()),
                log_level: LogLevel::Info,
                log_file: None,
                shutdown_timeout: Duration::from_secs(10),
            },
            logs: None,
            emf: None,
            statsd: None,
            host_metrics: None,
        }
    }

    #[test]
    fn no_config_runs_the_daemon_with_its_defaults() {
        assert_eq!(load(&RunArgs::default(), None).unwrap(), defaults());
    }

    #[test]
    fn the_daemon_sample_yaml_is_the_defaults() {
        assert_eq!(
            load(&RunArgs::default(), yaml(SAMPLE_YAML)).unwrap(),
            defaults()
        );
    }

    #[test]
    fn the_reference_toml_is_the_defaults() {
        assert_eq!(
            load(&RunArgs::default(), toml(REFERENCE_TOML)).unwrap(),
            defaults()
        );
    }

    #[test]
    fn flag_beats_file_beats_default_with_yaml() {
        let file = "Version: 2\nRegion: us-west-2\nConcurrency: 4\nLocalMode: true\n\
                    Socket:\n  UDPAddress: 0.0.0.0:2000\n";
        let cfg = load(&flags(&["-n", "eu-west-1", "-o=false"]), yaml(file)).unwrap();
        assert_eq!(cfg.aws.region.as_deref(), Some("eu-west-1"));
        assert!(!cfg.aws.local_mode);
        let xray = cfg.xray.unwrap();
        assert_eq!(xray.concurrency, 4);
        assert_eq!(xray.udp_address, "0.0.0.0:2000".parse().unwrap());
        assert_eq!(xray.tcp_address, DEFAULT_XRAY_ADDRESS);
        assert_eq!(xray.batch_max_documents, 50);
    }

    #[test]
    fn flag_beats_file_beats_default_with_toml() {
        let file = "[aws]\nregion = \"us-west-2\"\n[xray]\nudp_address = \"0.0.0.0:2000\"\n\
                    concurrency = 16\n[agent]\nlog_level = \"debug\"\nshutdown_timeout = \"30s\"\n";
        let args = flags(&[
            "--bind=127.0.0.1:3000",
            "-l",
            "error",
            "--telemetry-address=off",
        ]);
        let cfg = load(&args, toml(file)).unwrap();
        assert_eq!(cfg.aws.region.as_deref(), Some("us-west-2"));
        let xray = cfg.xray.unwrap();
        assert_eq!(xray.udp_address, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(xray.concurrency, 16);
        assert_eq!(xray.flush_interval, DEFAULT_FLUSH_INTERVAL);
        assert_eq!(cfg.agent.log_level, LogLevel::Error);
        assert_eq!(cfg.agent.telemetry_address, None);
        assert_eq!(cfg.agent.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn toml_enables_traces_with_an_xray_table_or_a_bind_flag() {
        let file = "[aws]\nregion = \"us-east-1\"\n";
        assert_eq!(load(&RunArgs::default(), toml(file)).unwrap().xray, None);
        let cfg = load(&flags(&["-t", "127.0.0.1:2999"]), toml(file)).unwrap();
        let xray = cfg.xray.unwrap();
        assert_eq!(xray.tcp_address, "127.0.0.1:2999".parse().unwrap());
        assert_eq!(xray.udp_address, DEFAULT_XRAY_ADDRESS);
        assert!(load(&RunArgs::default(), toml("[xray]\n"))
            .unwrap()
            .xray
            .is_some());
        // A daemon YAML always runs traces.
        assert!(load(&RunArgs::default(), yaml("Version: 1\n"))
            .unwrap()
            .xray
            .is_some());
    }

    #[test]
    fn errors_name_the_key_of_the_source_the_value_came_from() {
        let bad_flag = flags(&["--shutdown-timeout", "2h"]);
        let e = load(&bad_flag, None).unwrap_err().to_string();
        assert!(
            e.starts_with("config: `--shutdown-timeout` = \"2h\" is out of range"),
            "{e}"
        );
        let e = load(&flags(&["-m", "1"]), None).unwrap_err().to_string();
        assert!(
            e.starts_with("config: `-m/--buffer-memory` = 1 is too small"),
            "{e}"
        );
        let e = load(&flags(&["--endpoint", "localhost"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config: `--endpoint` = \"localhost\""), "{e}");
        let e = load(&flags(&["-n", "moon"]), None).unwrap_err().to_string();
        assert!(e.starts_with("config: `-n/--region` = \"moon\""), "{e}");
        // A bad file value is an error even when a flag overrides it.
        let e = load(
            &flags(&["-n", "us-east-1"]),
            yaml("Version: 2\nRegion: moon\n"),
        );
        assert!(e.unwrap_err().to_string().contains("`Region` = \"moon\""));
    }

    #[test]
    fn empty_string_flags_are_unset() {
        let cfg = load(
            &flags(&["-n", "", "-r="]),
            yaml("Version: 2\nRegion: us-west-2\n"),
        );
        assert_eq!(cfg.unwrap().aws.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn format_is_picked_by_extension_then_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            read_config_file(&path).unwrap()
        };
        assert!(matches!(
            write("a.toml", "[xray]\n"),
            ConfigFile::Toml { .. }
        ));
        assert!(matches!(
            write("a.yaml", "Version: 2\n"),
            ConfigFile::XrayYaml { .. }
        ));
        assert!(matches!(
            write("a.YML", "Version: 2\n"),
            ConfigFile::XrayYaml { .. }
        ));
        assert!(matches!(write("cfg", "[xray]\n"), ConfigFile::Toml { .. }));
        assert!(matches!(
            write("cfg2", "Version: 2\n"),
            ConfigFile::XrayYaml { .. }
        ));
        let file = write("a.conf", SAMPLE_YAML);
        assert_eq!(file.path(), dir.path().join("a.conf"));
        assert_eq!(load(&RunArgs::default(), Some(file)).unwrap(), defaults());
        let missing = dir.path().join("missing.toml");
        let e = read_config_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("config: cannot read `{}`: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn log_levels_read_in_any_case() {
        assert_eq!(LogLevel::parse("PROD"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("dev"), Some(LogLevel::Dev));
        assert_eq!(LogLevel::parse("quiet"), Some(LogLevel::Quiet));
        assert_eq!(LogLevel::parse("trace"), None);
    }
}
