//! [`Metrics`]: the Prometheus text exposition format parsed into series → value. Pure: no
//! I/O; the agent's `/metrics` is fetched by [`super::Agent::metrics`].

use std::collections::BTreeMap;

/// `/metrics` parsed: series (`name` or `name{k="v",...}` with labels sorted by key) → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Every sample line, by normalized series.
    pub series: BTreeMap<String, f64>,
}

impl Metrics {
    /// Parses the Prometheus text exposition format; comments, blank and malformed lines are
    /// skipped, timestamps ignored.
    pub fn parse(text: &str) -> Metrics {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, rest)) = split_series(line) else {
                continue;
            };
            let Some(value) = rest.split_whitespace().next().and_then(parse_value) else {
                continue;
            };
            series.insert(key, value);
        }
        Metrics { series }
    }

    /// The value of one series, exactly (`name` or `name{k="v"}`, any label order).
    pub fn get(&self, series: &str) -> Option<f64> {
        let key = split_series(series).map_or_else(|| series.to_string(), |(k, _)| k);
        self.series.get(&key).copied()
    }

    /// The sum over every series named `name`, whatever its labels; None if there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for (key, value) in &self.series {
            let series_name = key.split('{').next().unwrap_or(key);
            if series_name == name {
                *found.get_or_insert(0.0) += value;
            }
        }
        found
    }

    /// [`Metrics::get`] if `series` has labels or exists unlabelled, else [`Metrics::sum`]
    /// over its labelled series. None if the metric is absent.
    pub fn value(&self, series: &str) -> Option<f64> {
        if series.contains('{') {
            return self.get(series);
        }
        self.get(series).or_else(|| self.sum(series))
    }
}

/// `name{labels} rest` → (normalized series, rest).
fn split_series(line: &str) -> Option<(String, &str)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let rest = &line[name_end..];
    let Some(labels_src) = rest.strip_prefix('{') else {
        return Some((name.to_string(), rest));
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut chars = labels_src.char_indices().peekable();
    loop {
        while chars
            .next_if(|(_, c)| c.is_whitespace() || *c == ',')
            .is_some()
        {}
        let (start, c) = chars.next()?;
        if c == '}' {
            let rest = &labels_src[start + 1..];
            labels.sort();
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let key = if body.is_empty() {
                name.to_string()
            } else {
                format!("{name}{{{}}}", body.join(","))
            };
            return Some((key, rest));
        }
        let mut key = String::from(c);
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
            key.push(c);
        }
        chars.next()?; // '='
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}
