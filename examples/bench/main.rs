//! Benchmarks of recast against the simulator on loopback, each printing ratios.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- <rate|makespan|cpu|memory|all>
//! ```
//!
//! - `rate`: achieved submit rate / allowed rate, and 429s refused (in-process engine).
//! - `makespan`: makespan / ideal makespan for N jobs under a rate limit, an in-flight cap and a
//!   generation time (in-process engine).
//! - `cpu`: CPU ms per job of a spawned `recast run` process.
//! - `memory`: peak RSS of a spawned `recast run` at 1,000, 10,000 and 100,000 jobs, and ratios.
//! - `restart`: first submit after SIGKILL and the same `recast run` again, and `recast status`, at N jobs.
//! - `outage`: calls into a minutes-long 503 outage, the first submit after it, jobs held unknown.
//!
//! Every run lives in a temp dir (`$TMPDIR`) removed afterwards, talks to 127.0.0.1 only, and
//! is bounded in jobs and in time. Numbers measured on the project's machine are in
//! `docs/readme-bench.md`. A benchmark is never a timed assertion in the test suite.
//!
//! # Layout
//! - `harness`: temp batch, simulator boot, in-process engine wiring, spawned binary with `/proc`
//!   readings.
//! - `png`: tiny unique 300 x 300 PNG subjects.
//! - `rate`, `makespan`, `cpu`, `memory`, `restart`, `outage`: one file per benchmark.

mod cpu;
mod harness;
mod makespan;
mod memory;
mod outage;
mod png;
mod rate;
mod restart;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of recast against the in-process simulator (ratios)")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Achieved submit rate / allowed rate, and 429s (example: `bench rate`, or
    /// `bench rate --only again` for the cases whose label holds `again`; `--only long` for the
    /// two five-minute first runs, which run only when named).
    Rate {
        /// Only the cases whose label contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// Makespan / ideal makespan (example: `bench makespan`).
    Makespan,
    /// CPU ms per job of `recast run` (example: `bench cpu --jobs 1000`).
    Cpu {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
    },
    /// Peak RSS of `recast run` against the batch size (example: `bench memory --jobs 1000,10000`).
    Memory {
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        jobs: Vec<usize>,
        /// A run still going after this many seconds is killed and reported as unfinished.
        #[arg(long, default_value_t = 900)]
        max_secs: u64,
    },
    /// First submit after SIGKILL and the same `recast run` again, and `recast status`, with N jobs
    /// registered (example: `bench restart --jobs 100000`).
    Restart {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
    },
    /// Calls into a 503 outage and the first submit after it (example: `bench outage --secs 120`).
    Outage {
        #[arg(long, default_value_t = 120)]
        secs: u64,
    },
    /// `rate`, `makespan`, `cpu` and `memory` at 1,000 and 10,000 jobs.
    All,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match args.bench {
        Bench::Rate { only } => rate::run(only.as_deref()).await,
        Bench::Makespan => makespan::run().await,
        Bench::Cpu { jobs } => cpu::run(jobs).await,
        Bench::Memory { jobs, max_secs } => memory::run(&jobs, max_secs).await,
        Bench::Restart { jobs } => restart::run(jobs).await,
        Bench::Outage { secs } => outage::run(secs).await,
        Bench::All => {
            rate::run(None).await;
            makespan::run().await;
            cpu::run(1000).await;
            memory::run(&[1000, 10_000], 900).await;
        }
    }
}
