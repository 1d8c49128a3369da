//! Reads (GET) retry with exponential backoff while a pod is briefly unreachable or
//! warming up (503 after a restart), within a total time per read. Mutating calls
//! never come through here: a retried propose or activate is not idempotent.
//!
//! The loop is generic over [`Clock`] and over how one attempt is made, so each
//! procedure keeps its own capabilities (the status check has no POST) and its own
//! pauses and log lines.

use std::time::Duration;

use crate::types::{HttpError, Response};

/// The clock retries wait on: std's in a component, a fake one in tests.
pub trait Clock {
    fn sleep(&mut self, duration: Duration);
    /// Monotonic time since some fixed point.
    fn now(&mut self) -> Duration;
}

/// The pauses between attempts: `first`, doubling after each attempt up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Whether a failed read may succeed if tried again: the pod is warming up (503),
/// unreachable for a moment (restarting), or slow. Anything else (denied, TLS, other
/// statuses, malformed answers) will not change by waiting.
pub fn is_retryable(error: &HttpError) -> bool {
    match error {
        HttpError::Timeout | HttpError::Connect(_) => true,
        HttpError::Status(response) => response.status == 503,
        HttpError::Denied(_) | HttpError::Tls(_) | HttpError::Protocol(_) => false,
    }
}

/// Reads `count` things: calls `attempt` with the indices still to read (all of them
/// first), keeps every final answer, and calls it again with only those that failed
/// retryably, after a pause, until every answer is final or `budget` is spent.
/// Before each pause, `waiting` is told each index still pending, its error, the
/// pause and the time left before giving up. Results are in index order.
pub fn retrying<H: Clock + ?Sized>(
    host: &mut H,
    count: usize,
    budget: Duration,
    backoff: Backoff,
    mut attempt: impl FnMut(&mut H, &[usize]) -> Vec<Result<Response, HttpError>>,
    mut waiting: impl FnMut(&mut H, usize, &HttpError, Duration, Duration),
) -> Vec<Result<Response, HttpError>> {
    let deadline = host.now() + budget;
    let mut results: Vec<Option<Result<Response, HttpError>>> = vec![None; count];
    let mut pending: Vec<usize> = (0..count).collect();
    let mut delay = backoff.first;
    while !pending.is_empty() {
        let answers = attempt(host, &pending);
        let mut retry = Vec::new();
        for (k, &i) in pending.iter().enumerate() {
            let answer = answers
                .get(k)
                .cloned()
                .unwrap_or_else(|| Err(HttpError::Protocol("the batch returned no result".into())));
            if matches!(&answer, Err(e) if is_retryable(e)) {
                retry.push(i);
            }
            results[i] = Some(answer);
        }
        pending = retry;
        let now = host.now();
        if pending.is_empty() || now >= deadline {
            break;
        }
        let left = deadline - now;
        let pause = delay.min(left);
        for &i in &pending {
            if let Some(Err(e)) = &results[i] {
                waiting(host, i, e, pause, left);
            }
        }
        host.sleep(pause);
        delay = (delay * 2).min(backoff.max);
    }
    results
        .into_iter()
        .map(|r| r.expect("every index was tried"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> HttpError {
        HttpError::Status(Response {
            status: code,
            body: String::new(),
        })
    }

    fn ok() -> Result<Response, HttpError> {
        Ok(Response {
            status: 200,
            body: String::new(),
        })
    }

    #[derive(Default)]
    struct FakeClock {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl Clock for FakeClock {
        fn sleep(&mut self, duration: Duration) {
            self.sleeps.push(duration);
            self.now += duration;
        }
        fn now(&mut self) -> Duration {
            self.now
        }
    }

    const BACKOFF: Backoff = Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };

    #[test]
    fn retry_classification() {
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&HttpError::Timeout));
        assert!(is_retryable(&HttpError::Connect("refused".into())));
        assert!(!is_retryable(&status(500)));
        assert!(!is_retryable(&status(404)));
        assert!(!is_retryable(&status(502)));
        assert!(!is_retryable(&HttpError::Denied("not listed".into())));
        assert!(!is_retryable(&HttpError::Tls("unknown issuer".into())));
        assert!(!is_retryable(&HttpError::Protocol("too large".into())));
    }

    #[test]
    fn retries_only_the_retryable_until_answered() {
        let mut clock = FakeClock::default();
        let mut attempts: Vec<Vec<usize>> = Vec::new();
        let mut waited = Vec::new();
        let results = retrying(
            &mut clock,
            3,
            Duration::from_secs(60),
            BACKOFF,
            |_, pending| {
                attempts.push(pending.to_vec());
                pending
                    .iter()
                    .map(|&i| match (i, attempts.len()) {
                        (0, _) => ok(),
                        (1, _) => Err(status(500)),
                        (_, n) if n < 3 => Err(status(503)),
                        _ => ok(),
                    })
                    .collect()
            },
            |_, i, e, pause, _| waited.push((i, e.to_string(), pause)),
        );
        assert_eq!(attempts, vec![vec![0, 1, 2], vec![2], vec![2]]);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1], Err(status(500)));
        assert_eq!(
            clock.sleeps,
            [Duration::from_millis(200), Duration::from_millis(400)]
        );
        assert_eq!(waited.len(), 2);
        assert_eq!(
            waited[0],
            (2, "status 503".into(), Duration::from_millis(200))
        );
    }

    #[test]
    fn gives_up_at_the_budget_with_pauses_capped() {
        let mut clock = FakeClock::default();
        let results = retrying(
            &mut clock,
            1,
            Duration::from_secs(5),
            BACKOFF,
            |_, pending| pending.iter().map(|_| Err(HttpError::Timeout)).collect(),
            |_, _, _, _, _| {},
        );
        assert_eq!(results, vec![Err(HttpError::Timeout)]);
        assert_eq!(clock.now, Duration::from_secs(5));
        assert!(clock.sleeps.iter().all(|d| *d <= BACKOFF.max));
    }

    #[test]
    fn a_short_batch_is_a_protocol_error_not_a_panic() {
        let mut clock = FakeClock::default();
        let results = retrying(
            &mut clock,
            2,
            Duration::from_secs(1),
            BACKOFF,
            |_, _| vec![ok()],
            |_, _, _, _, _| {},
        );
        assert!(results[0].is_ok());
        assert!(matches!(&results[1], Err(HttpError::Protocol(_))));
    }
}
