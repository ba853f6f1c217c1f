//! connbench: a hand-tuned connection benchmark.
//!
//! The command line ([`cli`]) becomes a [`plan::HttpPlan`] (pure data, built by [`app`]).
//! [`engine::run`] spawns one worker thread per core, each pinned, each with its own
//! `mio::Poll`, its own connections and its own [`metrics::Recorder`]; nothing is shared on the
//! hot path. Protocol code in [`proto`] is sans-IO; [`tls`] builds the rustls configuration.
//! After the workers join, the recorders are merged and [`report`] renders the human summary
//! and the versioned JSON document. [`serve`] is the built-in loopback server
//! (`connbench serve`) that tests, benches and the first run use.
//!
//! ```text
//!   cli ──► app ──► HttpPlan ──► engine::run ── N pinned workers
//!                                   │            (Poll + slots + timers + Recorder)
//!                                   │ join
//!                            Recorder::merge ──► report (text, JSON)
//! ```

pub mod app;
pub mod autobahn;
pub mod cli;
pub mod engine;
pub mod metrics;
pub mod plan;
pub mod proto;
pub mod report;
pub mod serve;
pub mod sys;
pub mod tls;
