//! [`Unit`]: the CloudWatch standard units, by name, without any AWS SDK type.
//!
//! Sources read unit names (EMF `Unit`) and pick units (StatsD, host metrics); the sink turns a
//! [`Unit`] into the SDK's `StandardUnit` by its name. This file only names units: it never
//! converts values between them.

/// The names CloudWatch accepts, as they appear on the wire.
const NAMES: [&str; 27] = [
    "None",
    "Count",
    "Percent",
    "Seconds",
    "Milliseconds",
    "Microseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
];

/// A CloudWatch standard unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit(u8);

impl Unit {
    /// `None`: no unit.
    pub const NONE: Unit = Unit(0);
    /// `Count`.
    pub const COUNT: Unit = Unit(1);
    /// `Percent`.
    pub const PERCENT: Unit = Unit(2);
    /// `Seconds`.
    pub const SECONDS: Unit = Unit(3);
    /// `Milliseconds`.
    pub const MILLISECONDS: Unit = Unit(4);
    /// `Microseconds`.
    pub const MICROSECONDS: Unit = Unit(5);
    /// `Bytes`.
    pub const BYTES: Unit = Unit(6);

    /// The unit named `name` (exact CloudWatch spelling, or any ASCII case); `None` when
    /// CloudWatch has no such unit.
    pub fn parse(name: &str) -> Option<Unit> {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i).ok())
            .map(Unit)
    }

    /// The wire name, e.g. `Bytes/Second`.
    pub fn as_str(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("None")
    }
}

impl Default for Unit {
    fn default() -> Self {
        Unit::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            assert_eq!(Unit::parse(name).map(Unit::as_str), Some(name));
        }
        assert_eq!(Unit::parse("milliseconds"), Some(Unit::MILLISECONDS));
        assert_eq!(Unit::parse("Furlongs"), None);
        assert_eq!(Unit::COUNT.as_str(), "Count");
        assert_eq!(Unit::BYTES.as_str(), "Bytes");
        assert_eq!(Unit::PERCENT.as_str(), "Percent");
    }
}
