//! Newline framing for the EMF TCP port, in a buffer that never holds more than one maximum
//! line.
//!
//! A client keeps its connection open and writes one document per line. The buffer starts at
//! 64 KiB, so that one read brings in many documents to hand on together, and grows (doubling)
//! only as far as the longest line seen, and at most to `max_line + 1` bytes: a line longer than that is [`Next::TooLong`] and the caller closes the connection,
//! so a client sending endless bytes without a newline costs bounded memory. Bytes are
//! scanned once. Pure bookkeeping: the caller does the reads.

use std::ops::Range;

const INITIAL_BYTES: usize = 64 * 1024;

/// What the buffer holds next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A complete line (without `\n` or a trailing `\r`), as a range for [`LineBuffer::line`].
    Line(Range<usize>),
    /// No complete line yet: read more into [`LineBuffer::space`].
    NeedMore,
    /// More than `max_line` bytes without a newline.
    TooLong,
}

/// Bytes read from a stream, cut into lines.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scanned: usize,
    max_line: usize,
}

impl LineBuffer {
    /// A buffer for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: vec![0; INITIAL_BYTES.min(max_line + 1)],
            start: 0,
            end: 0,
            scanned: 0,
            max_line,
        }
    }

    /// The next complete line, or why there is none.
    pub fn next_line(&mut self) -> Next {
        let unscanned = &self.buf[self.scanned..self.end];
        match unscanned.iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let newline = self.scanned + offset;
                let mut line_end = newline;
                if line_end > self.start && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                let line = self.start..line_end;
                self.start = newline + 1;
                self.scanned = self.start;
                if line.len() > self.max_line {
                    return Next::TooLong;
                }
                Next::Line(line)
            }
            None => {
                self.scanned = self.end;
                if self.end - self.start > self.max_line {
                    Next::TooLong
                } else {
                    Next::NeedMore
                }
            }
        }
    }

    /// The bytes of a line [`LineBuffer::next_line`] returned (valid until the next
    /// [`LineBuffer::space`]).
    pub fn line(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Room to read into: moves the partial line to the front and grows the buffer if it is
    /// full, up to `max_line + 1` bytes. Never empty while [`Next::NeedMore`] is the state.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        let limit = self.max_line + 1;
        if self.end == self.buf.len() && self.buf.len() < limit {
            let grown = (self.buf.len() * 2).clamp(INITIAL_BYTES.min(limit), limit);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`LineBuffer::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The unterminated last line, at end of stream (the client closed without a newline).
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(buffer: &mut LineBuffer, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let space = buffer.space();
            let n = space.len().min(rest.len());
            assert!(n > 0, "no space");
            space[..n].copy_from_slice(&rest[..n]);
            buffer.filled(n);
            rest = &rest[n..];
        }
    }

    fn lines(buffer: &mut LineBuffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Next::Line(r) = buffer.next_line() {
            out.push(String::from_utf8_lossy(buffer.line(r)).into_owned());
        }
        out
    }

    #[test]
    fn lines_split_across_reads() {
        let mut b = LineBuffer::new(100);
        feed(&mut b, b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(lines(&mut b), ["{\"a\":1}"]);
        feed(&mut b, b":2}\n\n{\"c\":3}");
        assert_eq!(lines(&mut b), ["{\"b\":2}", ""]);
        assert_eq!(b.rest(), b"{\"c\":3}");
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_one_more_byte_does_not() {
        let mut b = LineBuffer::new(10);
        feed(&mut b, b"0123456789\n");
        assert_eq!(lines(&mut b), ["0123456789"]);
        let mut b = LineBuffer::new(10);
        feed(&mut b, b"0123456789A");
        assert_eq!(b.next_line(), Next::TooLong);
    }

    #[test]
    fn endless_bytes_without_newline_stay_bounded() {
        let max = 100_000;
        let mut b = LineBuffer::new(max);
        let mut total = 0;
        loop {
            assert_eq!(b.next_line(), Next::NeedMore);
            let space = b.space();
            assert!(!space.is_empty());
            let n = space.len().min(4096);
            space[..n].fill(b'x');
            b.filled(n);
            total += n;
            if b.next_line() == Next::TooLong {
                break;
            }
            assert!(total <= max + 1, "read past the limit");
        }
        assert!(b.capacity() <= max + 1, "{}", b.capacity());
    }
}
