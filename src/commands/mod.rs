//! The subcommands behind `main.rs`'s command line.

pub mod audit;
pub mod check;
#[cfg(feature = "simulators")]
pub mod demo;
pub mod report;
pub mod schedule;
#[cfg(feature = "simulators")]
pub mod simulate;
pub mod status;
