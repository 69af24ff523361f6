//! A shutdown signal that any number of background loops can wait on.

use tokio::sync::watch;

/// Asks every [`Shutdown`] made from it to stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves when shutdown was requested. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    #[must_use]
    pub fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), Shutdown(rx))
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Returns once shutdown is requested (or the trigger is gone).
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped: treat that as a request too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl Shutdown {
    /// Whether shutdown was requested (or the trigger is gone).
    #[must_use]
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Waits `duration`; `true` if shutdown was requested before or meanwhile.
    pub async fn pause(&mut self, duration: std::time::Duration) -> bool {
        if self.is_requested() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => false,
            () = self.requested() => true,
        }
    }
}
