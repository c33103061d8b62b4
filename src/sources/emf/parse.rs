//! Embedded Metric Format documents: one line of JSON checked against the EMF specification.
//!
//! A document is a JSON object whose `_aws` member holds `Timestamp` (epoch milliseconds) and
//! `CloudWatchMetrics`, a list of directives `{Namespace, Dimensions: [[key...]...], Metrics:
//! [{Name, Unit?, StorageResolution?}]}`. Dimension values and metric values are root members:
//! a dimension value is a string, a metric value a number or an array of at most 100 numbers.
//! At most 100 metrics per directive and 30 keys per dimension set. JSON without `_aws` is
//! [`Parsed::PlainJson`]; a document that breaks a rule is [`Rejected::Invalid`] with the rule.
//! Python clients write a NaN as a bare `NaN`, which is not JSON: such a document is found
//! anyway and refused as [`Invalid::NonFinite`]. Pure: no I/O, and it never decides where a
//! document goes.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use super::typed::Summary;
use super::typed::{self, Checked};
use crate::pipeline::Unit;

/// A document (one line) may be at most 1 MB.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Metrics per directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Keys per dimension set.
pub const MAX_DIMENSION_KEYS: usize = 30;
/// Values per metric.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// A line that is JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A valid EMF document.
    Emf(EmfDocument),
    /// JSON without `_aws`: a plain structured log line.
    PlainJson,
}

/// A line that is not a valid EMF document or plain JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Not JSON, or not UTF-8.
    #[error("not JSON")]
    NotJson,
    /// Longer than [`MAX_DOCUMENT_BYTES`].
    #[error("document larger than 1 MB")]
    TooLarge,
    /// Has `_aws` but breaks a rule of the specification.
    #[error("invalid EMF: {0}")]
    Invalid(#[from] Invalid),
}

/// The EMF rule a document breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// `_aws` is not an object, or a member has the wrong shape.
    #[error("`{0}` has the wrong type")]
    Shape(&'static str),
    /// `_aws.Timestamp` is missing or not a number.
    #[error("`_aws.Timestamp` is missing or not epoch milliseconds")]
    Timestamp,
    /// A namespace is empty or longer than 255 characters.
    #[error("namespace empty or too long")]
    Namespace,
    /// More than 100 metrics in one directive.
    #[error("{0} metrics in one directive (at most 100)")]
    TooManyMetrics(usize),
    /// More than 30 keys in one dimension set.
    #[error("{0} keys in one dimension set (at most 30)")]
    TooManyDimensionKeys(usize),
    /// A dimension key has no string root member.
    #[error("dimension `{0}` has no string value at the root")]
    Dimension(String),
    /// A metric name is empty or longer than 255 characters.
    #[error("metric name empty or too long")]
    MetricName,
    /// A metric has no numeric root member (or an empty array).
    #[error("metric `{0}` has no numeric value at the root")]
    MetricValue(String),
    /// A metric has more than 100 values.
    #[error("metric `{0}` has {1} values (at most 100)")]
    TooManyValues(String, usize),
    /// A value is NaN or infinite.
    #[error("a value is NaN or infinite")]
    NonFinite,
    /// An unknown unit.
    #[error("unknown unit `{0}`")]
    Unit(String),
    /// `StorageResolution` is not 1 or 60.
    #[error("storage resolution must be 1 or 60")]
    StorageResolution,
}

/// A valid EMF document, with what routing and metric extraction need.
#[derive(Debug, Clone, PartialEq)]
pub struct EmfDocument {
    /// `_aws.Timestamp`, epoch milliseconds.
    pub timestamp_ms: i64,
    /// `_aws.LogGroupName`, when present.
    pub log_group: Option<String>,
    /// `_aws.LogStreamName`, when present.
    pub log_stream: Option<String>,
    /// `_aws.CloudWatchMetrics`.
    pub directives: Vec<Directive>,
}

/// One entry of `CloudWatchMetrics`, its dimension values and metric values resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    /// `Namespace`.
    pub namespace: String,
    /// Each dimension set as (key, value) pairs, in the document's order.
    pub dimension_sets: Vec<Vec<(String, String)>>,
    /// The metrics.
    pub metrics: Vec<Metric>,
}

/// One metric of a directive with its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// `Name`.
    pub name: String,
    /// `Unit`, `None` when absent.
    pub unit: Unit,
    /// `StorageResolution`: 1 or 60 (the default).
    pub storage_resolution: u32,
    /// The root member's value(s).
    pub values: Vec<f64>,
}

/// Checks one line (without its newline).
pub fn parse(line: &[u8]) -> Result<Parsed, Rejected> {
    if line.len() > MAX_DOCUMENT_BYTES {
        return Err(Rejected::TooLarge);
    }
    let text = std::str::from_utf8(line).map_err(|_| Rejected::NotJson)?;
    parse_text(text)
}

/// Checks one line already known to be UTF-8 (so a caller that keeps the text does not check
/// it twice).
pub fn parse_text(text: &str) -> Result<Parsed, Rejected> {
    Ok(match read(text, true)? {
        Some((_, Some(doc))) => Parsed::Emf(doc),
        // `read` keeps the document when asked; should it not, the general reading builds it.
        Some((_, None)) => general(text)?.map_or(Parsed::PlainJson, Parsed::Emf),
        None => Parsed::PlainJson,
    })
}

/// A line checked for `logs` mode: the same rules as [`parse_text`], but a valid document
/// yields only what routing needs, borrowed from the line, and no metric is materialised.
pub fn check_text(text: &str) -> Result<Routed<'_>, Rejected> {
    Ok(match read(text, false)? {
        Some((summary, _)) => Routed::Emf(summary),
        None => Routed::PlainJson,
    })
}

/// A line [`check_text`] accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed<'a> {
    /// A valid EMF document's routing facts.
    Emf(Summary<'a>),
    /// JSON without `_aws`.
    PlainJson,
}

/// The routing facts and, with `keep`, the whole document of an EMF line; `None` for plain
/// JSON.
fn read(text: &str, keep: bool) -> Result<Option<(Summary<'_>, Option<EmfDocument>)>, Rejected> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Rejected::TooLarge);
    }
    // Fast path: the root's members are validated but left as raw text, and `_aws` and the
    // members it names are read into typed, borrowed values (`typed.rs`) — a log payload of
    // any size is never turned into a tree of `Value`s. Keys with escapes, and members of an
    // unexpected type, take the general path, which names the rule a document breaks.
    if let Ok(root) = serde_json::from_str::<Members>(text) {
        let Some(aws) = root.get("_aws") else {
            return Ok(None);
        };
        match typed::check(&root, aws, keep) {
            Checked::Valid(found) => return Ok(Some(found)),
            Checked::Invalid(reason) => return Err(reason.into()),
            Checked::Fallback => {}
        }
        let aws: Value = serde_json::from_str(aws.get()).map_err(|_| Rejected::NotJson)?;
        return Ok(Some(with_summary(document(&root, &aws)?)));
    }
    Ok(general(text)?.map(with_summary))
}

/// A document with its routing facts (owned: the general path built them).
fn with_summary<'a>(doc: EmfDocument) -> (Summary<'a>, Option<EmfDocument>) {
    let summary = Summary {
        timestamp_ms: doc.timestamp_ms,
        log_group: doc.log_group.clone().map(Cow::Owned),
        log_stream: doc.log_stream.clone().map(Cow::Owned),
    };
    (summary, Some(doc))
}

/// The general reading: the whole line as a `Value` tree. `None` for plain JSON.
fn general(text: &str) -> Result<Option<EmfDocument>, Rejected> {
    let root: Value = match serde_json::from_str(text) {
        Ok(root) => root,
        Err(_) => return Err(non_finite_or_not_json(text)),
    };
    let Value::Object(root) = root else {
        return Ok(None);
    };
    match root.get("_aws") {
        None => Ok(None),
        Some(aws) => Ok(Some(document(&root, aws)?)),
    }
}

/// The members of a root object as raw JSON, in document order. A document has a handful, so
/// a lookup scans them (cheaper than hashing every key); past [`INDEX_FROM_MEMBERS`] an index
/// is built so a large document still costs one hash per lookup. A repeated key: the last
/// one counts, as in a map.
pub(super) struct Members<'a> {
    list: Vec<(&'a str, &'a RawValue)>,
    index: Option<HashMap<&'a str, usize>>,
}

/// Members from which [`Members`] builds an index.
const INDEX_FROM_MEMBERS: usize = 32;

impl<'a> Members<'a> {
    pub(super) fn get(&self, key: &str) -> Option<&'a RawValue> {
        match &self.index {
            Some(index) => index.get(key).map(|&i| self.list[i].1),
            None => self.list.iter().rev().find(|(k, _)| *k == key).map(|m| m.1),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(member) = map.next_entry::<&'de str, &'de RawValue>()? {
            list.push(member);
        }
        let index = (list.len() > INDEX_FROM_MEMBERS)
            .then(|| list.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
        Ok(Members { list, index })
    }
}

/// The root members of a document, however it was parsed.
trait Root {
    /// The member `key`, materialised.
    fn member(&self, key: &str) -> Option<Cow<'_, Value>>;
}

impl Root for Map<String, Value> {
    fn member(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Borrowed)
    }
}

impl Root for Members<'_> {
    fn member(&self, key: &str) -> Option<Cow<'_, Value>> {
        let raw = self.get(key)?;
        serde_json::from_str(raw.get()).ok().map(Cow::Owned)
    }
}

/// A line serde refused: `Invalid(NonFinite)` if it is an EMF document once bare `NaN` and
/// `Infinity` literals are read as null, else `NotJson`.
fn non_finite_or_not_json(text: &str) -> Rejected {
    let Some(patched) = null_non_finite_literals(text) else {
        return Rejected::NotJson;
    };
    match serde_json::from_str::<Value>(&patched) {
        Ok(Value::Object(root)) if root.contains_key("_aws") => Invalid::NonFinite.into(),
        _ => Rejected::NotJson,
    }
}

/// `text` with `NaN`, `Infinity` and `-Infinity` outside strings replaced by `null`; `None`
/// when there is none.
fn null_non_finite_literals(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(literal) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|l| rest.starts_with(l))
        {
            out.push_str("null");
            rest = &rest[literal.len()..];
            found = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    found.then_some(out)
}

fn document(root: &impl Root, aws: &Value) -> Result<EmfDocument, Invalid> {
    let aws = aws.as_object().ok_or(Invalid::Shape("_aws"))?;
    let timestamp_ms = aws
        .get("Timestamp")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e15)
        .ok_or(Invalid::Timestamp)? as i64;
    let name = |key: &'static str| -> Result<Option<String>, Invalid> {
        match aws.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Invalid::Shape(key)),
        }
    };
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or(Invalid::Shape("_aws.CloudWatchMetrics"))?
        .iter()
        .map(|d| directive(root, d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmfDocument {
        timestamp_ms,
        log_group: name("LogGroupName")?,
        log_stream: name("LogStreamName")?,
        directives,
    })
}

fn directive(root: &impl Root, value: &Value) -> Result<Directive, Invalid> {
    let d = value
        .as_object()
        .ok_or(Invalid::Shape("CloudWatchMetrics[]"))?;
    let namespace = d
        .get("Namespace")
        .and_then(Value::as_str)
        .ok_or(Invalid::Shape("Namespace"))?;
    if namespace.is_empty() || namespace.chars().count() > 255 {
        return Err(Invalid::Namespace);
    }
    let metrics = d
        .get("Metrics")
        .and_then(Value::as_array)
        .ok_or(Invalid::Shape("Metrics"))?;
    if metrics.len() > MAX_METRICS_PER_DIRECTIVE {
        return Err(Invalid::TooManyMetrics(metrics.len()));
    }
    let dimension_sets = match d.get("Dimensions") {
        None => Vec::new(),
        Some(Value::Array(sets)) => sets
            .iter()
            .map(|set| dimension_set(root, set))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Invalid::Shape("Dimensions")),
    };
    Ok(Directive {
        namespace: namespace.to_owned(),
        dimension_sets,
        metrics: metrics
            .iter()
            .map(|m| metric(root, m))
            .collect::<Result<_, _>>()?,
    })
}

fn dimension_set(root: &impl Root, set: &Value) -> Result<Vec<(String, String)>, Invalid> {
    let keys = set.as_array().ok_or(Invalid::Shape("Dimensions[]"))?;
    if keys.len() > MAX_DIMENSION_KEYS {
        return Err(Invalid::TooManyDimensionKeys(keys.len()));
    }
    keys.iter()
        .map(|key| {
            let key = key.as_str().ok_or(Invalid::Shape("Dimensions[][]"))?;
            match root.member(key).as_deref() {
                Some(Value::String(v)) if !v.is_empty() => Ok((key.to_owned(), v.clone())),
                _ => Err(Invalid::Dimension(key.to_owned())),
            }
        })
        .collect()
}

fn metric(root: &impl Root, value: &Value) -> Result<Metric, Invalid> {
    let m = value.as_object().ok_or(Invalid::Shape("Metrics[]"))?;
    let name = m
        .get("Name")
        .and_then(Value::as_str)
        .ok_or(Invalid::Shape("Metrics[].Name"))?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Invalid::MetricName);
    }
    let unit = match m.get("Unit") {
        None | Some(Value::Null) => Unit::NONE,
        Some(Value::String(u)) => Unit::parse(u).ok_or_else(|| Invalid::Unit(u.clone()))?,
        Some(_) => return Err(Invalid::Shape("Metrics[].Unit")),
    };
    let storage_resolution = match m.get("StorageResolution") {
        None | Some(Value::Null) => 60,
        Some(v) => match v.as_u64() {
            Some(1) => 1,
            Some(60) => 60,
            _ => return Err(Invalid::StorageResolution),
        },
    };
    let missing = || Invalid::MetricValue(name.to_owned());
    let values = match root.member(name).as_deref() {
        Some(Value::Number(n)) => vec![n.as_f64().ok_or_else(missing)?],
        Some(Value::Array(items)) => {
            if items.len() > MAX_VALUES_PER_METRIC {
                return Err(Invalid::TooManyValues(name.to_owned(), items.len()));
            }
            items
                .iter()
                .map(|v| v.as_f64().ok_or_else(missing))
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => return Err(missing()),
    };
    if values.is_empty() {
        return Err(missing());
    }
    if !values.iter().all(|v| v.is_finite()) {
        return Err(Invalid::NonFinite);
    }
    Ok(Metric {
        name: name.to_owned(),
        unit,
        storage_resolution,
        values,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
