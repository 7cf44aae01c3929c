//! Shared test support: fixture paths, simulator boot, bounded waits.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Poll `check` until it gives `Some`, for at most `timeout`; panic naming `label` if it never
/// does. Tests wait with this instead of sleeping a fixed time.
pub async fn wait_for<T, F, Fut>(label: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {label}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback port free right now, for a server a test starts as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) until something accepts connections on loopback `port`.
pub async fn wait_listening(what: &str, port: u16) {
    wait_for(
        &format!("{what} to listen"),
        Duration::from_secs(20),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

/// Ledger entries billed and not refunded, per subject image file name.
pub fn net_bills_per_subject(
    ledger: &recast::sim::Ledger,
) -> std::collections::HashMap<String, usize> {
    let mut bills = std::collections::HashMap::new();
    for e in ledger
        .entries
        .iter()
        .filter(|e| e.credits > 0 && !e.refunded)
    {
        let name = e
            .image_url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        *bills.entry(name).or_default() += 1;
    }
    bills
}

/// A tiny deterministic generator, so a failing schedule of kills or actions replays from its seed.
pub struct SeededRng(pub u64);

impl SeededRng {
    /// A number in `lo..hi`.
    pub fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo).max(1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_in(0, n)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub mod workspace;
