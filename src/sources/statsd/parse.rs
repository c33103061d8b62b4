//! The StatsD line format, parsed without allocating: `name:value|type[|@rate][|#tag:val,...]`.
//!
//! Types: `c` (counter), `g` (gauge; `+N`/`-N` change the last value), `ms` (timer), `h`
//! (histogram), `d` (distribution), `s` (set; the value is a member name). Timers, histograms,
//! distributions and counters may pack several values (`name:1:2:3|ms`, DogStatsD style).
//! DogStatsD's container id (`|c:...`) and timestamp (`|T...`) sections are accepted and
//! ignored. Everything borrows from the datagram; a bad line is an `Err`, never a panic,
//! and this file never decides what a line means beyond its syntax.

/// What kind of metric a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `c`: summed over the interval.
    Counter,
    /// `g`: the last value wins.
    Gauge,
    /// `ms`: milliseconds, kept as a distribution.
    Timer,
    /// `h` or `d`: a distribution without unit.
    Histogram,
    /// `s`: the number of distinct members.
    Set,
}

/// One parsed line, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    /// Metric name.
    pub name: &'a str,
    /// The value text: one or more numbers separated by `:`, a signed gauge delta, or a set
    /// member. Read it with [`Line::values`], [`Line::gauge`] or as a member.
    pub value: &'a str,
    /// Metric kind.
    pub kind: Kind,
    /// Sample rate in (0, 1]; 1 when absent.
    pub rate: f64,
    /// The tag list after `#` (`k:v,k2:v2`), empty when absent.
    pub tags: &'a str,
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// No `:` after the name, or an empty name.
    #[error("no metric name")]
    Name,
    /// No `|type`, or an unknown type.
    #[error("missing or unknown type")]
    Type,
    /// A value is not a finite number (or a set member is empty).
    #[error("bad value")]
    Value,
    /// `@rate` is not a number in (0, 1].
    #[error("bad sample rate")]
    Rate,
    /// An unknown `|` section.
    #[error("unknown section")]
    Section,
}

/// A gauge update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaugeUpdate {
    /// Set the gauge.
    Set(f64),
    /// Add to the gauge's last value (`+N`, `-N`).
    Add(f64),
}

/// Parses one line (without its `\n`; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Result<Line<'_>, Malformed> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (name, rest) = line.split_once(':').ok_or(Malformed::Name)?;
    if name.is_empty() || name.contains('|') {
        return Err(Malformed::Name);
    }
    let mut sections = rest.split('|');
    let value = sections.next().unwrap_or("");
    let kind = match sections.next().ok_or(Malformed::Type)? {
        "c" => Kind::Counter,
        "g" => Kind::Gauge,
        "ms" => Kind::Timer,
        "h" | "d" => Kind::Histogram,
        "s" => Kind::Set,
        _ => return Err(Malformed::Type),
    };
    let mut parsed = Line {
        name,
        value,
        kind,
        rate: 1.0,
        tags: "",
    };
    for section in sections {
        if let Some(rate) = section.strip_prefix('@') {
            parsed.rate = rate.parse().map_err(|_| Malformed::Rate)?;
            if !(parsed.rate > 0.0 && parsed.rate <= 1.0) {
                return Err(Malformed::Rate);
            }
        } else if let Some(tags) = section.strip_prefix('#') {
            parsed.tags = tags;
        } else if !(section.starts_with("c:") || section.starts_with('T')) {
            return Err(Malformed::Section);
        }
    }
    check_value(&parsed)?;
    Ok(parsed)
}

fn check_value(line: &Line<'_>) -> Result<(), Malformed> {
    match line.kind {
        Kind::Set if line.value.is_empty() => Err(Malformed::Value),
        Kind::Set => Ok(()),
        Kind::Gauge => line.gauge().map(|_| ()),
        _ => line.values().try_for_each(|v| v.map(|_| ())),
    }
}

/// A finite number, without the `nan`/`inf` spellings Rust's parser accepts.
fn number(text: &str) -> Result<f64, Malformed> {
    let value: f64 = text.parse().map_err(|_| Malformed::Value)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Malformed::Value)
    }
}

impl<'a> Line<'a> {
    /// The numbers of a counter, timer or histogram line (several when packed with `:`).
    pub fn values(&self) -> impl Iterator<Item = Result<f64, Malformed>> + 'a {
        self.value.split(':').map(number)
    }

    /// A gauge's update: a leading sign makes it relative, as in etsy/statsd.
    pub fn gauge(&self) -> Result<GaugeUpdate, Malformed> {
        let value = number(self.value)?;
        match self.value.as_bytes().first() {
            Some(b'+' | b'-') => Ok(GaugeUpdate::Add(value)),
            _ => Ok(GaugeUpdate::Set(value)),
        }
    }
}

/// The `key:value` pairs of a tag list; tags without a value are skipped (CloudWatch needs
/// one), and so are empty keys or values.
pub fn tag_pairs(tags: &str) -> impl Iterator<Item = (&str, &str)> {
    tags.split(',')
        .filter_map(|tag| tag.split_once(':'))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Line<'_> {
        parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn every_type() {
        assert_eq!(ok("hits:1|c").kind, Kind::Counter);
        assert_eq!(ok("temp:21.5|g").kind, Kind::Gauge);
        assert_eq!(ok("latency:320|ms").kind, Kind::Timer);
        assert_eq!(ok("size:12|h").kind, Kind::Histogram);
        assert_eq!(ok("size:12|d").kind, Kind::Histogram);
        let set = ok("users:alice|s");
        assert_eq!((set.kind, set.value), (Kind::Set, "alice"));
    }

    #[test]
    fn rates_tags_and_extensions() {
        let line = ok("api.calls:2|c|@0.5|#env:prod,region:eu");
        assert_eq!(line.name, "api.calls");
        assert_eq!(line.rate, 0.5);
        assert_eq!(line.tags, "env:prod,region:eu");
        let tags: Vec<_> = tag_pairs(line.tags).collect();
        assert_eq!(tags, [("env", "prod"), ("region", "eu")]);
        let line = ok("x:1|c|#a:b|@0.1|c:abc123|T1700000000\r");
        assert_eq!((line.rate, line.tags), (0.1, "a:b"));
        let tags: Vec<_> = tag_pairs("novalue,:x,y:,k:v:w").collect();
        assert_eq!(tags, [("k", "v:w")]);
    }

    #[test]
    fn gauges_may_be_relative() {
        assert_eq!(ok("g:5|g").gauge(), Ok(GaugeUpdate::Set(5.0)));
        assert_eq!(ok("g:+5|g").gauge(), Ok(GaugeUpdate::Add(5.0)));
        assert_eq!(ok("g:-2.5|g").gauge(), Ok(GaugeUpdate::Add(-2.5)));
    }

    #[test]
    fn packed_values() {
        let values: Vec<f64> = ok("t:1:2.5:3|ms").values().map(|v| v.unwrap()).collect();
        assert_eq!(values, [1.0, 2.5, 3.0]);
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        let cases = [
            ("", Malformed::Name),
            ("noseparator", Malformed::Name),
            (":1|c", Malformed::Name),
            ("a:1", Malformed::Type),
            ("a:1|x", Malformed::Type),
            ("a:abc|c", Malformed::Value),
            ("a:|c", Malformed::Value),
            ("a:nan|g", Malformed::Value),
            ("a:inf|ms", Malformed::Value),
            ("a:1:x|ms", Malformed::Value),
            ("a:|s", Malformed::Value),
            ("a:1|c|@0", Malformed::Rate),
            ("a:1|c|@1.5", Malformed::Rate),
            ("a:1|c|@x", Malformed::Rate),
            ("a:1|c|zzz", Malformed::Section),
        ];
        for (line, reason) in cases {
            assert_eq!(parse_line(line), Err(reason), "{line:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(line in "\\PC{0,60}") {
            let mut agg = crate::sources::statsd::aggregate::Aggregator::new();
            if let Ok(parsed) = parse_line(&line) {
                proptest::prop_assert!(!parsed.name.is_empty());
                proptest::prop_assert!(parsed.rate > 0.0 && parsed.rate <= 1.0);
                proptest::prop_assert!(agg.add(&parsed).is_ok());
            }
        }

        #[test]
        fn well_formed_lines_always_parse(
            name in "[a-z][a-z0-9_.]{0,20}",
            value in -1e9f64..1e9,
            kind in proptest::sample::select(vec!["c", "g", "ms", "h", "d"]),
            rate in 0.01f64..=1.0,
        ) {
            let line = format!("{name}:{value}|{kind}|@{rate}|#env:prod");
            let parsed = parse_line(&line);
            proptest::prop_assert!(parsed.is_ok(), "{line}: {parsed:?}");
        }
    }
}
