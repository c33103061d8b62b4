//! The common case of `_aws`, read into typed structs that borrow from the line.
//!
//! Materialising `_aws` and every member it names as `serde_json::Value` trees (a map, a
//! `String` per key and per string) was the largest cost of an EMF document. Here `_aws` is
//! deserialised into structs of borrowed strings and the named root members straight into the
//! type the rule wants (a string, a number, an array of numbers). The typed reading is
//! stricter than the rules in one way only: a member of an unexpected type fails
//! deserialisation. Such a document is handed back ([`Checked::Fallback`]) to the `Value`
//! reading in `parse.rs`, which names the exact rule it breaks; so both readings always agree
//! (a property test holds them to it), and the typed one only returns a rule it checked in the
//! same order as the general one.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::parse::{
    Directive, EmfDocument, Invalid, Members, Metric, MAX_DIMENSION_KEYS,
    MAX_METRICS_PER_DIRECTIVE, MAX_VALUES_PER_METRIC,
};
use crate::pipeline::Unit;

/// What the typed reading found.
pub(super) enum Checked<T> {
    /// A valid document.
    Valid(T),
    /// A document that breaks `Invalid`, found in the general reading's order.
    Invalid(Invalid),
    /// Something had a type the typed reading does not take: read it the general way.
    Fallback,
}

/// A valid document's routing facts, borrowed from the line: all that `logs` mode needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<'a> {
    /// `_aws.Timestamp`, epoch milliseconds.
    pub timestamp_ms: i64,
    /// `_aws.LogGroupName`, when present and not empty.
    pub log_group: Option<Cow<'a, str>>,
    /// `_aws.LogStreamName`, when present and not empty.
    pub log_stream: Option<Cow<'a, str>>,
}

/// A JSON string, borrowed when it has no escapes. (`Cow<str>` itself always copies when
/// deserialised through an `Option` or a `Vec`.)
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor(std::marker::PhantomData))
    }
}

struct StrVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for StrVisitor<'a> {
    type Value = Str<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }
}

#[derive(Deserialize)]
struct Aws<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: f64,
    #[serde(rename = "LogGroupName", default, borrow)]
    log_group: Option<Str<'a>>,
    #[serde(rename = "LogStreamName", default, borrow)]
    log_stream: Option<Str<'a>>,
    #[serde(rename = "CloudWatchMetrics", borrow)]
    directives: Vec<DirectiveDef<'a>>,
}

#[derive(Deserialize)]
struct DirectiveDef<'a> {
    #[serde(rename = "Namespace", borrow)]
    namespace: Str<'a>,
    // `default` without `Option`: a `null` fails and falls back, as the rules refuse it.
    #[serde(rename = "Dimensions", default, borrow)]
    dimensions: Vec<Vec<Str<'a>>>,
    #[serde(rename = "Metrics", borrow)]
    metrics: Vec<MetricDef<'a>>,
}

#[derive(Deserialize)]
struct MetricDef<'a> {
    #[serde(rename = "Name", borrow)]
    name: Str<'a>,
    #[serde(rename = "Unit", default, borrow)]
    unit: Option<Str<'a>>,
    #[serde(rename = "StorageResolution", default, borrow)]
    storage_resolution: Option<&'a RawValue>,
}

/// Validates the document whose `_aws` member is `aws`; with `keep`, also builds the owned
/// [`EmfDocument`] (metric extraction needs it; routing a log event does not).
pub(super) fn check<'a>(
    root: &Members<'a>,
    aws: &'a RawValue,
    keep: bool,
) -> Checked<(Summary<'a>, Option<EmfDocument>)> {
    let Ok(aws) = serde_json::from_str::<Aws<'a>>(aws.get()) else {
        return Checked::Fallback;
    };
    let t = aws.timestamp;
    if !(0.0..1e15).contains(&t) {
        return Checked::Invalid(Invalid::Timestamp);
    }
    let mut directives = Vec::new();
    for def in &aws.directives {
        match directive(root, def, keep) {
            Checked::Valid(d) => directives.extend(d),
            Checked::Invalid(reason) => return Checked::Invalid(reason),
            Checked::Fallback => return Checked::Fallback,
        }
    }
    let name = |s: Option<Str<'a>>| s.map(|s| s.0).filter(|s| !s.is_empty());
    let summary = Summary {
        timestamp_ms: t as i64,
        log_group: name(aws.log_group),
        log_stream: name(aws.log_stream),
    };
    let doc = keep.then(|| EmfDocument {
        timestamp_ms: summary.timestamp_ms,
        log_group: summary.log_group.as_deref().map(str::to_owned),
        log_stream: summary.log_stream.as_deref().map(str::to_owned),
        directives,
    });
    Checked::Valid((summary, doc))
}

/// One directive, checked in the general reading's order: namespace, metric count, dimension
/// sets, metrics.
fn directive(root: &Members<'_>, def: &DirectiveDef<'_>, keep: bool) -> Checked<Option<Directive>> {
    let namespace = &def.namespace.0;
    if namespace.is_empty() || namespace.chars().count() > 255 {
        return Checked::Invalid(Invalid::Namespace);
    }
    if def.metrics.len() > MAX_METRICS_PER_DIRECTIVE {
        return Checked::Invalid(Invalid::TooManyMetrics(def.metrics.len()));
    }
    let mut dimension_sets = Vec::new();
    for set in &def.dimensions {
        if set.len() > MAX_DIMENSION_KEYS {
            return Checked::Invalid(Invalid::TooManyDimensionKeys(set.len()));
        }
        let mut pairs = Vec::new();
        for key in set {
            let value = root
                .get(&key.0)
                .and_then(|raw| serde_json::from_str::<Str<'_>>(raw.get()).ok())
                .filter(|v| !v.0.is_empty());
            match value {
                Some(v) if keep => pairs.push((key.0.to_string(), v.0.into_owned())),
                Some(_) => {}
                // Not a string: maybe no member, maybe another type; the general reading
                // says which (both are `Dimension`, but it stays the one authority).
                None => return Checked::Fallback,
            }
        }
        if keep {
            dimension_sets.push(pairs);
        }
    }
    let mut metrics = Vec::new();
    for def in &def.metrics {
        match metric(root, def) {
            Checked::Valid(m) if keep => metrics.push(m),
            Checked::Valid(_) => {}
            Checked::Invalid(reason) => return Checked::Invalid(reason),
            Checked::Fallback => return Checked::Fallback,
        }
    }
    Checked::Valid(keep.then(|| Directive {
        namespace: namespace.to_string(),
        dimension_sets,
        metrics,
    }))
}

fn metric(root: &Members<'_>, def: &MetricDef<'_>) -> Checked<Metric> {
    let name = &def.name.0;
    if name.is_empty() || name.chars().count() > 255 {
        return Checked::Invalid(Invalid::MetricName);
    }
    let unit = match &def.unit {
        None => Unit::NONE,
        Some(u) => match Unit::parse(&u.0) {
            Some(unit) => unit,
            None => return Checked::Invalid(Invalid::Unit(u.0.to_string())),
        },
    };
    let storage_resolution = match def.storage_resolution {
        None => 60,
        Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
            Ok(1) => 1,
            Ok(60) => 60,
            _ => return Checked::Invalid(Invalid::StorageResolution),
        },
    };
    let Some(values) = root.get(name).and_then(values) else {
        return Checked::Fallback;
    };
    if values.len() > MAX_VALUES_PER_METRIC {
        return Checked::Invalid(Invalid::TooManyValues(name.to_string(), values.len()));
    }
    if values.is_empty() {
        return Checked::Invalid(Invalid::MetricValue(name.to_string()));
    }
    if !values.iter().all(|v| v.is_finite()) {
        return Checked::Invalid(Invalid::NonFinite);
    }
    Checked::Valid(Metric {
        name: name.to_string(),
        unit,
        storage_resolution,
        values,
    })
}

/// A metric's root member as numbers: a number or an array of numbers; `None` for anything
/// else (the general reading names the rule).
fn values(raw: &RawValue) -> Option<Vec<f64>> {
    let text = raw.get();
    if text.starts_with('[') {
        serde_json::from_str::<Vec<f64>>(text).ok()
    } else {
        serde_json::from_str::<f64>(text).ok().map(|v| vec![v])
    }
}
