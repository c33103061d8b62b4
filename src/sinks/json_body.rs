//! JSON text for the request bodies the sinks write themselves (`PutLogEvents`,
//! `PutTraceSegments`): strings and integers appended to one growing buffer.
//!
//! The SDK's JSON writer checks each byte of a string in turn and then copies the string into
//! a body that grows by doubling. Here a string is scanned eight bytes at a time for the only
//! bytes JSON requires escaped (`"`, `\` and control bytes below 0x20), and the runs between
//! them are copied whole, so a line of log text costs a few word operations and one `memcpy`.
//! The output parses to the same strings the SDK would send; it is never parsed back here.

/// Appends `text` as a quoted JSON string.
pub fn push_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    let mut from = 0;
    while let Some(at) = next_special(bytes, from) {
        out.extend_from_slice(&bytes[run_start..at]);
        push_escape(out, bytes[at]);
        run_start = at + 1;
        from = at + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Appends `value` in decimal (what a JSON number is for an integer).
pub fn push_i64(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// The escape for one byte that needs it: the short forms JSON has, else `\u00XX`.
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short: &[u8] = match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            let hex = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(short);
}

/// Whether a byte must be escaped inside a JSON string.
fn is_special(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte at or after `from` that must be escaped.
///
/// Eight bytes at a time: per byte lane, a high bit marks a control byte, a quote or a
/// backslash. A borrow can only set marks *above* a true match, so the lowest mark (the first
/// byte, as the word is read little-endian) is always exact.
fn next_special(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_lanes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let rest = bytes.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut base = from;
    for word in words.by_ref() {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let x = u64::from_le_bytes(lanes);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let quote = zero_lanes(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_lanes(x ^ (ONES * u64::from(b'\\')));
        let marks = control | quote | backslash;
        if marks != 0 {
            return Some(base + (marks.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| is_special(b))
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_string(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        push_string(&mut out, text);
        out
    }

    fn parsed(text: &str) -> String {
        serde_json::from_slice(&json_string(text)).expect("a JSON string")
    }

    #[test]
    fn plain_text_is_copied_as_is() {
        assert_eq!(json_string("abc déf ✓"), "\"abc déf ✓\"".as_bytes());
    }

    #[test]
    fn every_byte_that_needs_it_is_escaped_as_the_sdk_does() {
        let text = "q\" b\\ n\n r\r t\t bs\u{8} ff\u{c} nul\u{0} us\u{1f} del\u{7f}";
        let expected =
            r#""q\" b\\ n\n r\r t\t bs\b ff\f nul\u0000 us\u001f del"#.to_owned() + "\u{7f}\"";
        assert_eq!(json_string(text), expected.as_bytes());
        assert_eq!(parsed(text), text);
    }

    #[test]
    fn specials_are_found_in_every_lane_and_after_a_match() {
        for at in 0..20 {
            let mut text = "x".repeat(20);
            text.replace_range(at..=at, "\"");
            assert_eq!(next_special(text.as_bytes(), 0), Some(at));
            assert_eq!(parsed(&text), text);
        }
        // A control byte below a quote in the same word: the lowest one wins.
        assert_eq!(next_special(b"ab\x01\"efgh", 0), Some(2));
        assert_eq!(next_special(b"\x7f\x80\xffabcdefgh", 0), None);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for value in [0, 7, -7, 1_764_000_000_123, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_i64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips(text in any::<String>()) {
            prop_assert_eq!(parsed(&text), text);
        }

        #[test]
        fn text_dense_with_specials_round_trips(
            text in proptest::string::string_regex("[a\"\\\\\u{0}-\u{1f}é\u{7f}]{0,40}").expect("regex")
        ) {
            prop_assert_eq!(parsed(&text), text);
        }
    }
}
