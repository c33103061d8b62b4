//! The value checks shared by every source: flags, the daemon's YAML and cloudtail's TOML.
//!
//! Each check takes the key in the spelling of its source (`-b/--bind`, `Socket.UDPAddress`,
//! `xray.udp_address`) so that its [`ConfigError`] names what the user typed. Checks are pure:
//! no I/O, no environment, no name resolution (an address must be a literal IP:PORT).

use std::net::SocketAddr;
use std::time::Duration;

use super::{ConfigError, LogLevel};

/// The valid log level names, in the order the help text lists them.
pub(crate) const LOG_LEVELS: &str = "dev, debug, info, warn, error, prod, quiet";

/// The longest `shutdown_timeout` accepted.
const MAX_SHUTDOWN: Duration = Duration::from_secs(3600);
/// The shortest `flush_interval` accepted.
const MIN_FLUSH: Duration = Duration::from_millis(10);
/// The longest `flush_interval` accepted.
const MAX_FLUSH: Duration = Duration::from_secs(60);
/// The smallest `receive_buffer_bytes` accepted: one maximum-size datagram.
pub(crate) const MIN_RECEIVE_BUFFER_BYTES: usize = 65_536;

/// A string as it appears in an error message: in double quotes, escaped.
pub(crate) fn quote(text: &str) -> String {
    format!("{text:?}")
}

/// A literal `IP:PORT` (`[v6]:PORT` for IPv6).
pub(crate) fn address(key: &str, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not an address",
            format!("use IP:PORT, e.g. {example}"),
        )
    })
}

/// The telemetry server's address: `IP:PORT`, or `off` (`None`) to run no server.
pub(crate) fn telemetry_address(key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not an address",
            "use IP:PORT, e.g. 127.0.0.1:2020, or off",
        )
    })
}

/// An AWS region name such as `us-east-1`, `us-gov-west-1` or `cn-north-1`.
pub(crate) fn region(key: &str, text: &str) -> Result<String, ConfigError> {
    if is_region(text) {
        return Ok(text.to_owned());
    }
    Err(ConfigError::invalid(
        key,
        quote(text),
        "is not an AWS region",
        "use a region code such as us-east-1, eu-west-3 or us-gov-west-1",
    ))
}

/// `^[a-z]{2}(-[a-z]+)+-\d+$`, without a regex engine.
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    first.len() == 2
        && lower(first)
        && !middle.is_empty()
        && middle.iter().all(|m| lower(m))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// A service endpoint URL: `http://` or `https://` followed by a host.
pub(crate) fn endpoint(key: &str, text: &str) -> Result<String, ConfigError> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(text.to_owned()),
        _ => Err(ConfigError::invalid(
            key,
            quote(text),
            "is not an endpoint URL",
            "use http:// or https:// and a host, e.g. https://xray.us-east-1.amazonaws.com",
        )),
    }
}

/// An IAM role ARN: starts with `arn:`.
pub(crate) fn role_arn(key: &str, text: &str) -> Result<String, ConfigError> {
    if text.starts_with("arn:") {
        return Ok(text.to_owned());
    }
    Err(ConfigError::invalid(
        key,
        quote(text),
        "is not a role ARN",
        "use the role's full ARN, e.g. arn:aws:iam::123456789012:role/xray-writer",
    ))
}

/// One of the daemon's log levels, or `quiet`.
pub(crate) fn log_level(key: &str, text: &str) -> Result<LogLevel, ConfigError> {
    LogLevel::parse(text).ok_or_else(|| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not a log level",
            format!("use one of {LOG_LEVELS}"),
        )
    })
}

/// A humantime duration such as `10s`, `500ms` or `1m 30s`.
pub(crate) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|_| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not a duration",
            "use a number and a unit, e.g. \"500ms\", \"10s\" or \"1m 30s\"",
        )
    })
}

/// The buffer memory budget in MB: at least 3.
pub(crate) fn buffer_memory_mb(key: &str, mb: u64) -> Result<u64, ConfigError> {
    if mb >= 3 {
        return Ok(mb);
    }
    Err(ConfigError::invalid(
        key,
        mb.to_string(),
        "is too small",
        "use at least 3 (MB), or leave it unset for 1% of the memory limit",
    ))
}

/// `PutTraceSegments` calls in flight: 1..=64.
pub(crate) fn concurrency(key: &str, n: u64) -> Result<usize, ConfigError> {
    in_range(key, n, 1, 64, "use a number of calls from 1 to 64, e.g. 8")
}

/// Documents per `PutTraceSegments` call: 1..=50, the API's limit.
pub(crate) fn batch_max_documents(key: &str, n: u64) -> Result<usize, ConfigError> {
    in_range(key, n, 1, 50, "use 1 to 50 (the API's limit per call)")
}

/// SO_RCVBUF: at least one maximum-size datagram.
pub(crate) fn receive_buffer_bytes(key: &str, n: u64) -> Result<usize, ConfigError> {
    let fix = format!("use at least {MIN_RECEIVE_BUFFER_BYTES} bytes, e.g. 4194304 (4 MiB)");
    in_range(key, n, MIN_RECEIVE_BUFFER_BYTES as u64, u64::MAX, &fix)
}

/// An integer within `min..=max`, as a `usize`.
fn in_range(key: &str, n: u64, min: u64, max: u64, fix: &str) -> Result<usize, ConfigError> {
    match usize::try_from(n) {
        Ok(v) if (min..=max).contains(&n) => Ok(v),
        _ => Err(ConfigError::invalid(
            key,
            n.to_string(),
            "is out of range",
            fix,
        )),
    }
}

/// How long a partly full batch waits: 10 ms..=60 s.
pub(crate) fn flush_interval(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if (MIN_FLUSH..=MAX_FLUSH).contains(&d) {
        return Ok(d);
    }
    Err(ConfigError::invalid(
        key,
        show_duration(d),
        "is out of range",
        "use 10ms to 60s, e.g. \"1s\"",
    ))
}

/// How long SIGTERM waits for queued data: more than 0, at most 1 hour.
pub(crate) fn shutdown_timeout(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if !d.is_zero() && d <= MAX_SHUTDOWN {
        return Ok(d);
    }
    Err(ConfigError::invalid(
        key,
        show_duration(d),
        "is out of range",
        "use more than 0 and at most 1h, e.g. \"10s\"",
    ))
}

/// A duration as an error message shows it, e.g. `"1m 30s"`.
fn show_duration(d: Duration) -> String {
    quote(&humantime::format_duration(d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_the_aws_pattern() {
        for ok in ["us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-2"] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "useast-1",
            "US-EAST-1",
            "us--1",
            "us-east-",
            "u-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn address_error_names_key_value_and_fix() {
        let e = address("Socket.UDPAddress", "abc", "127.0.0.1:2000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config: `Socket.UDPAddress` = \"abc\" is not an address: use IP:PORT, e.g. 127.0.0.1:2000"
        );
        assert!(address("k", "[::1]:2000", "x").is_ok());
    }

    #[test]
    fn telemetry_address_accepts_off() {
        assert_eq!(telemetry_address("k", "off").unwrap(), None);
        assert_eq!(
            telemetry_address("k", "0.0.0.0:9").unwrap(),
            Some("0.0.0.0:9".parse().unwrap())
        );
        assert!(telemetry_address("k", "on").is_err());
    }

    #[test]
    fn endpoint_needs_a_scheme_and_a_host() {
        assert!(endpoint("k", "http://localhost:4566").is_ok());
        assert!(endpoint("k", "https://xray.us-east-1.amazonaws.com").is_ok());
        for bad in ["localhost:4566", "https://", "ftp://x"] {
            assert!(endpoint("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_inclusive() {
        assert!(concurrency("k", 1).is_ok() && concurrency("k", 64).is_ok());
        assert!(concurrency("k", 0).is_err() && concurrency("k", 65).is_err());
        assert!(batch_max_documents("k", 50).is_ok() && batch_max_documents("k", 51).is_err());
        assert!(buffer_memory_mb("k", 3).is_ok() && buffer_memory_mb("k", 2).is_err());
        assert!(receive_buffer_bytes("k", 65_535).is_err());
        let ms = Duration::from_millis;
        assert!(flush_interval("k", ms(10)).is_ok() && flush_interval("k", ms(9)).is_err());
        assert!(flush_interval("k", ms(60_000)).is_ok());
        assert!(flush_interval("k", ms(60_001)).is_err());
        assert!(shutdown_timeout("k", ms(0)).is_err());
        assert!(shutdown_timeout("k", ms(3_600_000)).is_ok());
        assert!(shutdown_timeout("k", ms(3_600_001)).is_err());
    }

    #[test]
    fn out_of_range_names_the_value() {
        let e = shutdown_timeout("agent.shutdown_timeout", Duration::from_secs(7200)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config: `agent.shutdown_timeout` = \"2h\" is out of range: \
             use more than 0 and at most 1h, e.g. \"10s\""
        );
    }

    #[test]
    fn log_levels_and_role_arns() {
        assert_eq!(log_level("k", "prod").unwrap(), LogLevel::Info);
        assert!(log_level("k", "verbose").is_err());
        assert!(role_arn("k", "arn:aws:iam::1:role/x").is_ok());
        assert!(role_arn("k", "role/x").is_err());
    }
}
