//! connbench: a hand-tuned connection benchmark.
//!
//! The command line ([`cli`]) is validated without I/O, then [`app`] turns it into a plan
//! ([`plan`]: pure data, no engine types) — resolving the host, choosing CPUs, starting the
//! built-in target when no URL is given. [`engine::run`] (HTTP), [`engine::run_ws`] and
//! [`engine::probe::run`] drive one connection core ([`engine::core`]): per pinned worker
//! thread one `mio::Poll`, slots with generation tokens, one timer table, transports (plain or
//! TLS, chosen once) that own their buffers; a *session* ([`engine::http`], [`engine::ws`],
//! [`engine::probe`]) says what a connection writes, how it frames what comes back and what a
//! loss means. Each worker owns its [`metrics::Recorder`]; nothing is shared on the hot path.
//! Protocol code in [`proto`] is sans-IO; [`tls`] builds the rustls configuration. After the
//! workers join, the recorders are merged and [`report`] renders the summary, the versioned
//! JSON document and the interval log. [`serve`] is the built-in loopback server
//! (`connbench serve`) that tests, benches and the first run use. `connbench floor` measures
//! the machine's floor with [`engine::floor`] and the engines at one connection.
//!
//! ```text
//!   cli ──► app ──► plan ──► engine::{run, run_ws, probe::run}
//!                              │  N pinned workers: core (Poll + slots + timers + transport)
//!                              │                    + session (http | ws | probe) + Recorder
//!                              │ join
//!                       metrics (merged Recorder, RunResult) ──► report (text, JSON, hlog)
//! ```
//!
//! Imports point one way: `cli → app → engine → {proto, metrics, plan}`; `report` reads
//! `metrics` and `plan`.

pub mod app;
pub mod autobahn;
pub mod bench;
pub mod cli;
pub mod engine;
pub mod metrics;
pub mod plan;
pub mod proto;
pub mod redact;
pub mod report;
pub mod serve;
pub mod sys;
pub mod tls;
