//! One writer per data dir, across processes: an app and its extension, a second Android
//! process, the command line beside the app.
//!
//! The lock is the OS's exclusive advisory lock on a file in the data dir (`flock`, through
//! `std::fs::File::try_lock`), so a process that dies releases it. A client holds it while it
//! runs and takes it for each hand-out or write while it does not, never while idle: iOS kills
//! a suspended app that holds a file lock in an app-group container (0xdead10cc). Jobs still
//! writing when the client stops hold it until they end, so whoever takes it next sees
//! their records.
//!
//! Each holder writes a token of its own into the lock file. A client that takes the lock and
//! finds another's token knows someone else held it since, and reloads the records.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::LOCK_FILE;
use crate::Error;

/// How long a client waits for a stopped client of the same process to finish its writes,
/// whatever it was told to wait for other holders: they take milliseconds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a wait for another process's lock looks again.
const POLL: Duration = Duration::from_millis(10);

/// The locks this process holds, by lock file, so a client can tell one that will be released
/// in a moment (a stopped client's last writes, a hand-out) from a running client's.
static HELD_HERE: LazyLock<Mutex<HashMap<PathBuf, Weak<HeldLock>>>> = LazyLock::new(Mutex::default);
/// Notified whenever a lock of this process is released.
static RELEASED_HERE: Condvar = Condvar::new();

fn held_here() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<HeldLock>>> {
    HELD_HERE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lock of one client's data dir.
pub(crate) struct DataDirLock {
    path: PathBuf,
    /// How long to wait for another holder before failing with [`Error::DataDirInUse`].
    wait: Duration,
    /// Unique to this client: with a counter, the token of each of its holdings.
    nonce: [u8; 16],
    holdings: AtomicU64,
    /// The token this client wrote when it last held the lock.
    last_token: Mutex<Option<Vec<u8>>>,
}

/// The lock, held until the last clone drops.
pub(crate) struct HeldLock {
    file: File,
    path: PathBuf,
    /// Whether whoever holds it will release it soon (a stopped client's last jobs, a single
    /// hand-out), rather than for as long as a client runs.
    releasing_soon: AtomicBool,
}

impl HeldLock {
    /// From now on the lock is only held for what is under way.
    pub fn release_soon(&self) {
        self.releasing_soon.store(true, Ordering::SeqCst);
    }
}

/// A lock its owner let go of, still held by the jobs under way (see [`Self::released`]).
pub(crate) struct Releasing(Weak<HeldLock>);

impl Releasing {
    /// Once `held` has no holder left.
    pub fn of(held: &Arc<HeldLock>) -> Self {
        Self(Arc::downgrade(held))
    }

    /// Returns once the jobs under way have let go of the lock (milliseconds: a record's
    /// write), or after [`DRAIN_TIMEOUT`] of a disk that stopped answering, which it logs.
    pub async fn released(self) {
        let started = Instant::now();
        while self.0.strong_count() > 0 {
            if started.elapsed() >= DRAIN_TIMEOUT {
                return log::warn!("the data dir's lock is still held by a write under way");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Released and unlisted in one step, as it was taken and listed.
        let mut listed = held_here();
        let _ = self.file.unlock();
        listed.remove(&self.path);
        drop(listed);
        RELEASED_HERE.notify_all();
    }
}

/// A taking of the lock.
pub(crate) struct Acquired {
    pub held: Arc<HeldLock>,
    /// Whether another client held it since this one last did: what is on disk may have
    /// changed.
    pub others_held_it: bool,
}

/// A nonce no other client has: 128 bits hashed under fresh keys of std's `RandomState`
/// (random per thread, from the OS, and changed for each one made), cheaper than a
/// `KeysManager`'s entropy, which a client only listing its offers never derives.
pub(crate) fn unique_nonce() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut nonce = [0u8; 16];
    for half in nonce.chunks_mut(8) {
        let hash = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        half.copy_from_slice(&hash.to_be_bytes());
    }
    nonce
}

impl DataDirLock {
    /// The lock of `data_dir` (which must exist), waiting at most `wait` for other holders.
    pub fn new(data_dir: &Path, wait: Duration, nonce: [u8; 16]) -> Self {
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            path: dir.join(LOCK_FILE),
            wait,
            nonce,
            holdings: AtomicU64::new(0),
            last_token: Mutex::new(None),
        }
    }

    fn in_use(&self) -> Error {
        Error::DataDirInUse(format!(
            "another client holds {}",
            self.path.parent().unwrap_or(&self.path).display()
        ))
    }

    /// Takes the lock: at once if it is free; after a stopped client of this process has
    /// finished writing; or within the configured wait for any other holder.
    pub fn acquire(&self, releasing_soon: bool) -> Result<Acquired, Error> {
        self.acquire_unless(releasing_soon, &|| false)
    }

    /// As [`Self::acquire`], giving up the wait (with [`Error::DataDirInUse`]) as soon as
    /// `abandoned` says so: the app stopped the client whose start waits. Every wait also
    /// gives up, with [`Error::Cancelled`], once the app cancelled the call it serves
    /// ([`crate::cancel::cancelled_here`]).
    pub fn acquire_unless(
        &self,
        releasing_soon: bool,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Acquired, Error> {
        let storage = |e: std::io::Error| {
            Error::Storage(format!("opening the lock {}: {e}", self.path.display()))
        };
        let file = open_private(&self.path).map_err(storage)?;
        let started = Instant::now();
        let held = loop {
            // Taken and listed under the list's lock: a holder of this process is always
            // listed while it holds the file.
            let mut listed = held_here();
            match file.try_lock() {
                Ok(()) => {
                    let held = Arc::new(HeldLock {
                        file,
                        path: self.path.clone(),
                        releasing_soon: AtomicBool::new(releasing_soon),
                    });
                    listed.insert(self.path.clone(), Arc::downgrade(&held));
                    break held;
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(storage(e)),
            }
            if crate::cancel::cancelled_here() {
                return Err(Error::Cancelled);
            }
            if abandoned() {
                return Err(Error::DataDirInUse(format!(
                    "stopped while waiting for another client to let go of {}",
                    self.path.parent().unwrap_or(&self.path).display()
                )));
            }
            let listed_holder = listed.get(&self.path);
            let holder = listed_holder.and_then(Weak::upgrade);
            let soon = match &holder {
                Some(holder) => holder.releasing_soon.load(Ordering::SeqCst),
                // Listed but gone: its last reference is being dropped, and its release (which
                // waits for the list's lock) comes next.
                None => listed_holder.is_some(),
            };
            drop(listed);
            // Let go only now: if its owner let go meanwhile, this is the last reference, and
            // the release it makes takes the list's lock.
            drop(holder);
            if soon && started.elapsed() < DRAIN_TIMEOUT {
                // A release between the two locks is seen at the next try, within `POLL`.
                drop(RELEASED_HERE.wait_timeout(held_here(), POLL));
                continue;
            }
            let left = self.wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(self.in_use());
            }
            std::thread::sleep(left.min(POLL));
        };
        let others_held_it = self.swap_token(&held.file).map_err(storage)?;
        Ok(Acquired {
            held,
            others_held_it,
        })
    }

    /// Writes this holding's token over the last holder's, and says whether that one was
    /// another client's. Not synced: it only has to outlive processes, not the machine, and
    /// after a crash of the machine every client starts by loading anyway.
    fn swap_token(&self, mut file: &File) -> std::io::Result<bool> {
        let mut found = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut found)?;
        let mut token = self.nonce.to_vec();
        token.extend_from_slice(&self.holdings.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        // Every token has the same length: written over the last one, nothing is left of it.
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&token)?;
        let mut last = self.last_token.lock().unwrap_or_else(|e| e.into_inner());
        let others_held_it = last.as_ref() != Some(&found);
        *last = Some(token);
        Ok(others_held_it)
    }
}

/// Opens (or creates) the lock file, readable by its owner only.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_a_nonce_of_its_own() {
        let nonces: std::collections::HashSet<[u8; 16]> =
            (0..10_000).map(|_| unique_nonce()).collect();
        assert_eq!(nonces.len(), 10_000);
    }

    #[test]
    fn a_second_holder_waits_or_is_refused_and_sees_that_another_held_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::new(dir.path(), Duration::ZERO, [1; 16]);
        let second = DataDirLock::new(dir.path(), Duration::from_millis(300), [2; 16]);
        let held = first.acquire(false).unwrap();
        assert!(held.others_held_it, "nothing known yet");
        let started = Instant::now();
        assert!(matches!(second.acquire(false), Err(Error::DataDirInUse(_))));
        assert!(started.elapsed() >= Duration::from_millis(300), "waited");
        drop(held);
        let again = first.acquire(false).unwrap();
        assert!(!again.others_held_it, "nobody else held it meanwhile");
        drop(again);
        let by_second = second.acquire(false).unwrap();
        assert!(by_second.others_held_it);
        drop(by_second);
        assert!(first.acquire(false).unwrap().others_held_it);
    }

    #[test]
    fn a_holder_releasing_soon_is_waited_for_whatever_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::new(dir.path(), Duration::ZERO, [1; 16]);
        let second = DataDirLock::new(dir.path(), Duration::ZERO, [2; 16]);
        let held = first.acquire(false).unwrap();
        held.held.release_soon();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        second
            .acquire(false)
            .expect("waited for the stopped holder");
        releaser.join().unwrap();
    }

    /// Two clients of one data dir, each on a thread of its own, taking the lock (as a
    /// hand-out does: held briefly) 100,000 times each, waiting at most `wait` for the other:
    /// how many takings each was refused, once both are done within a minute.
    fn take_turns(wait: Duration) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        for nonce in [1u8, 2] {
            let (path, done) = (dir.path().to_path_buf(), done.clone());
            std::thread::spawn(move || {
                let lock = DataDirLock::new(&path, wait, [nonce; 16]);
                // The other one may be looking at each holding while it ends.
                let refused = (0..100_000).filter(|_| lock.acquire(true).is_err()).count();
                done.send(refused).unwrap();
            });
        }
        (0..2)
            .map(|_| {
                finished
                    .recv_timeout(Duration::from_secs(60))
                    .expect("a client took its turns within a minute (no deadlock)")
            })
            .collect()
    }

    #[test]
    fn two_clients_of_a_process_taking_turns_fast_never_deadlock() {
        assert_eq!(take_turns(Duration::from_secs(5)), [0, 0]);
    }

    /// A holding that ends soon is waited for even in the instant its last reference is
    /// dropped (no longer to be upgraded, not yet released): a client opened as another of the
    /// process stops must not be told the data dir is in use.
    #[test]
    fn a_holding_ending_this_instant_is_waited_for_not_taken_for_a_running_client() {
        assert_eq!(
            take_turns(Duration::ZERO),
            [0, 0],
            "refused while the other's holding ended"
        );
    }
}
