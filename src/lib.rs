//! connbench: a hand-tuned connection benchmark.
//!
//! The command line becomes a [`plan::Plan`] (pure data). [`engine::run`] spawns one worker
//! thread per core, each pinned, each with its own `mio::Poll`, its own connections and its own
//! [`metrics::Recorder`]; nothing is shared on the hot path. Protocol code in [`proto`] is
//! sans-IO. After the workers join, the recorders are merged and [`report`] renders the human
//! summary and the versioned JSON document. [`target`] is the built-in loopback server
//! (`connbench serve`) that tests, benches and the first-run experience use.
//!
//! ```text
//!   cli ──► Plan ──► engine::run ── N pinned workers (Poll + slots + timers + Recorder)
//!                                        │ join
//!                                 metrics::merge ──► report (text, JSON)
//! ```

pub mod metrics;
pub mod proto;
pub mod report;
pub mod target;
