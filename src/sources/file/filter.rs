//! `include_lines` / `exclude_lines`: whether an event is shipped.
//!
//! Pure and cheap: each list is one `RegexSet`, so an event is scanned once per list whatever
//! its length. It never counts; the tailer counts what it filters and acks it with `skip`.

use regex::RegexSet;

/// The compiled filters of one `[[logs.files]]` entry.
#[derive(Debug, Clone)]
pub struct LineFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl LineFilter {
    /// Compiles both lists; an empty list filters nothing.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, regex::Error> {
        let set = |list: &[String]| -> Result<Option<RegexSet>, regex::Error> {
            if list.is_empty() {
                Ok(None)
            } else {
                RegexSet::new(list).map(Some)
            }
        };
        Ok(LineFilter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    /// Whether some events may be filtered out (a list is set). The kept events of a read then
    /// own their text: a few kept lines must not hold a whole shared read buffer.
    pub fn filters(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// Whether `text` is shipped: some include matches (or there are none), no exclude does.
    pub fn keeps(&self, text: &str) -> bool {
        let included = self.include.as_ref().is_none_or(|s| s.is_match(text));
        included && !self.exclude.as_ref().is_some_and(|s| s.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn include_then_exclude() {
        let f = LineFilter::new(
            &strings(&["ERROR", r"\b10\.0\.0\.7\b"]),
            &strings(&["healthcheck"]),
        )
        .unwrap();
        assert!(f.keeps("ERROR boom"));
        assert!(f.keeps("GET from 10.0.0.7 ok"));
        assert!(!f.keeps("GET from 10.0.0.70 ok"));
        assert!(!f.keeps("INFO fine"));
        assert!(!f.keeps("ERROR healthcheck failed"));
        let none = LineFilter::new(&[], &[]).unwrap();
        assert!(none.keeps("anything"));
        let only_exclude = LineFilter::new(&[], &strings(&["^DEBUG"])).unwrap();
        assert!(only_exclude.keeps("INFO x") && !only_exclude.keeps("DEBUG x"));
    }
}
