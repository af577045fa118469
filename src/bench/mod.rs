//! Benchmarks behind `sandstep bench`. Each prints its figures next to a
//! baseline measured in the same process, so ratios hold across machines.

pub mod sandbox;
pub mod server;
pub mod workflow;
