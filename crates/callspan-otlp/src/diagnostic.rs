//! Warnings from the exporter side, collected for Python's `logging`, rate-limited.
//!
//! The exporter thread must never call into Python, so diagnostics (callspan's own `tracing`
//! events, and any the opentelemetry crates or tonic log at warning level) land in a bounded buffer here. The binding
//! drains it from a thread that holds the GIL anyway (a traced call, `flush()`, `stats()`) and
//! hands each message to the `callspan` logger. Each callsite speaks at most once per
//! [`RATE_LIMIT`]; what it was not allowed to say is counted and mentioned next time.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One callsite reports at most once per this interval.
pub const RATE_LIMIT: Duration = Duration::from_secs(10);
/// Messages kept while nobody drains them; older ones are counted and discarded.
const CAPACITY: usize = 256;

/// Target of configuration warnings: rate-limited per message (one per bad setting).
pub const CONFIG_TARGET: &str = "callspan::config";

/// Target of warnings their emitter rate-limits itself (each carries counts the next one does
/// not repeat): never silenced here.
pub const SELF_LIMITED_TARGET: &str = "callspan::self_limited";

/// A message for the `callspan` logger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// `tracing` level: ERROR, WARN, INFO, ...
    pub level: Level,
    /// The emitting module, e.g. `callspan_otlp::exporter`.
    pub target: String,
    /// The formatted message and fields.
    pub message: String,
}

#[derive(Default)]
struct Buffer {
    messages: Vec<Diagnostic>,
    /// Per callsite: when it last spoke, and how often it was silenced since.
    last: HashMap<usize, (Instant, u64)>,
    overflowed: u64,
}

impl Buffer {
    /// Keeps a message for the next [`drain`], discarding (and counting) the oldest when full.
    fn push(&mut self, level: Level, target: &str, message: String) {
        if self.messages.len() >= CAPACITY {
            self.messages.remove(0);
            self.overflowed += 1;
        }
        self.messages.push(Diagnostic {
            level,
            target: target.to_owned(),
            message,
        });
        PENDING.store(true, Ordering::Relaxed);
    }
}

static BUFFER: Mutex<Option<Buffer>> = Mutex::new(None);
static PENDING: AtomicBool = AtomicBool::new(false);

/// True when [`drain`] has something; one relaxed load, cheap enough for the hot path.
#[inline]
pub fn pending() -> bool {
    PENDING.load(Ordering::Relaxed)
}

/// Takes every buffered message.
pub fn drain() -> Vec<Diagnostic> {
    PENDING.store(false, Ordering::Relaxed);
    let mut guard = BUFFER.lock();
    let Some(buffer) = guard.as_mut() else {
        return Vec::new();
    };
    let mut out = std::mem::take(&mut buffer.messages);
    if buffer.overflowed > 0 {
        out.push(Diagnostic {
            level: Level::WARN,
            target: "callspan".into(),
            message: format!(
                "{} diagnostic messages were discarded unread",
                buffer.overflowed
            ),
        });
        buffer.overflowed = 0;
    }
    out
}

/// Adds a message from `callsite`, subject to the rate limit.
fn record(callsite: usize, level: Level, target: &str, mut message: String) {
    let now = Instant::now();
    let mut guard = BUFFER.lock();
    let buffer = guard.get_or_insert_with(Buffer::default);
    match buffer.last.get_mut(&callsite) {
        Some((last, silenced)) if now.duration_since(*last) < RATE_LIMIT => {
            *silenced += 1;
            return;
        }
        Some((last, silenced)) => {
            if *silenced > 0 {
                let _ = write!(message, " ({} similar messages suppressed)", *silenced);
            }
            *last = now;
            *silenced = 0;
        }
        None => {
            buffer.last.insert(callsite, (now, 0));
        }
    }
    buffer.push(level, target, message);
}

/// Adds a message that its emitter rate-limits itself.
fn record_unlimited(level: Level, target: &str, message: String) {
    BUFFER
        .lock()
        .get_or_insert_with(Buffer::default)
        .push(level, target, message);
}

/// Holds the buffer lock across `fork()`.
pub fn lock_for_fork() {
    std::mem::forget(BUFFER.lock());
}

/// Releases the lock taken by [`lock_for_fork`].
///
/// # Safety
/// Must be paired with exactly one earlier `lock_for_fork` in this process image.
pub unsafe fn unlock_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe { BUFFER.force_unlock() };
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// The `tracing` layer that feeds the buffer with WARN and ERROR events.
#[derive(Debug, Default)]
pub struct DiagnosticLayer;

impl<S: Subscriber> Layer<S> for DiagnosticLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        if message.is_empty() {
            // opentelemetry's internal logs carry everything in fields, named by `name`.
            message = meta.name().to_owned();
        }
        message.push_str(&visitor.fields);
        if meta.target() == SELF_LIMITED_TARGET {
            record_unlimited(*meta.level(), meta.target(), message);
            return;
        }
        let key = if meta.target() == CONFIG_TARGET {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            message.hash(&mut h);
            h.finish() as usize
        } else {
            meta.callsite_hash_key()
        };
        record(key, *meta.level(), meta.target(), message);
    }
}

trait CallsiteKey {
    fn callsite_hash_key(&self) -> usize;
}

impl CallsiteKey for tracing::Metadata<'_> {
    fn callsite_hash_key(&self) -> usize {
        // The metadata of a callsite is a static; its address identifies the callsite.
        self as *const _ as usize
    }
}

/// Makes [`DiagnosticLayer`] this library's global `tracing` subscriber (once; later calls and
/// a subscriber installed by someone else are left alone).
pub fn install() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(DiagnosticLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer is process-global; tests that drain it take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn warnings_are_buffered_and_rate_limited() {
        let _turn = TURN.lock();
        install();
        drain();
        for i in 0..5 {
            tracing::warn!(attempt = i, "export failed");
        }
        tracing::info!("not forwarded");
        let got = drain();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].message.starts_with("export failed"), "{got:?}");
        assert!(got[0].message.contains("attempt=0"), "{got:?}");
        assert_eq!(got[0].level, Level::WARN);
        assert!(!pending());
    }

    #[test]
    fn suppressed_messages_are_counted_later() {
        let _turn = TURN.lock();
        drain();
        record(1, Level::WARN, "t", "a".into());
        record(1, Level::WARN, "t", "b".into());
        // Pretend the interval passed.
        BUFFER.lock().as_mut().unwrap().last.get_mut(&1).unwrap().0 -= RATE_LIMIT;
        record(1, Level::WARN, "t", "c".into());
        let got: Vec<String> = drain().into_iter().map(|d| d.message).collect();
        assert_eq!(
            got,
            vec![
                "a".to_owned(),
                "c (1 similar messages suppressed)".to_owned()
            ]
        );
    }
}
