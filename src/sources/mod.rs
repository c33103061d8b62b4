//! Where data enters: sockets and (later) files. A source knows nothing of AWS; it validates
//! what it reads, takes budget for it and hands it to a pipeline, or counts why it could not.

pub mod emf;
pub mod file;
pub mod host;
pub mod statsd;
pub mod udp;
pub mod xray;
