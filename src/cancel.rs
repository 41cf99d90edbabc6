//! Calls the app gave up on. A Rust caller drops the future; a Swift task cannot (UniFFI
//! 0.32's Swift glue awaits a Rust future until it completes), so the FFI takes a
//! [`Cancel`] the Swift SDK cancels from the task's cancellation handler. Either way the
//! call's async waits end at once, and so does the one wait it may make on a blocking thread:
//! the data dir's lock (see [`Cancel::run_blocking`]). Work past that wait (a record's fsync)
//! is finished, so nothing written is lost to a cancellation.

use std::cell::RefCell;
use std::sync::Arc;

use tokio::sync::watch;

/// Cancels one call: cloned into the places that look.
#[derive(Clone)]
pub(crate) struct Cancel(Arc<watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

thread_local! {
    /// The cancel of the call this blocking thread runs, if any.
    static RUNNING: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

// The Kotlin and Swift SDKs cancel calls; Rust callers drop futures.
#[cfg_attr(not(feature = "ffi"), allow(dead_code))]
impl Cancel {
    /// Cancels the call; idempotent.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the call is cancelled.
    pub async fn cancelled(&self) {
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = self.0.subscribe().wait_for(|cancelled| *cancelled).await;
    }

    /// Cancels the call if the guard is dropped before [`CancelOnDrop::disarm`]: a dropped
    /// future (a cancelled Kotlin coroutine, a Rust caller's `select!`) then also ends the
    /// blocking work it started.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }

    /// Runs `work` on this (blocking) thread with this cancel in force:
    /// [`cancelled_here`] answers for it.
    pub fn run_blocking<T>(&self, work: impl FnOnce() -> T) -> T {
        struct Restore(Option<Cancel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                RUNNING.with(|running| *running.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(RUNNING.with(|running| running.replace(Some(self.clone()))));
        work()
    }
}

/// Whether the call this thread runs (see [`Cancel::run_blocking`]) was cancelled: a wait
/// then gives up.
pub(crate) fn cancelled_here() -> bool {
    RUNNING.with(|running| running.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

/// See [`Cancel::on_drop`].
#[cfg_attr(not(feature = "ffi"), allow(dead_code))]
pub(crate) struct CancelOnDrop(Option<Cancel>);

#[cfg_attr(not(feature = "ffi"), allow(dead_code))]
impl CancelOnDrop {
    /// The work it guarded is done: dropped now, it cancels nothing.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = &self.0 {
            cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_thread_running_a_cancelled_call_sees_it() {
        let cancel = Cancel::default();
        assert!(!cancelled_here());
        cancel.run_blocking(|| {
            assert!(!cancelled_here());
            cancel.cancel();
            assert!(cancelled_here());
            let elsewhere = std::thread::spawn(cancelled_here).join().unwrap();
            assert!(!elsewhere, "another thread runs another call");
        });
        assert!(!cancelled_here(), "the call's cancel ends with it");
    }

    #[tokio::test]
    async fn dropping_the_guard_cancels_and_wakes_the_wait() {
        let cancel = Cancel::default();
        let wait = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        cancel.on_drop().disarm();
        assert!(!cancel.is_cancelled(), "disarmed, it cancels nothing");
        drop(cancel.on_drop());
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("woken")
            .unwrap();
    }
}
