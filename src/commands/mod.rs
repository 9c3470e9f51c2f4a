//! The subcommands behind `main.rs`'s command line.

pub mod check;
pub mod demo;
pub mod report;
pub mod schedule;
pub mod simulate;
pub mod status;
