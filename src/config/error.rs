//! [`ConfigError`]: every way loading the configuration can fail, one variant per kind of fault.
//!
//! Each message starts with `config:`, names the key in the spelling of the source the value came
//! from (the flag `-b/--bind`, the YAML key `Socket.UDPAddress`, the TOML key `xray.udp_address`)
//! and ends with the fix. This file owns the wording only; it never decides what is valid.

use std::path::PathBuf;

/// Why the configuration could not be loaded. Startup stops on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config: cannot read `{}`: {source}", path.display())]
    Read {
        /// The file asked for with `-c/--config`.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The cloudtail TOML file is not valid TOML or does not fit the schema.
    #[error("config: `{}`{location}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where, e.g. ` line 7, key `xray.udp_adress``; empty when unknown.
        location: String,
        /// What toml reported, e.g. "unknown field `udp_adress`, expected one of ...".
        message: String,
    },
    /// The X-Ray daemon YAML file is not valid YAML, or not a mapping of keys.
    #[error("config: `{}` is not a valid X-Ray daemon config: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What went wrong, with the line when known.
        message: String,
    },
    /// A key that the format does not have (a typo, or a key of another format or version).
    #[error("config: unknown key `{key}` in `{}`: the valid keys here are {valid}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The full key path, e.g. `Socket.UDPAdress`.
        key: String,
        /// The keys accepted at that level, back-quoted and comma-separated.
        valid: String,
    },
    /// A required key is absent.
    #[error("config: `{key}` is missing: {fix}")]
    Missing {
        /// The key, e.g. `Version`.
        key: String,
        /// How to fix it.
        fix: String,
    },
    /// A value of the wrong type, out of range or malformed.
    #[error("config: `{key}` = {value} {problem}: {fix}")]
    Invalid {
        /// The key or flag, e.g. `-b/--bind`, `Socket.UDPAddress`, `xray.udp_address`.
        key: String,
        /// The value as the user wrote it, quoted when it is a string.
        value: String,
        /// What is wrong, e.g. "is not an address".
        problem: String,
        /// How to fix it, e.g. "use IP:PORT, e.g. 127.0.0.1:2000".
        fix: String,
    },
}

impl ConfigError {
    /// A malformed or out-of-range value of `key`; `value` is shown as given.
    pub(crate) fn invalid(
        key: &str,
        value: impl Into<String>,
        problem: &str,
        fix: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            value: value.into(),
            problem: problem.to_owned(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_reads_like_the_house_style() {
        let e = ConfigError::invalid(
            "Socket.UDPAddress",
            "\"abc\"",
            "is not an address",
            "use IP:PORT, e.g. 127.0.0.1:2000",
        );
        assert_eq!(
            e.to_string(),
            "config: `Socket.UDPAddress` = \"abc\" is not an address: use IP:PORT, e.g. 127.0.0.1:2000"
        );
    }
}
