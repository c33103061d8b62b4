//! The X-Ray daemon's `cfg.yaml` (format Version 1 or 2), read key by key so that cloudtail can
//! replace the daemon without touching its config.
//!
//! The file is walked as a `serde_yaml::Value` rather than derived, so that an unknown key is
//! reported with its full path (`Socket.UDPAdress`) and the keys valid at that level, and a bad
//! value with its key. As in the daemon, an empty string, a `0` count or a missing key means
//! "not set"; `Version` is required. This file never reads the disk: its caller passes the text.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::layer::{check, Layer};
use super::validate::{self, quote};
use super::ConfigError;

/// The keys at the top level of the file.
const TOP_KEYS: &[&str] = &[
    "TotalBufferSizeMB",
    "Concurrency",
    "Region",
    "Endpoint",
    "Socket",
    "Logging",
    "LocalMode",
    "ResourceARN",
    "RoleARN",
    "NoVerifySSL",
    "ProxyAddress",
    "Version",
];
/// The keys under `Socket`.
const SOCKET_KEYS: &[&str] = &["UDPAddress", "TCPAddress"];
/// The keys under `Logging`.
const LOGGING_KEYS: &[&str] = &["LogRotation", "LogLevel", "LogPath"];

/// A daemon `cfg.yaml` as written, each key `None` when absent, null or empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XrayDaemonConfig {
    /// `TotalBufferSizeMB`: buffer memory in MB; `0` means 1% of memory.
    pub total_buffer_size_mb: Option<i64>,
    /// `Concurrency`: `PutTraceSegments` calls in flight; `0` means the default (8).
    pub concurrency: Option<i64>,
    /// `Region`.
    pub region: Option<String>,
    /// `Endpoint`: the X-Ray endpoint URL.
    pub endpoint: Option<String>,
    /// `Socket.UDPAddress`: where segments arrive.
    pub udp_address: Option<String>,
    /// `Socket.TCPAddress`: where the sampling proxy listens.
    pub tcp_address: Option<String>,
    /// `Logging.LogRotation`: kept as read; cloudtail never rotates its own log (use logrotate
    /// with `copytruncate`, or journald).
    pub log_rotation: Option<bool>,
    /// `Logging.LogLevel`: dev, debug, info, warn, error or prod.
    pub log_level: Option<String>,
    /// `Logging.LogPath`: the log file; stdout when unset.
    pub log_path: Option<String>,
    /// `LocalMode`: skip the EC2 metadata check.
    pub local_mode: Option<bool>,
    /// `ResourceARN`: the ARN of the resource running the daemon.
    pub resource_arn: Option<String>,
    /// `RoleARN`: a role to assume for uploads.
    pub role_arn: Option<String>,
    /// `NoVerifySSL`: accepted, not applied (certificates are always verified).
    pub no_verify_ssl: Option<bool>,
    /// `ProxyAddress`: an HTTP(S) proxy for AWS calls.
    pub proxy_address: Option<String>,
    /// `Version`: the file format, 1 or 2 (they mean the same to cloudtail).
    pub version: u8,
}

/// Parses and checks the shape of a daemon `cfg.yaml`: YAML syntax, known keys, value types,
/// `Version`. Values (addresses, region...) are checked when the file is loaded.
pub fn parse(path: &Path, text: &str) -> Result<XrayDaemonConfig, ConfigError> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let Some(top) = mapping(&root) else {
        return Err(ConfigError::Yaml {
            path: path.to_owned(),
            message: "the top level must be a mapping of keys, e.g. `Version: 2`".to_owned(),
        });
    };
    let mut cfg = XrayDaemonConfig::default();
    let mut version = None;
    for (key, value) in top {
        let name = key_name(key);
        match name.as_str() {
            "TotalBufferSizeMB" => cfg.total_buffer_size_mb = int(&name, value)?,
            "Concurrency" => cfg.concurrency = int(&name, value)?,
            "Region" => cfg.region = string(&name, value)?,
            "Endpoint" => cfg.endpoint = string(&name, value)?,
            "Socket" => read_socket(path, value, &mut cfg)?,
            "Logging" => read_logging(path, value, &mut cfg)?,
            "LocalMode" => cfg.local_mode = boolean(&name, value)?,
            "ResourceARN" => cfg.resource_arn = string(&name, value)?,
            "RoleARN" => cfg.role_arn = string(&name, value)?,
            "NoVerifySSL" => cfg.no_verify_ssl = boolean(&name, value)?,
            "ProxyAddress" => cfg.proxy_address = string(&name, value)?,
            "Version" => version = int(&name, value)?,
            _ => return Err(unknown(path, &name, TOP_KEYS)),
        }
    }
    cfg.version = check_version(version)?;
    Ok(cfg)
}

/// The keys under `Socket`.
fn read_socket(path: &Path, value: &Value, cfg: &mut XrayDaemonConfig) -> Result<(), ConfigError> {
    for (key, value) in section("Socket", value)? {
        let name = format!("Socket.{}", key_name(key));
        match name.as_str() {
            "Socket.UDPAddress" => cfg.udp_address = string(&name, value)?,
            "Socket.TCPAddress" => cfg.tcp_address = string(&name, value)?,
            _ => return Err(unknown(path, &name, SOCKET_KEYS)),
        }
    }
    Ok(())
}

/// The keys under `Logging`.
fn read_logging(path: &Path, value: &Value, cfg: &mut XrayDaemonConfig) -> Result<(), ConfigError> {
    for (key, value) in section("Logging", value)? {
        let name = format!("Logging.{}", key_name(key));
        match name.as_str() {
            "Logging.LogRotation" => cfg.log_rotation = boolean(&name, value)?,
            "Logging.LogLevel" => cfg.log_level = string(&name, value)?,
            "Logging.LogPath" => cfg.log_path = string(&name, value)?,
            _ => return Err(unknown(path, &name, LOGGING_KEYS)),
        }
    }
    Ok(())
}

/// `Version` must be there and be 1 or 2.
fn check_version(version: Option<i64>) -> Result<u8, ConfigError> {
    match version {
        Some(1) => Ok(1),
        Some(2) => Ok(2),
        Some(other) => Err(ConfigError::invalid(
            "Version",
            other.to_string(),
            "is not a supported format version",
            "use 1 or 2 (the X-Ray daemon's cfg.yaml formats)",
        )),
        None => Err(ConfigError::Missing {
            key: "Version".to_owned(),
            fix: "add `Version: 2` (the X-Ray daemon's current cfg.yaml format)".to_owned(),
        }),
    }
}

impl XrayDaemonConfig {
    /// Checks every value and turns the file into a [`Layer`]; traces are always on.
    pub(crate) fn to_layer(&self) -> Result<Layer, ConfigError> {
        Ok(Layer {
            memory_mb: self.memory_mb()?,
            concurrency: self.concurrency()?,
            region: check(&self.region, |v| validate::region("Region", v))?,
            endpoint: check(&self.endpoint, |v| validate::endpoint("Endpoint", v))?,
            udp_address: check(&self.udp_address, |v| {
                validate::address("Socket.UDPAddress", v, "127.0.0.1:2000")
            })?,
            tcp_address: check(&self.tcp_address, |v| {
                validate::address("Socket.TCPAddress", v, "127.0.0.1:2000")
            })?,
            log_level: check(&self.log_level, |v| {
                validate::log_level("Logging.LogLevel", v)
            })?,
            log_file: self.log_path.as_ref().map(PathBuf::from),
            local_mode: self.local_mode,
            resource_arn: self.resource_arn.clone(),
            role_arn: check(&self.role_arn, |v| validate::role_arn("RoleARN", v))?,
            no_verify_ssl: self.no_verify_ssl,
            proxy_address: self.proxy_address.clone(),
            traces: Some(true),
            ..Layer::default()
        })
    }

    /// `TotalBufferSizeMB`: 0 is "1% of memory", else at least 3.
    fn memory_mb(&self) -> Result<Option<u64>, ConfigError> {
        let key = "TotalBufferSizeMB";
        match not_zero(key, self.total_buffer_size_mb)? {
            Some(mb) => validate::buffer_memory_mb(key, mb).map(Some),
            None => Ok(None),
        }
    }

    /// `Concurrency`: 0 is the default, else 1..=64.
    fn concurrency(&self) -> Result<Option<usize>, ConfigError> {
        let key = "Concurrency";
        match not_zero(key, self.concurrency)? {
            Some(n) => validate::concurrency(key, n).map(Some),
            None => Ok(None),
        }
    }
}

/// A count where 0 means "the default" (as in the daemon) and a negative number is an error.
fn not_zero(key: &str, n: Option<i64>) -> Result<Option<u64>, ConfigError> {
    match n {
        None | Some(0) => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| {
            ConfigError::invalid(key, n.to_string(), "is negative", "use 0 for the default")
        }),
    }
}

/// The entries of a mapping, or none for `null`; `None` for any other value.
fn mapping(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Mapping(m) => Some(m.iter().collect()),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// The entries of the nested mapping `key` (`Socket`, `Logging`).
fn section<'v>(key: &str, value: &'v Value) -> Result<Vec<(&'v Value, &'v Value)>, ConfigError> {
    mapping(value).ok_or_else(|| {
        let fix = format!("indent its keys under `{key}:` on the following lines");
        ConfigError::invalid(key, show(value), "is not a mapping", fix)
    })
}

/// A key as text; non-string keys (`1: x`) are shown as YAML would print them.
fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// The error for a key not valid at its level.
fn unknown(path: &Path, key: &str, valid: &[&str]) -> ConfigError {
    let valid: Vec<String> = valid.iter().map(|k| format!("`{k}`")).collect();
    ConfigError::UnknownKey {
        path: path.to_owned(),
        key: key.to_owned(),
        valid: valid.join(", "),
    }
}

/// A string value; null or empty is "not set". Numbers and booleans are taken as their text,
/// as the daemon's YAML library does.
fn string(key: &str, value: &Value) -> Result<Option<String>, ConfigError> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            let fix = "use a quoted string";
            return Err(ConfigError::invalid(
                key,
                show(other),
                "is not a string",
                fix,
            ));
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

/// A whole number; null is "not set".
fn int(key: &str, value: &Value) -> Result<Option<i64>, ConfigError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64()),
        other => Err(ConfigError::invalid(
            key,
            show(other),
            "is not a whole number",
            "write a number without quotes, e.g. 8",
        )),
    }
}

/// A boolean; null is "not set". YAML 1.1 spellings (`yes`, `off`...) are accepted, as the
/// daemon's YAML library does.
fn boolean(key: &str, value: &Value) -> Result<Option<bool>, ConfigError> {
    let yaml11 = |s: &str| match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    };
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if yaml11(s).is_some() => Ok(yaml11(s)),
        other => Err(ConfigError::invalid(
            key,
            show(other),
            "is not a boolean",
            "use true or false",
        )),
    }
}

/// A value as an error message shows it.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Sequence(_) => "[...]".to_owned(),
        Value::Mapping(_) => "{...}".to_owned(),
        Value::Tagged(t) => format!("{} {}", t.tag, show(&t.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../config/xray-daemon-cfg.yaml");

    fn read(text: &str) -> Result<XrayDaemonConfig, ConfigError> {
        parse(Path::new("cfg.yaml"), text)
    }

    fn err(text: &str) -> String {
        match read(text).and_then(|c| c.to_layer()) {
            Ok(_) => panic!("{text:?} should fail"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_daemon_sample_reads_as_written() {
        let cfg = read(SAMPLE).unwrap();
        assert_eq!(
            cfg,
            XrayDaemonConfig {
                total_buffer_size_mb: Some(0),
                concurrency: Some(8),
                udp_address: Some("127.0.0.1:2000".into()),
                tcp_address: Some("127.0.0.1:2000".into()),
                log_rotation: Some(true),
                log_level: Some("prod".into()),
                local_mode: Some(false),
                no_verify_ssl: Some(false),
                version: 2,
                ..XrayDaemonConfig::default()
            }
        );
        let layer = cfg.to_layer().unwrap();
        assert_eq!(layer.memory_mb, None, "0 means 1% of memory");
        assert_eq!(layer.log_level, Some(super::super::LogLevel::Info));
        assert_eq!(layer.traces, Some(true));
    }

    #[test]
    fn version_must_be_1_or_2() {
        assert_eq!(read("Version: 1").unwrap().version, 1);
        assert_eq!(
            err("Version: 3"),
            "config: `Version` = 3 is not a supported format version: \
             use 1 or 2 (the X-Ray daemon's cfg.yaml formats)"
        );
        assert!(
            err("Region: us-east-1").starts_with("config: `Version` is missing: add `Version: 2`")
        );
        assert!(err("").starts_with("config: `Version` is missing"));
        assert!(err("Version: \"2\"").contains("`Version` = \"2\" is not a whole number"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_level() {
        assert_eq!(
            err("Version: 2\nSocket:\n  UDPAdress: 127.0.0.1:2000\n"),
            "config: unknown key `Socket.UDPAdress` in `cfg.yaml`: \
             the valid keys here are `UDPAddress`, `TCPAddress`"
        );
        let e = err("Version: 2\nRegoin: us-east-1\n");
        assert!(
            e.starts_with("config: unknown key `Regoin` in `cfg.yaml`"),
            "{e}"
        );
        assert!(
            e.contains("`Region`") && e.contains("`ProxyAddress`"),
            "{e}"
        );
        let e = err("Version: 2\nLogging:\n  Level: info\n");
        assert!(
            e.contains("`Logging.Level`") && e.contains("`LogLevel`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_yaml_key() {
        assert_eq!(
            err("Version: 2\nSocket:\n  UDPAddress: abc\n"),
            "config: `Socket.UDPAddress` = \"abc\" is not an address: use IP:PORT, e.g. 127.0.0.1:2000"
        );
        assert!(err("Version: 2\nConcurrency: abc")
            .contains("`Concurrency` = \"abc\" is not a whole number"));
        assert!(err("Version: 2\nConcurrency: 65").contains("`Concurrency` = 65 is out of range"));
        assert!(err("Version: 2\nConcurrency: -1").contains("`Concurrency` = -1 is negative"));
        assert!(err("Version: 2\nTotalBufferSizeMB: 2")
            .contains("`TotalBufferSizeMB` = 2 is too small"));
        assert!(err("Version: 2\nRegion: virginia")
            .contains("`Region` = \"virginia\" is not an AWS region"));
        assert!(err("Version: 2\nEndpoint: xray.aws").contains("`Endpoint` = \"xray.aws\""));
        assert!(
            err("Version: 2\nRoleARN: admin").contains("`RoleARN` = \"admin\" is not a role ARN")
        );
        assert!(
            err("Version: 2\nLogging:\n  LogLevel: loud").contains("`Logging.LogLevel` = \"loud\"")
        );
        assert!(err("Version: 2\nLocalMode: maybe")
            .contains("`LocalMode` = \"maybe\" is not a boolean"));
        assert!(err("Version: 2\nSocket: 5").contains("`Socket` = 5 is not a mapping"));
        assert!(err("Version: 2\nRegion: [a]").contains("`Region` = [...] is not a string"));
    }

    #[test]
    fn daemon_leniencies_are_kept() {
        let cfg = read("Version: 2\nLocalMode: yes\nNoVerifySSL: off\nConcurrency: 0\nLogging:\n")
            .unwrap();
        assert_eq!(cfg.local_mode, Some(true));
        assert_eq!(cfg.no_verify_ssl, Some(false));
        let layer = cfg.to_layer().unwrap();
        assert_eq!(layer.concurrency, None, "0 means the default");
        let cfg = read("Version: 2\nRegion: \"\"\nLogging:\n  LogPath: ~\n").unwrap();
        assert_eq!((cfg.region, cfg.log_path), (None, None));
    }

    #[test]
    fn not_yaml_or_not_a_mapping() {
        let e = err("- Version: 2\n");
        assert!(e.contains("the top level must be a mapping"), "{e}");
        let e = err("Version: 2\n  Region: [\n");
        assert!(
            e.starts_with("config: `cfg.yaml` is not a valid X-Ray daemon config:"),
            "{e}"
        );
        let e = err("Version: 2\nVersion: 1\n");
        assert!(e.contains("duplicate"), "{e}");
    }
}
