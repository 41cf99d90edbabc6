//! The one source of time, so tests can move it.
//!
//! Two clocks: the wall clock, which offers and invoices carry and which a phone may have
//! wrong for a while (a dead RTC battery, a manual date change, bad network time), and a
//! monotonic one, which only moves forward. Waits (send budgets, retries, backoff, how long an
//! invoice may go unconfirmed) run on the monotonic clock, so a wall clock jumping either way
//! never stalls or floods the server; expiry, which payers judge by their own clocks, runs on
//! the wall clock, and no record is deleted on its word alone (see
//! [`Config::expired_offer_retention`](crate::Config::expired_offer_retention)).

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where time comes from.
pub trait Clock: Send + Sync {
    /// Wall-clock time since the Unix epoch. It may jump either way.
    fn now(&self) -> Duration;

    /// Time since an arbitrary start (at most the first call) that never goes back.
    fn monotonic(&self) -> Duration;
}

/// The system's wall clock and `std::time::Instant`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// What [`SystemClock::monotonic`] counts from.
static MONOTONIC_START: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn monotonic(&self) -> Duration {
        MONOTONIC_START.elapsed()
    }
}

/// A clock that only moves when told to; for tests. Its monotonic clock starts at zero.
#[derive(Debug)]
pub struct ManualClock(Mutex<ManualTime>);

#[derive(Debug)]
struct ManualTime {
    wall: Duration,
    monotonic: Duration,
}

impl ManualClock {
    /// A clock whose wall clock stands at `now`.
    pub fn new(now: Duration) -> Self {
        Self(Mutex::new(ManualTime {
            wall: now,
            monotonic: Duration::ZERO,
        }))
    }

    /// A clock starting at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    fn time(&self) -> std::sync::MutexGuard<'_, ManualTime> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets `by` pass: both clocks move forward.
    pub fn advance(&self, by: Duration) {
        let mut time = self.time();
        time.wall += by;
        time.monotonic += by;
    }

    /// Sets the wall clock to `now`, earlier or later, as a user or a bad time server might;
    /// the monotonic clock does not move.
    pub fn set_wall(&self, now: Duration) {
        self.time().wall = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.time().wall
    }

    fn monotonic(&self) -> Duration {
        self.time().monotonic
    }
}

/// Both clocks read at one moment: what the cache's decisions take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Time {
    /// [`Clock::now`].
    pub wall: Duration,
    /// [`Clock::monotonic`].
    pub monotonic: Duration,
}

impl Time {
    pub fn of(clock: &dyn Clock) -> Self {
        Self {
            wall: clock.now(),
            monotonic: clock.monotonic(),
        }
    }
}

/// Time passing: both clocks move.
impl std::ops::Add<Duration> for Time {
    type Output = Time;

    fn add(self, by: Duration) -> Time {
        Time {
            wall: self.wall + by,
            monotonic: self.monotonic + by,
        }
    }
}
