//! The run's trace: every step and fault, hashed as it happens (the trace hash a run ends with)
//! and, when asked, printed readably.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// What a run did, step by step. Shared by the world's parts; one thread writes it at a time.
#[derive(Debug)]
pub struct Trace {
    inner: Mutex<Inner>,
    /// Keep the lines to print (`--trace`).
    keep: bool,
}

#[derive(Debug)]
struct Inner {
    hash: Sha256,
    lines: Vec<String>,
    steps: u64,
    faults: u64,
    line: String,
}

impl Trace {
    #[must_use]
    pub fn new(keep: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                hash: Sha256::new(),
                lines: Vec::new(),
                steps: 0,
                faults: 0,
                line: String::new(),
            }),
            keep,
        }
    }

    /// Records a step of the schedule.
    pub fn step(&self, at: i64, what: std::fmt::Arguments<'_>) {
        self.record(at, "step", what, false);
    }

    /// Records a fault the seed chose.
    pub fn fault(&self, at: i64, what: std::fmt::Arguments<'_>) {
        self.record(at, "FAULT", what, true);
    }

    fn record(&self, at: i64, kind: &str, what: std::fmt::Arguments<'_>, fault: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Inner {
            hash,
            lines,
            steps,
            faults,
            line,
        } = &mut *inner;
        line.clear();
        // Writing to a String cannot fail.
        let _ = write!(line, "{at:>12} {kind:<5} {what}");
        hash.update(line.as_bytes());
        hash.update(b"\n");
        *steps += 1;
        if fault {
            *faults += 1;
        }
        if self.keep {
            lines.push(line.clone());
        }
    }

    /// The faults recorded so far.
    #[must_use]
    pub fn faults(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .faults
    }

    /// The steps and faults recorded so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .steps
    }

    /// The hash of everything recorded, as hex.
    #[must_use]
    pub fn hash(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .hash
            .clone()
            .finalize()
            .iter()
            .take(16)
            .fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            })
    }

    /// The lines recorded (only when kept).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_steps_hash_the_same_and_others_differ() {
        let run = |n: i64| {
            let trace = Trace::new(false);
            trace.step(1, format_args!("place {n}"));
            trace.fault(2, format_args!("crash"));
            trace.hash()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
