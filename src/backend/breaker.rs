//! The circuit breaker in front of one backend: a failure ratio over the last `window`
//! calls (counted once `min_calls` have been seen) opens it; while open, calls are refused
//! without reaching the ERP; after `open_for`, exactly one call probes, and its outcome
//! closes the circuit or opens it again.
//!
//! The state sits behind a `std` mutex held for a few instructions, never across an await:
//! calls on every serving thread pass through here, and an async lock (which the
//! tower-resilience breaker took twice per call) made them wake each other across cores.
//! Time is tokio's, so tests drive it on a paused clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::protect::BreakerSettings;

/// Where the circuit is. The numbers are those of the `veneer_circuit_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Calls pass; outcomes are counted.
    Closed = 0,
    /// Calls are refused until the wait is over.
    Open = 1,
    /// One probe is allowed; its outcome decides.
    HalfOpen = 2,
}

/// A backend's circuit breaker, shared by every call to it (and kept across reloads while
/// its settings are unchanged).
#[derive(Debug)]
pub struct Breaker {
    backend: String,
    settings: BreakerSettings,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Outcomes of the latest calls while closed, `true` for a failure; at most `window`.
    outcomes: VecDeque<bool>,
    failures: usize,
    /// End of the open wait.
    open_until: Instant,
    /// Is a probe out (half-open)?
    probing: bool,
}

/// Leave to make one call. Record its outcome with [`Pass::record`]; a pass dropped without
/// an outcome (the caller went away) counts nothing, and a probe's slot is freed for the next.
#[must_use = "a call's outcome feeds the breaker"]
pub struct Pass {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

/// The circuit is open: the call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl Breaker {
    /// A closed breaker for `backend`.
    pub fn new(backend: &str, settings: BreakerSettings) -> Self {
        crate::telemetry::circuit_state(backend, Phase::Closed as u8);
        Breaker {
            backend: backend.to_string(),
            settings,
            state: Mutex::new(State {
                phase: Phase::Closed,
                outcomes: VecDeque::with_capacity(settings.window),
                failures: 0,
                open_until: Instant::now(),
                probing: false,
            }),
        }
    }

    /// How long the circuit stays open before a probe: what a refused caller should wait.
    pub fn open_for(&self) -> std::time::Duration {
        self.settings.open_for
    }

    /// The current phase (an open circuit whose wait is over still reads `Open` until a
    /// call comes to probe it).
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// May a call go to the ERP now?
    pub fn admit(self: &Arc<Self>) -> Result<Pass, Refused> {
        let mut state = self.lock();
        let probe = match state.phase {
            Phase::Closed => false,
            Phase::Open if Instant::now() < state.open_until => return Err(Refused),
            Phase::Open => {
                self.enter(&mut state, Phase::HalfOpen);
                state.probing = true;
                true
            }
            Phase::HalfOpen if state.probing => return Err(Refused),
            Phase::HalfOpen => {
                state.probing = true;
                true
            }
        };
        Ok(Pass { breaker: self.clone(), probe, recorded: false })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, consistent after every statement: a panic elsewhere
        // while it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, state: &mut State, phase: Phase) {
        state.phase = phase;
        state.outcomes.clear();
        state.failures = 0;
        state.probing = false;
        if phase == Phase::Open {
            state.open_until = Instant::now() + self.settings.open_for;
        }
        crate::telemetry::circuit_state(&self.backend, phase as u8);
        match phase {
            Phase::Open => {
                tracing::warn!(backend = %self.backend, open_for = ?self.settings.open_for, "circuit breaker opened")
            }
            Phase::HalfOpen => tracing::info!(backend = %self.backend, "circuit breaker half-open: one call probes"),
            Phase::Closed => tracing::info!(backend = %self.backend, "circuit breaker closed"),
        }
    }

    fn record(&self, probe: bool, failed: bool) {
        let mut state = self.lock();
        match state.phase {
            Phase::HalfOpen if probe => self.enter(&mut state, if failed { Phase::Open } else { Phase::Closed }),
            Phase::Closed => {
                let s = &self.settings;
                if state.outcomes.len() == s.window && state.outcomes.pop_front() == Some(true) {
                    state.failures -= 1;
                }
                state.outcomes.push_back(failed);
                state.failures += usize::from(failed);
                let seen = state.outcomes.len();
                // `as f64`: both counts are at most `window`, far below 2^52.
                if seen >= s.min_calls && state.failures as f64 >= s.failure_rate * seen as f64 {
                    self.enter(&mut state, Phase::Open);
                }
            }
            // Calls admitted before the circuit opened, finishing late: already judged.
            Phase::Open | Phase::HalfOpen => {}
        }
    }

    fn abandon(&self) {
        let mut state = self.lock();
        if state.phase == Phase::HalfOpen {
            state.probing = false;
        }
    }
}

impl Pass {
    /// Counts the call's outcome: `failed` when the ERP could not answer properly (timeout,
    /// refused connection, busy fault).
    pub fn record(mut self, failed: bool) {
        self.recorded = true;
        self.breaker.record(self.probe, failed);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker(failure_rate: f64, window: usize, min_calls: usize) -> Arc<Breaker> {
        let open_for = Duration::from_secs(30);
        Arc::new(Breaker::new("erp", BreakerSettings { failure_rate, window, min_calls, open_for }))
    }

    fn call(b: &Arc<Breaker>, failed: bool) -> Result<(), Refused> {
        b.admit().map(|p| p.record(failed))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_failure_rate_once_min_calls_are_seen() {
        // (outcomes, phase after them): 50 % over a window of 4, counted from 4 calls.
        let cases: &[(&[bool], Phase)] = &[
            (&[true, true, true], Phase::Closed),
            (&[true, true, false, false], Phase::Open),
            (&[false, false, false, true], Phase::Closed),
            (&[false, false, false, true, true], Phase::Open),
            // The window slides: the old failures fall out before the new ones arrive.
            (&[true, false, false, false, false, true], Phase::Closed),
        ];
        for (outcomes, phase) in cases {
            let b = breaker(0.5, 4, 4);
            for failed in *outcomes {
                let _ = call(&b, *failed);
            }
            assert_eq!(b.phase(), *phase, "{outcomes:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_refuses_until_open_for_then_lets_one_probe_through() {
        let b = breaker(0.5, 2, 2);
        assert_eq!(call(&b, true), Ok(()));
        assert_eq!(call(&b, true), Ok(()));
        assert_eq!(call(&b, false), Err(Refused));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(call(&b, false), Err(Refused), "refused before open_for is over");
        tokio::time::advance(Duration::from_secs(2)).await;
        let probe = b.admit().expect("the probe passes");
        assert_eq!(b.phase(), Phase::HalfOpen);
        assert_eq!(b.admit().err(), Some(Refused), "one probe at a time");
        probe.record(false);
        assert_eq!(b.phase(), Phase::Closed);
        assert_eq!(call(&b, false), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_the_circuit_for_another_open_for() {
        let b = breaker(1.0, 1, 1);
        assert_eq!(call(&b, true), Ok(()));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(call(&b, true), Ok(()));
        assert_eq!(b.phase(), Phase::Open);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(call(&b, false), Err(Refused));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(call(&b, false), Ok(()));
        assert_eq!(b.phase(), Phase::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot_for_the_next_call() {
        let b = breaker(1.0, 1, 1);
        assert_eq!(call(&b, true), Ok(()));
        tokio::time::advance(Duration::from_secs(31)).await;
        drop(b.admit().expect("the probe passes"));
        assert_eq!(b.phase(), Phase::HalfOpen);
        let probe = b.admit().expect("the slot is free again");
        probe.record(false);
        assert_eq!(b.phase(), Phase::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_of_calls_admitted_before_the_circuit_opened_change_nothing() {
        let b = breaker(0.5, 2, 2);
        let late = b.admit().expect("admitted");
        assert_eq!(call(&b, true), Ok(()));
        assert_eq!(call(&b, true), Ok(()));
        late.record(false);
        assert_eq!(b.phase(), Phase::Open);
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = b.admit().expect("admitted");
        let stale = Pass { breaker: b.clone(), probe: false, recorded: false };
        stale.record(true);
        assert_eq!(b.phase(), Phase::HalfOpen, "only the probe decides");
        probe.record(false);
        assert_eq!(b.phase(), Phase::Closed);
    }
}
