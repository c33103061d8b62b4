//! cloudtail: one small agent beside an application that ships its traces (an AWS X-Ray
//! daemon drop-in), and later its log files and metrics, to AWS through bounded, batching
//! pipelines.
//!
//! The binary (`main.rs`) parses the command line and the config file and calls [`run`]; this
//! library never reads argv. Data flows `sources → pipeline → sinks`; `agent` wires them;
//! `config` and `telemetry` sit below everything.

#![deny(missing_docs)]

pub mod agent;
pub mod aws;
pub mod cli;
pub mod config;
pub mod memory;
pub mod metadata;
pub mod pipeline;
pub mod placeholders;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod xray_proxy;

pub use agent::{run, RunError};
