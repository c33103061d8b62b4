//! The spill's record format: one record is `magic (4) | length (4, LE) | xxh3 (8, LE) |
//! payload`, the hash seeded with the length so a flipped length bit is caught too.
//!
//! Pure functions over bytes already read: no file handles here. A record that does not check
//! out is never trusted; the magic lets a reader find the next good record after a corrupt one
//! (`spill.rs` scans for it).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Marks the start of every record ("CTS1").
pub const MAGIC: [u8; 4] = *b"CTS1";
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 16;
/// The largest payload a record may carry (a 1 MB EMF document, escaped inside its spill
/// record, is at most about twice that); a larger length is corruption, not data.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

/// `payload` as one record, appended to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&xxh3_64_with_seed(payload, u64::from(len)).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A header that checks out on its own: the payload's length and expected hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes after the header.
    pub len: usize,
    hash: u64,
}

/// Reads a header; `None` if the magic is wrong or the length impossible.
pub fn header(bytes: &[u8; HEADER_BYTES]) -> Option<Header> {
    if bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let mut hash = [0u8; 8];
    hash.copy_from_slice(&bytes[8..16]);
    Some(Header {
        len,
        hash: u64::from_le_bytes(hash),
    })
}

impl Header {
    /// Whether `payload` is what this header announced.
    pub fn matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.len && xxh3_64_with_seed(payload, self.len as u64) == self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(record: &[u8]) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h.copy_from_slice(&record[..HEADER_BYTES]);
        h
    }

    #[test]
    fn a_record_reads_back_and_a_flipped_bit_does_not() {
        let mut record = Vec::new();
        encode(b"hello", &mut record);
        assert_eq!(record.len(), HEADER_BYTES + 5);
        let h = header(&head(&record)).expect("header");
        assert_eq!(h.len, 5);
        assert!(h.matches(&record[HEADER_BYTES..]));
        let mut flipped = record.clone();
        flipped[HEADER_BYTES + 1] ^= 1;
        assert!(!h.matches(&flipped[HEADER_BYTES..]));
        let mut bad_len = record.clone();
        bad_len[4] = 4;
        let h = header(&head(&bad_len)).expect("still a header");
        assert!(!h.matches(&bad_len[HEADER_BYTES..HEADER_BYTES + 4]));
        let mut bad_magic = record;
        bad_magic[0] = b'X';
        assert_eq!(header(&head(&bad_magic)), None);
    }
}
