//! Runs the poll cycle: source → validate → ring → enrich → alerts → store → publish.
//! Today: the history backfill, which runs the same cycle against the simulator's traffic
//! model in simulated time.
//!
//! May use: every module above it.

pub mod backfill;
pub mod cycle;
