//! `[[logs.files.metric_filters]]`: local metric filters, the TOML schema and its checks, and
//! the resolved [`MetricFilterConfig`] the file source counts with.
//!
//! A filter counts the events of its file entry that match a regex and publishes the count as
//! a CloudWatch metric, like a CloudWatch Logs metric filter but computed before shipping (so
//! it also counts events `exclude_lines` keeps from being sent). Every error names the TOML key
//! (`logs.files[0].metric_filters[1].pattern`). No I/O: the regex is compiled only to check it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{self, quote};
use super::ConfigError;
use crate::pipeline::Unit;

/// The most dimensions a CloudWatch metric may have.
const MAX_DIMENSIONS: usize = 30;

/// `[[logs.files.metric_filters]]`: count the events that match `pattern`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilterSection {
    /// A regex (Rust syntax); an event that matches it counts once, however often it matches.
    /// Required.
    pub pattern: Option<String>,
    /// The metric name, 1 to 255 characters. Required.
    pub metric: Option<String>,
    /// The CloudWatch namespace, 1 to 255 characters, not starting with "AWS/". Required.
    pub namespace: Option<String>,
    /// The CloudWatch unit of the metric. Default "Count".
    #[serde(default = "default_unit")]
    pub unit: String,
    /// What each matching event adds to the metric. Default 1.
    #[serde(default = "default_value")]
    pub value: f64,
    /// The value published for an interval without a match. Default: unset (nothing is
    /// published then; CloudWatch shows no data rather than 0).
    pub default_value: Option<f64>,
    /// Static dimensions of the metric, `{ Name = "value" }`, at most 30. Default none.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

/// One resolved metric filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilterConfig {
    /// `pattern`: the regex an event must match to count.
    pub pattern: String,
    /// `metric`: the metric name.
    pub metric: String,
    /// `namespace`: the CloudWatch namespace.
    pub namespace: String,
    /// `unit`: default `Count`.
    pub unit: Unit,
    /// `value`: added per matching event; default 1.
    pub value: f64,
    /// `default_value`: published for an interval without a match; `None`: nothing is.
    pub default_value: Option<f64>,
    /// `dimensions`: name/value pairs, sorted by name.
    pub dimensions: Vec<(String, String)>,
}

fn default_unit() -> String {
    "Count".to_owned()
}
fn default_value() -> f64 {
    1.0
}

impl MetricFilterSection {
    /// Checks every value; `key` is the filter's TOML path.
    pub(crate) fn resolve(&self, key: &str) -> Result<MetricFilterConfig, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let pattern = required(
            &k("pattern"),
            self.pattern.as_deref(),
            "pattern = \"ERROR\"",
        )?;
        regex(&k("pattern"), pattern)?;
        let metric = required(
            &k("metric"),
            self.metric.as_deref(),
            "metric = \"ErrorCount\"",
        )?;
        name(&k("metric"), metric)?;
        let namespace = required(
            &k("namespace"),
            self.namespace.as_deref(),
            "namespace = \"App\"",
        )?;
        let namespace = super::metrics::namespace(&k("namespace"), namespace)?;
        Ok(MetricFilterConfig {
            pattern: pattern.to_owned(),
            metric: metric.to_owned(),
            namespace,
            unit: unit(&k("unit"), &self.unit)?,
            value: finite(&k("value"), self.value)?,
            default_value: self
                .default_value
                .map(|v| finite(&k("default_value"), v))
                .transpose()?,
            dimensions: dimensions(&k("dimensions"), &self.dimensions)?,
        })
    }
}

/// `logs.metric_filter_interval`: 1 s to 1 h.
pub(crate) fn interval(key: &str, text: &str) -> Result<Duration, ConfigError> {
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

fn required<'a>(key: &str, value: Option<&'a str>, example: &str) -> Result<&'a str, ConfigError> {
    value.ok_or_else(|| ConfigError::Missing {
        key: key.to_owned(),
        fix: format!("every metric filter needs it, e.g. {example}"),
    })
}

fn regex(key: &str, text: &str) -> Result<(), ConfigError> {
    regex::Regex::new(text).map(drop).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim().to_owned();
        ConfigError::invalid(
            key,
            quote(text),
            &format!("is not a valid regex ({last})"),
            "use Rust regex syntax (https://docs.rs/regex), e.g. \"ERROR\"",
        )
    })
}

/// A metric or dimension name or value: 1 to 255 characters.
fn name(key: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() || text.chars().count() > 255 {
        return Err(ConfigError::invalid(
            key,
            quote(text),
            "is not 1 to 255 characters",
            "use a short name, e.g. \"ErrorCount\"",
        ));
    }
    Ok(())
}

fn unit(key: &str, text: &str) -> Result<Unit, ConfigError> {
    Unit::parse(text).ok_or_else(|| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not a CloudWatch unit",
            "use Count, Seconds, Milliseconds, Bytes, Percent, None...",
        )
    })
}

fn finite(key: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() {
        return Ok(value);
    }
    Err(ConfigError::invalid(
        key,
        value.to_string(),
        "is not a finite number",
        "use a number such as 1 or 0.5",
    ))
}

fn dimensions(
    key: &str,
    map: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    if map.len() > MAX_DIMENSIONS {
        return Err(ConfigError::invalid(
            key,
            format!("{} dimensions", map.len()),
            "has too many dimensions",
            "use at most 30",
        ));
    }
    for (n, v) in map {
        name(&format!("{key}.{n}"), n)?;
        name(&format!("{key}.{n}"), v)?;
    }
    Ok(map.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> Result<MetricFilterConfig, ConfigError> {
        let section: MetricFilterSection = toml::from_str(text).expect("schema");
        section.resolve("logs.files[0].metric_filters[0]")
    }

    fn err(text: &str) -> String {
        filter(text).unwrap_err().to_string()
    }

    const BASE: &str = "pattern = \"ERROR\"\nmetric = \"ErrorCount\"\nnamespace = \"App\"\n";

    #[test]
    fn a_minimal_filter_gets_the_defaults() {
        let f = filter(BASE).unwrap();
        assert_eq!(f.pattern, "ERROR");
        assert_eq!(
            (f.metric.as_str(), f.namespace.as_str()),
            ("ErrorCount", "App")
        );
        assert_eq!(f.unit, Unit::parse("Count").unwrap());
        assert_eq!((f.value, f.default_value), (1.0, None));
        assert!(f.dimensions.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let f = filter(&format!(
            "{BASE}unit = \"Bytes\"\nvalue = 2\ndefault_value = 0\ndimensions = {{ Service = \"api\", Env = \"prod\" }}\n"
        ))
        .unwrap();
        assert_eq!(f.unit, Unit::BYTES);
        assert_eq!((f.value, f.default_value), (2.0, Some(0.0)));
        let dims = [
            ("Env".into(), "prod".into()),
            ("Service".into(), "api".into()),
        ];
        assert_eq!(f.dimensions, dims);
    }

    #[test]
    fn errors_name_the_key() {
        let key = "`logs.files[0].metric_filters[0]";
        let e = err("metric = \"M\"\nnamespace = \"App\"\n");
        assert!(e.contains(&format!("{key}.pattern` is missing")), "{e}");
        let e = err("pattern = \"E\"\nnamespace = \"App\"\n");
        assert!(e.contains(&format!("{key}.metric` is missing")), "{e}");
        let e = err("pattern = \"E\"\nmetric = \"M\"\n");
        assert!(e.contains(&format!("{key}.namespace` is missing")), "{e}");
        let e = err("pattern = \"(\"\nmetric = \"M\"\nnamespace = \"App\"\n");
        assert!(
            e.contains(&format!("{key}.pattern` = \"(\" is not a valid regex")),
            "{e}"
        );
        let e = err("pattern = \"E\"\nmetric = \"M\"\nnamespace = \"AWS/EC2\"\n");
        assert!(e.contains(&format!("{key}.namespace`")), "{e}");
        let e = err("pattern = \"E\"\nmetric = \"\"\nnamespace = \"App\"\n");
        assert!(e.contains(&format!("{key}.metric`")), "{e}");
        let e = err(&format!("{BASE}unit = \"Apples\"\n"));
        assert!(
            e.contains(&format!(
                "{key}.unit` = \"Apples\" is not a CloudWatch unit"
            )),
            "{e}"
        );
        let e = err(&format!("{BASE}value = nan\n"));
        assert!(e.contains(&format!("{key}.value`")), "{e}");
        let e = err(&format!("{BASE}dimensions = {{ Service = \"\" }}\n"));
        assert!(e.contains(&format!("{key}.dimensions.Service`")), "{e}");
        assert!(toml::from_str::<MetricFilterSection>(&format!("{BASE}filter = 1\n")).is_err());
    }

    #[test]
    fn the_interval_is_one_second_to_one_hour() {
        let key = "logs.metric_filter_interval";
        assert_eq!(interval(key, "1s").unwrap(), Duration::from_secs(1));
        assert_eq!(interval(key, "60s").unwrap(), Duration::from_secs(60));
        let e = interval(key, "500ms").unwrap_err().to_string();
        assert!(
            e.contains("`logs.metric_filter_interval` = \"500ms\" is out of range"),
            "{e}"
        );
        assert!(interval(key, "2h").is_err());
    }
}
