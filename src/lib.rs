//! recast: one performance, many subjects.
//!
//! A YAML manifest names one reference video (the motion) and N subject images. recast turns
//! each (performance, subject) pair into one paid Kling Motion Control job, submits the jobs to
//! the provider under its rate limits, checkpoints every step in SQLite, and lands each finished
//! clip in an output folder: every planned clip exactly once, never a cent more, whatever crashes.
//!
//! # Layout
//! ```text
//! manifest ──parse/validate/expand──> job specs ──plan (probe media, price)──> store
//! store ──submit (rate limit, in-flight cap)──> provider task id ──poll──> clip URL
//! clip URL ──download (stream, verify, atomic rename)──> output folder ──> store: done
//! ```
//! - [`manifest`]: the YAML schema, errors with line and column, expansion into [`manifest::JobSpec`]s
//!   and their [`manifest::JobKey`]s.
//! - [`media`]: probing MP4/MOV and JPEG/PNG/WebP headers, locally or over HTTP range requests,
//!   and the provider's input rules.
//! - [`pricing`]: rates and upper-bound estimates.
//! - [`provider`]: the HTTP client for the provider's wire format and its error classes.
//! - [`store`]: the SQLite state; the only module with SQL.
//! - [`engine`]: the submit, poll and download stages, rate limits, retries, crash recovery.
//! - [`output`]: the output folder's own memory (its results file) and its lock.
//! - [`netguard`]: which addresses URLs from outside may reach (no private ones by default).
//! - [`safe_fs`]: opening planted files: no links followed, no FIFOs, regular files only.
//! - [`daemon`]: watched folders, schedules, signals, health and metrics around one engine.
//! - [`sim`]: a real HTTP simulator of the provider, with a billing ledger and fault injection.
//! - [`cli`]: commands, flags and terminal output.

pub mod cli;
pub mod daemon;
pub mod dashboard;
pub mod digest;
pub mod engine;
pub mod file_identity;
pub mod manifest;
pub mod media;
pub mod media_store;
pub mod netguard;
pub mod notify;
pub mod output;
pub mod plan;
pub mod pricing;
pub mod provider;
pub mod safe_fs;
pub mod settings;
pub mod sim;
pub mod store;
