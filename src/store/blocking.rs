//! Store calls made from async code, run on tokio's blocking pool.
//!
//! Owns: moving a query or a transition off the runtime's worker threads. A call may wait on a
//! connection's lock, on SQLite's busy timeout (another process writing), or on the disk; a
//! worker that waits stalls every task scheduled on it (the pacing's timers, the provider's
//! answers). The engine's per-tick questions and claims, and the progress bar, go through here.
//!
//! May not: add SQL or decide anything: it runs what it is given.

use std::sync::Arc;

use super::{Store, StoreError};

impl Store {
    /// Run `call` with this store on tokio's blocking pool and wait for it without holding a
    /// worker. A panic in `call` is the caller's panic, as if it had run inline.
    pub async fn off_runtime<T, F>(self: &Arc<Self>, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(self);
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Io {
                what: format!(
                    "finish a call to the state database {}",
                    self.path.display()
                ),
                source: std::io::Error::other(e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Store;

    /// One worker thread: a call run on it would keep the sender below from ever running.
    #[tokio::test(flavor = "current_thread")]
    async fn a_store_call_that_waits_leaves_the_runtime_running() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let call = tokio::spawn(async move {
            store
                .off_runtime(move |store| {
                    // Bounded: inline on the worker it would wait out the whole timeout.
                    let heard = rx.recv_timeout(Duration::from_secs(20)).is_ok();
                    Ok((heard, store.held_count(1)?))
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(()).unwrap();
        let (heard, held) = call.await.unwrap().unwrap();
        assert!(heard, "the call held the runtime's only worker");
        assert_eq!(held, 0);
    }
}
