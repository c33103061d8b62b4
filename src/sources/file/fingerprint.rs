//! A file's identity: device + inode + a hash of its first bytes.
//!
//! Device + inode tell a renamed file from a new one at the same path; the head hash tells a
//! reused inode (or a file truncated and rewritten in place) from the file we knew. The head is
//! up to [`HEAD_BYTES`]; a shorter file is fingerprinted on what it has and the fingerprint is
//! widened as it grows ([`Fingerprint::widen`]), so a checkpoint never depends on a file having
//! reached some size. Reads here are positional (`pread`): they never move a tailer's offset.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How many leading bytes are hashed.
pub const HEAD_BYTES: usize = 256;

/// Device and inode: the file system's name for a file, whatever its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The id in `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A file's identity as checkpoints record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Device and inode.
    pub id: FileId,
    /// How many leading bytes `head_hash` covers (≤ [`HEAD_BYTES`]).
    pub head_len: u32,
    /// xxh3 of those bytes.
    pub head_hash: u64,
}

impl Fingerprint {
    /// Fingerprints an open file.
    pub fn of(file: &File) -> io::Result<Self> {
        let id = FileId::of(&file.metadata()?);
        let head = read_head(file, HEAD_BYTES)?;
        Ok(Fingerprint {
            id,
            head_len: head.len() as u32,
            head_hash: hash(&head),
        })
    }

    /// Whether `file` is the file this fingerprint was taken of: same device and inode, and
    /// its first `head_len` bytes unchanged.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        if FileId::of(&file.metadata()?) != self.id {
            return Ok(false);
        }
        let head = read_head(file, self.head_len as usize)?;
        Ok(head.len() == self.head_len as usize && hash(&head) == self.head_hash)
    }

    /// When the head was short and the file still matches, a fingerprint over more bytes.
    /// `None` when the file no longer matches (truncated or rewritten in place).
    pub fn widen(&self, file: &File) -> io::Result<Option<Self>> {
        if !self.matches(file)? {
            return Ok(None);
        }
        if self.head_len as usize >= HEAD_BYTES {
            return Ok(Some(*self));
        }
        Self::of(file).map(Some)
    }
}

/// The copy `copytruncate` made of the file `fingerprint` was taken of, among the files beside
/// `path`: another inode that begins with the same head and holds at least `min_len` bytes.
/// The most recently modified such file wins (the newest copy). `None` when there is none.
pub fn find_copy(path: &Path, fingerprint: &Fingerprint, min_len: u64) -> Option<File> {
    let dir = path.parent()?;
    let mut best: Option<(std::time::SystemTime, File)> = None;
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.len() < min_len || FileId::of(&meta) == fingerprint.id {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        let same_head = read_head(&file, fingerprint.head_len as usize).is_ok_and(|head| {
            head.len() == fingerprint.head_len as usize && hash(&head) == fingerprint.head_hash
        });
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if same_head && best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, file));
        }
    }
    best.map(|(_, file)| file)
}

/// Up to `len` bytes from the start of `file`.
pub fn read_head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rename_keeps_identity_and_rewrite_in_place_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        std::fs::write(&a, "first line\n").unwrap();
        let fp = Fingerprint::of(&File::open(&a).unwrap()).unwrap();
        assert_eq!(fp.head_len, 11);
        let b = dir.path().join("a.log.1");
        std::fs::rename(&a, &b).unwrap();
        assert!(fp.matches(&File::open(&b).unwrap()).unwrap());
        // Same inode, other content: what inode reuse or copytruncate-and-rewrite looks like.
        std::fs::write(&b, "other line\n").unwrap();
        assert!(!fp.matches(&File::open(&b).unwrap()).unwrap());
        // Another file with the same content is another file.
        std::fs::write(&a, "first line\n").unwrap();
        assert!(!fp.matches(&File::open(&a).unwrap()).unwrap());
    }

    #[test]
    fn a_short_head_widens_as_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "ab").unwrap();
        let fp = Fingerprint::of(&File::open(&path).unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[b'x'; 400]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(fp.matches(&file).unwrap());
        let wide = fp.widen(&file).unwrap().unwrap();
        assert_eq!(wide.head_len as usize, HEAD_BYTES);
        assert_eq!(wide.id, fp.id);
        std::fs::write(&path, "zz").unwrap();
        assert_eq!(wide.widen(&File::open(&path).unwrap()).unwrap(), None);
    }
}
