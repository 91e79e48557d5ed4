//! The fixed-size record a traced call leaves behind: ids and timestamps, no strings.
//!
//! Everything a span needs that is the same for many calls (names, files, classes, threads) lives
//! in the [`crate::registry::Registry`]; a record only points at it. The rare error case carries
//! its own strings in a box so that the common record stays small.

use std::sync::Arc;

/// Index of a traced function (the callee) in the registry. Ids start at 1.
pub type FunctionId = u32;
/// Index of a calling code object in the registry; 0 means "no Python caller".
pub type CodeId = u32;
/// Index of a caller class in the registry; 0 means "the caller had no `self`/`cls`".
pub type ClassId = u32;
/// Index of a thread (ident + name) in the registry; 0 means unknown.
pub type ThreadKey = u32;

/// Where a traced function was called from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerSite {
    /// The calling frame's code object.
    pub code: CodeId,
    /// The line of the call itself in the caller's file.
    pub line: u32,
    /// The class of the caller's `self` (or its `cls`), if it had one.
    pub class: ClassId,
}

/// The outer caller chain of a span (see [`SpanRecord::stack`]).
#[allow(clippy::redundant_allocation)]
pub type Stack = Box<Box<[CallerSite]>>;

/// An exception that escaped a traced call, captured while the GIL was held.
///
/// An exception unwinding through N traced layers is described once: every layer's record shares
/// the same type name and message, and the traceback is a shared list to which each layer only
/// prepends the frames it added. The `exception.stacktrace` text is rendered on the exporter
/// thread from these code ids and lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExceptionInfo {
    /// Module-qualified exception type, e.g. `ValueError` or `imgpipe.TransformError`.
    pub type_name: Arc<str>,
    /// `str(exception)` (read from `args` without calling `__str__` where that is the same).
    pub message: Arc<str>,
    /// The exception's `__traceback__` when it left the traced call, outermost frame first.
    pub traceback: Option<Arc<TracebackEntry>>,
}

/// One frame of an exception's traceback and the frames below it (towards where it was raised).
#[derive(Debug, PartialEq, Eq)]
pub struct TracebackEntry {
    /// The frame's code object and line (`class` unused).
    pub site: CallerSite,
    /// The next frame inwards; shared by the records of every layer the exception crossed.
    pub next: Option<Arc<TracebackEntry>>,
}

impl TracebackEntry {
    /// The frames from this one inwards (the order Python prints them).
    pub fn iter(&self) -> impl Iterator<Item = &CallerSite> {
        std::iter::successors(Some(self), |entry| entry.next.as_deref()).map(|entry| &entry.site)
    }
}

impl Drop for TracebackEntry {
    /// Frees a long unshared tail iteratively: recursion depth 10 000 must not blow the stack.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(entry) = next {
            next = match Arc::try_unwrap(entry) {
                Ok(mut owned) => owned.next.take(),
                Err(_) => None,
            };
        }
    }
}

/// One finished traced call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanRecord {
    /// 128-bit trace id; never zero for a real span.
    pub trace_id: u128,
    /// 64-bit span id; never zero for a real span.
    pub span_id: u64,
    /// The parent span's id, 0 for a root span.
    pub parent_span_id: u64,
    /// Whether the parent came from another process or SDK (OpenTelemetry interop).
    pub parent_is_remote: bool,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// The traced function that was called.
    pub function: FunctionId,
    /// Who called it.
    pub caller: CallerSite,
    /// The thread the call ran on.
    pub thread: ThreadKey,
    /// Set when the call raised.
    pub error: Option<Box<ExceptionInfo>>,
    /// Caller attributes *not* captured (`CALLSPAN_CAPTURE` bits; 0: all of them).
    pub omitted: u8,
    /// `caller.instance.id`: the address (`id()`) of the caller's `self`/`cls`, with
    /// `CALLSPAN_CAPTURE=...,instance`; 0: not captured or none.
    pub instance: u64,
    /// The frames beyond the caller, innermost first (`CALLSPAN_STACK_DEPTH`). Boxed twice so
    /// that the record holds a thin pointer: the rare stack pays one allocation more, every
    /// record keeps 8 bytes.
    pub stack: Option<Stack>,
}

impl SpanRecord {
    /// Duration of the call in nanoseconds (0 if the clock went backwards, which it cannot).
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_stays_small() {
        // The queue holds many of these; a record growing past a cache line pair is a regression.
        assert!(
            std::mem::size_of::<SpanRecord>() <= 96,
            "{}",
            std::mem::size_of::<SpanRecord>()
        );
    }

    #[test]
    fn a_deep_traceback_is_freed_without_recursion() {
        let mut head = None;
        for line in 0..200_000 {
            head = Some(Arc::new(TracebackEntry {
                site: CallerSite {
                    code: 1,
                    line,
                    class: 0,
                },
                next: head,
            }));
        }
        let head = head.unwrap();
        assert_eq!(head.iter().count(), 200_000);
        assert_eq!(head.iter().next().unwrap().line, 199_999);
        drop(head);
    }

    #[test]
    fn duration_saturates() {
        let r = SpanRecord {
            start_unix_ns: 10,
            end_unix_ns: 25,
            ..Default::default()
        };
        assert_eq!(r.duration_ns(), 15);
        let r = SpanRecord {
            start_unix_ns: 30,
            end_unix_ns: 25,
            ..Default::default()
        };
        assert_eq!(r.duration_ns(), 0);
    }
}
