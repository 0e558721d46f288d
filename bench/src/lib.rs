//! `wbd-bench`: how close Writeback Doctor runs to this machine's limit.
//!
//! One run measures, in turn: the floor (PostgreSQL COPY and RabbitMQ publisher confirms with
//! no product in the way), the product distributed (`wbd-api` + `wbd-worker` processes on
//! PostgreSQL and RabbitMQ) and embedded (one `wbd-api` on SQLite), the rule pack's evaluation
//! speed, the collector's footprint, the delivery engine's webhook throughput and latency (in
//! process, on SQLite and on PostgreSQL), and the retention sweep of large tables. It prints a
//! table and writes every figure, with its unit and the conditions it was measured under, as
//! JSON. It reports against the targets of
//! issue 15; it never asserts a timing. `BENCHMARKS.md` at the workspace root explains each
//! figure and keeps the latest results.

pub mod cli;
pub mod console;
pub mod delivery;
pub mod deploy;
pub mod floor;
pub mod footprint;
pub mod graph;
pub mod machine;
pub mod pipeline;
pub mod report;
pub mod retention;
pub mod rules;
pub mod run;
pub mod sim;
pub mod stats;
pub mod workload;
