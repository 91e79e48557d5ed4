//! When an OTLP export is tried again: the OTLP specification's retry rules.
//!
//! Only failures the spec calls transient are retried — gRPC `CANCELLED`, `DEADLINE_EXCEEDED`,
//! `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, and `RESOURCE_EXHAUSTED` when the
//! server sends `RetryInfo`; HTTP 429, 502, 503, 504 and failures without a response — with
//! exponential backoff plus jitter, a server's `RetryInfo` / `Retry-After` seeding the delay, and
//! every attempt and wait inside the one export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
//!
//! The policy and the classification mirror opentelemetry-otlp 0.33's (3 retries, 100 ms first
//! delay doubling to 1.6 s, up to 100 ms jitter, server delays capped), which keeps its retry
//! crate-private; callspan sends its own pre-encoded requests (see `encode.rs`) and so runs the
//! same rules itself.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a failed attempt means for the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Do not try again (bad request, authentication, unknown errors).
    Permanent,
    /// Transient: back off and try again.
    Transient,
    /// The server asked to wait at least this long first.
    Throttled(Duration),
}

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// Wait before the first retry; doubles after each.
    pub initial_delay: Duration,
    /// Longest wait between attempts (a server's longer delay raises it).
    pub max_delay: Duration,
    /// Random extra wait, up to this much, so that many exporters do not retry in step.
    pub max_jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1600),
            max_jitter: Duration::from_millis(100),
        }
    }
}

/// A server-given delay is honoured up to this long (a misbehaving server cannot stall the
/// exporter for longer; the export timeout bounds it anyway).
const MAX_SERVER_DELAY: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails permanently, runs out of retries, or the next wait
/// would pass `deadline`. Returns the last error and how many retries were made.
pub async fn with_retry<T, E, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    classify: impl Fn(&E) -> Verdict,
    mut attempt: impl FnMut(Duration) -> Fut,
) -> Result<T, (E, u32)>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut retries = 0;
    let mut delay = policy.initial_delay;
    let mut delay_cap = policy.max_delay;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match attempt(remaining).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let verdict = classify(&error);
        if verdict == Verdict::Permanent || retries >= policy.max_retries {
            return Err((error, retries));
        }
        if let Verdict::Throttled(server_delay) = verdict {
            let server_delay = server_delay.min(MAX_SERVER_DELAY);
            delay_cap = delay_cap.max(server_delay);
            delay = delay.max(server_delay);
        }
        let wait = (delay + jitter(policy.max_jitter)).min(delay_cap);
        if Instant::now() + wait >= deadline {
            return Err((error, retries));
        }
        tokio::time::sleep(wait).await;
        retries += 1;
        delay = delay.saturating_mul(2).min(delay_cap);
    }
}

fn jitter(max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(callspan_core::ids::random_u64() % (max_ms + 1))
}

/// A gRPC status, by the OTLP/gRPC rules.
pub fn grpc_verdict(status: &tonic::Status) -> Verdict {
    use tonic::Code;
    use tonic_types::StatusExt;
    let server_delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    match status.code() {
        // Retryable only when the server says recovery is possible.
        Code::ResourceExhausted => server_delay.map_or(Verdict::Permanent, Verdict::Throttled),
        Code::Unavailable => match server_delay.filter(|d| !d.is_zero()) {
            Some(delay) => Verdict::Throttled(delay),
            None => Verdict::Transient,
        },
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Verdict::Transient,
        _ => Verdict::Permanent,
    }
}

/// An HTTP response status (0: no response at all), by the OTLP/HTTP rules.
pub fn http_verdict(status: u16, retry_after: Option<&str>) -> Verdict {
    match status {
        429 | 503 => retry_after
            .and_then(retry_after_delay)
            .map_or(Verdict::Transient, Verdict::Throttled),
        0 | 502 | 504 => Verdict::Transient,
        _ => Verdict::Permanent,
    }
}

/// `Retry-After`: delay seconds (`120`) or an HTTP date (`Fri, 31 Dec 1999 23:59:59 GMT`).
fn retry_after_delay(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_jitter: Duration::from_millis(1),
        }
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let calls = Cell::new(0);
        let result = run(with_retry(
            &fast(),
            Instant::now() + Duration::from_secs(5),
            |_: &&str| Verdict::Transient,
            |_| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err("unavailable")
                    } else {
                        Ok(n)
                    }
                }
            },
        ));
        assert_eq!(result, Ok(3));
    }

    #[test]
    fn permanent_failures_and_exhausted_retries_stop() {
        let calls = Cell::new(0);
        let result: Result<(), _> = run(with_retry(
            &fast(),
            Instant::now() + Duration::from_secs(5),
            |_: &&str| Verdict::Permanent,
            |_| {
                calls.set(calls.get() + 1);
                async { Err("bad request") }
            },
        ));
        assert_eq!((result, calls.get()), (Err(("bad request", 0)), 1));

        calls.set(0);
        let result: Result<(), _> = run(with_retry(
            &fast(),
            Instant::now() + Duration::from_secs(5),
            |_: &&str| Verdict::Transient,
            |_| {
                calls.set(calls.get() + 1);
                async { Err("unavailable") }
            },
        ));
        assert_eq!((result, calls.get()), (Err(("unavailable", 3)), 4));
    }

    #[test]
    fn the_deadline_bounds_waits_and_attempts_see_what_is_left() {
        let seen = std::cell::RefCell::new(Vec::new());
        let start = Instant::now();
        let result: Result<(), _> = run(with_retry(
            &fast(),
            start + Duration::from_millis(60),
            // The server asks for a second: more than the deadline leaves.
            |_: &&str| Verdict::Throttled(Duration::from_secs(1)),
            |remaining| {
                seen.borrow_mut().push(remaining);
                async { Err("throttled") }
            },
        ));
        assert_eq!(result, Err(("throttled", 0)));
        assert!(start.elapsed() < Duration::from_millis(500));
        assert!(seen.borrow()[0] <= Duration::from_millis(60));
    }

    #[test]
    fn grpc_codes_follow_the_otlp_spec() {
        use tonic::{Code, Status};
        assert_eq!(grpc_verdict(&Status::unavailable("x")), Verdict::Transient);
        assert_eq!(
            grpc_verdict(&Status::new(Code::DataLoss, "x")),
            Verdict::Transient
        );
        assert_eq!(
            grpc_verdict(&Status::invalid_argument("x")),
            Verdict::Permanent
        );
        assert_eq!(
            grpc_verdict(&Status::unauthenticated("x")),
            Verdict::Permanent
        );
        assert_eq!(
            grpc_verdict(&Status::resource_exhausted("x")),
            Verdict::Permanent
        );

        use tonic_types::{ErrorDetails, StatusExt};
        let throttled = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        assert_eq!(
            grpc_verdict(&throttled),
            Verdict::Throttled(Duration::from_millis(1500))
        );
    }

    #[test]
    fn http_statuses_follow_the_otlp_spec() {
        assert_eq!(
            http_verdict(503, Some(" 7 ")),
            Verdict::Throttled(Duration::from_secs(7))
        );
        assert_eq!(http_verdict(429, Some("soon")), Verdict::Transient);
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        match http_verdict(429, Some(&httpdate::fmt_http_date(later))) {
            Verdict::Throttled(d) => assert!(d > Duration::from_secs(85), "{d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            http_verdict(503, Some("Fri, 31 Dec 1999 23:59:59 GMT")),
            Verdict::Throttled(Duration::ZERO)
        );
        assert_eq!(http_verdict(502, None), Verdict::Transient);
        assert_eq!(http_verdict(0, None), Verdict::Transient);
        assert_eq!(http_verdict(400, None), Verdict::Permanent);
        assert_eq!(http_verdict(404, None), Verdict::Permanent);
    }
}
