//! Reads an event's time from the start of its first line, in the configured format and zone.
//!
//! Pure: no clock is read here (the caller supplies the read time for what cannot be parsed
//! and counts it). The timestamp must open the line, after optional spaces and one `[`.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

use crate::config::{TimestampFormat, Timezone};

/// A compiled `timestamp_format` + `timezone`.
#[derive(Debug, Clone)]
pub struct TimestampParser {
    format: TimestampFormat,
    timezone: Timezone,
    /// The format carries its own offset (`%z`, `%:z`, `%#z`, `%::z`).
    has_offset: bool,
}

impl TimestampParser {
    /// A parser for `format`, reading zone-less times in `timezone`.
    pub fn new(format: TimestampFormat, timezone: Timezone) -> Self {
        let has_offset = matches!(&format, TimestampFormat::Strftime(f) if f.contains("z"));
        TimestampParser {
            format,
            timezone,
            has_offset,
        }
    }

    /// The time at the start of `line`, in milliseconds since the epoch, if it has one.
    pub fn parse_prefix(&self, line: &str) -> Option<i64> {
        let text = line.trim_start();
        let text = text.strip_prefix('[').unwrap_or(text);
        match &self.format {
            TimestampFormat::EpochSeconds => epoch(text, 1000),
            TimestampFormat::EpochMillis => epoch(text, 1),
            TimestampFormat::Strftime(format) => self.strftime(text, format),
        }
    }

    fn strftime(&self, text: &str, format: &str) -> Option<i64> {
        if self.has_offset {
            let (time, _) = DateTime::<FixedOffset>::parse_and_remainder(text, format)
                .or_else(|_| {
                    // chrono's `%z` does not take `Z`; `%#z` (its permissive form) does.
                    let permissive = format.replace("%z", "%#z");
                    DateTime::<FixedOffset>::parse_and_remainder(text, &permissive)
                })
                .ok()?;
            return Some(time.timestamp_millis());
        }
        let (naive, _) = NaiveDateTime::parse_and_remainder(text, format).ok()?;
        let millis = match self.timezone {
            Timezone::Utc => Utc.from_utc_datetime(&naive).timestamp_millis(),
            Timezone::Local => Local
                .from_local_datetime(&naive)
                .earliest()?
                .timestamp_millis(),
            Timezone::Fixed(secs) => FixedOffset::east_opt(secs)?
                .from_local_datetime(&naive)
                .single()?
                .timestamp_millis(),
        };
        Some(millis)
    }
}

/// Leading digits (and, for seconds, a fraction) as milliseconds.
fn epoch(text: &str, millis_per_unit: i64) -> Option<i64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let whole: i64 = text[..digits].parse().ok()?;
    let mut millis = whole.checked_mul(millis_per_unit)?;
    if millis_per_unit == 1000 {
        if let Some(rest) = text[digits..].strip_prefix('.') {
            let frac: String = rest
                .chars()
                .take_while(char::is_ascii_digit)
                .take(3)
                .collect();
            if !frac.is_empty() {
                let scale = 10_i64.pow(3 - frac.len() as u32);
                millis += frac.parse::<i64>().ok()? * scale;
            }
        }
    }
    Some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(format: &str, tz: Timezone) -> TimestampParser {
        TimestampParser::new(TimestampFormat::Strftime(format.into()), tz)
    }

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn offsets_in_the_text_win() {
        let p = parser("%Y-%m-%dT%H:%M:%S%.f%z", Timezone::Local);
        assert_eq!(
            p.parse_prefix("2026-01-01T00:00:00.250+0000 x"),
            Some(T0 + 250)
        );
        assert_eq!(p.parse_prefix("2026-01-01T02:00:00+02:00 x"), Some(T0));
        assert_eq!(p.parse_prefix("2026-01-01T00:00:00Z started"), Some(T0));
        assert_eq!(p.parse_prefix("[2026-01-01T00:00:00.5Z] x"), Some(T0 + 500));
        assert_eq!(p.parse_prefix("no time here"), None);
    }

    #[test]
    fn zoneless_formats_use_the_configured_zone() {
        let line = "2026-01-01 00:00:00 INFO x";
        let utc = parser("%Y-%m-%d %H:%M:%S", Timezone::Utc);
        assert_eq!(utc.parse_prefix(line), Some(T0));
        let plus2 = parser("%Y-%m-%d %H:%M:%S", Timezone::Fixed(7200));
        assert_eq!(plus2.parse_prefix(line), Some(T0 - 7_200_000));
        let local = parser("%Y-%m-%d %H:%M:%S", Timezone::Local);
        let naive =
            NaiveDateTime::parse_from_str("2026-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let expected = Local
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp_millis();
        assert_eq!(local.parse_prefix(line), Some(expected));
    }

    #[test]
    fn epoch_forms() {
        let s = TimestampParser::new(TimestampFormat::EpochSeconds, Timezone::Utc);
        assert_eq!(s.parse_prefix("1767225600 x"), Some(T0));
        assert_eq!(s.parse_prefix("1767225600.25 x"), Some(T0 + 250));
        assert_eq!(s.parse_prefix("x 1767225600"), None);
        let ms = TimestampParser::new(TimestampFormat::EpochMillis, Timezone::Utc);
        assert_eq!(ms.parse_prefix("1767225600123 x"), Some(T0 + 123));
    }
}
