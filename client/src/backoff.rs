//! Jittered exponential backoff bounded by a deadline.

use std::time::{Duration, Instant};

/// Backoff state for one call.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
    /// Attempts made so far.
    pub attempts: u32,
}

impl Backoff {
    /// Starts at `base`, doubles up to `max`, never sleeps past `deadline`.
    pub fn new(base: Duration, max: Duration, deadline: Instant) -> Self {
        Backoff {
            next: base,
            max,
            deadline,
            attempts: 0,
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps for the next jittered interval (capped at the deadline).
    /// Returns false if the deadline has passed.
    pub async fn wait(&mut self) -> bool {
        self.attempts += 1;
        let remaining = self.remaining();
        if remaining.is_zero() {
            return false;
        }
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let sleep = self.next.mul_f64(jitter).min(remaining);
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(sleep).await;
        !self.expired()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_stops_at_deadline() {
        let mut b = Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
            Instant::now() + Duration::from_millis(60),
        );
        let mut rounds = 0;
        while b.wait().await {
            rounds += 1;
            assert!(rounds < 100, "backoff never expired");
        }
        assert!(b.expired());
        assert!(b.attempts >= 2);
    }
}
