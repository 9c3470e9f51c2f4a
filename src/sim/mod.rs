//! The bundled simulators: Gladly (the source) and the WFM (the destination), both real HTTP
//! servers on loopback, used by tests, `demo`, the benchmark and by hand.

pub mod faults;
pub mod generator;
pub mod gladly;
pub mod rng;
pub mod wfm;
