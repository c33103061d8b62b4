//! placeholder
pub mod checkpoint;
pub mod filter;
pub mod fingerprint;
pub mod multiline;
pub mod names;
pub mod reader;
pub mod timestamp;
