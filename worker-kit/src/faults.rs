//! Fault injection for tests, compiled only with the `faults` feature (release builds leave it
//! out): a worker counts its steps against a budget and stops as if the process had died when
//! the budget runs out.

use std::sync::Mutex;

/// Steps a worker may still take before a test's injected crash. Unset, it never fires.
#[derive(Debug, Default)]
pub struct CrashBudget(Mutex<Option<u32>>);

impl CrashBudget {
    /// Let `steps` more steps pass, then crash at the next.
    pub fn set(&self, steps: u32) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(steps);
    }

    /// Counts one step; false when the crash is due (the step must not be taken).
    pub fn tick(&self) -> bool {
        let mut budget = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match budget.as_mut() {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}
