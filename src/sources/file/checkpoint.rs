//! The checkpoint file: for each file (by fingerprint) the offset below which AWS accepted
//! everything, and the path it was last seen at.
//!
//! Written atomically: `checkpoints.json.tmp` is written, fsynced and renamed over
//! `checkpoints.json`, then the directory is fsynced. On start the temp file is read first
//! (if it is complete it is newer than the main file: the rename did not happen), then the
//! main file. A torn temp file is ignored. The file carries a version tag; an unknown version
//! is refused rather than misread. This file only reads and writes; it never decides offsets.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;

/// The format written now.
pub const VERSION: u32 = 1;
/// The checkpoint file's name in `state_dir`.
pub const FILE_NAME: &str = "checkpoints.json";
const TEMP_NAME: &str = "checkpoints.json.tmp";

/// How far one file was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file's identity.
    pub fingerprint: Fingerprint,
    /// Every byte below this offset was accepted by AWS (or filtered out).
    pub offset: u64,
    /// Where the file was last seen; used to find it again after a rotation while stopped.
    pub path: PathBuf,
    /// When this entry last changed or was confirmed, ms since the epoch (old ones expire).
    pub updated_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    checkpoints: Vec<Checkpoint>,
}

/// Why the checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused (permissions, disk full, missing directory).
    #[error("checkpoint file `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not a checkpoint file (damaged, or written by something else).
    #[error("checkpoint file `{}` is damaged ({message}); move it away to start over", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Written by a newer cloudtail.
    #[error("checkpoint file `{}` has version {found}, this cloudtail reads version {VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it says.
        found: u32,
    },
}

/// Reads the checkpoints in `dir`: the temp file if it is complete, else the main file, else
/// none (first start).
pub fn load(dir: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let temp = dir.join(TEMP_NAME);
    if let Ok(text) = std::fs::read(&temp) {
        if let Ok(list) = parse(&temp, &text) {
            return Ok(list);
        }
        tracing::warn!(path = %temp.display(), "Ignored a torn checkpoint temp file.");
    }
    let main = dir.join(FILE_NAME);
    match std::fs::read(&main) {
        Ok(text) => parse(&main, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CheckpointError::Io { path: main, source }),
    }
}

fn parse(path: &Path, text: &[u8]) -> Result<Vec<Checkpoint>, CheckpointError> {
    #[derive(Deserialize)]
    struct Tag {
        version: u32,
    }
    let corrupt = |e: serde_json::Error| CheckpointError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let tag: Tag = serde_json::from_slice(text).map_err(corrupt)?;
    if tag.version != VERSION {
        return Err(CheckpointError::Version {
            path: path.to_owned(),
            found: tag.version,
        });
    }
    let file: CheckpointFile = serde_json::from_slice(text).map_err(corrupt)?;
    Ok(file.checkpoints)
}

/// Writes `checkpoints` to `dir` atomically (temp, fsync, rename, fsync of the directory).
pub fn save(dir: &Path, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
    let temp = dir.join(TEMP_NAME);
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    let body = serde_json::to_vec(&CheckpointFile {
        version: VERSION,
        checkpoints: checkpoints.to_vec(),
    })
    .map_err(|e| CheckpointError::Corrupt {
        path: temp.clone(),
        message: e.to_string(),
    })?;
    let mut file = File::create(&temp).map_err(io_err(&temp))?;
    file.write_all(&body).map_err(io_err(&temp))?;
    file.sync_all().map_err(io_err(&temp))?;
    drop(file);
    let main = dir.join(FILE_NAME);
    std::fs::rename(&temp, &main).map_err(io_err(&main))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::fingerprint::FileId;

    fn checkpoint(ino: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            fingerprint: Fingerprint {
                id: FileId { dev: 1, ino },
                head_len: 3,
                head_hash: 42,
            },
            offset,
            path: PathBuf::from(format!("/var/log/{ino}.log")),
            updated_ms: 7,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), []);
        let list = vec![checkpoint(1, 10), checkpoint(2, 20)];
        save(dir.path(), &list).unwrap();
        assert_eq!(load(dir.path()).unwrap(), list);
        assert!(!dir.path().join(TEMP_NAME).exists());
    }

    #[test]
    fn a_complete_temp_file_wins_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &[checkpoint(1, 10)]).unwrap();
        // Crash after the temp file was written, before the rename.
        let newer = serde_json::to_vec(&CheckpointFile {
            version: VERSION,
            checkpoints: vec![checkpoint(1, 99)],
        })
        .unwrap();
        std::fs::write(dir.path().join(TEMP_NAME), &newer).unwrap();
        assert_eq!(load(dir.path()).unwrap(), [checkpoint(1, 99)]);
        // Crash in the middle of writing the temp file.
        std::fs::write(dir.path().join(TEMP_NAME), &newer[..newer.len() / 2]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), [checkpoint(1, 10)]);
        // Main file missing, complete temp file.
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        std::fs::write(dir.path().join(TEMP_NAME), &newer).unwrap();
        assert_eq!(load(dir.path()).unwrap(), [checkpoint(1, 99)]);
    }

    #[test]
    fn damage_and_unknown_versions_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\":2,\"checkpoints\":[]}",
        )
        .unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(CheckpointError::Version { found: 2, .. })
        ));
        std::fs::write(dir.path().join(FILE_NAME), b"garbage").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("is damaged"), "{e}");
        let missing = dir.path().join("nope");
        assert!(matches!(
            save(&missing, &[]),
            Err(CheckpointError::Io { .. })
        ));
    }
}
