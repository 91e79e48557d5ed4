//! The fixed-size record a traced call leaves behind: ids and timestamps, no strings.
//!
//! Everything a span needs that is the same for many calls (names, files, classes, threads) lives
//! in the [`crate::registry::Registry`]; a record only points at it. The rare error case carries
//! its own strings in a box so that the common record stays small.

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

/// An exception that escaped a traced call, captured as strings while the GIL was held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExceptionInfo {
    /// Module-qualified exception type, e.g. `ValueError` or `imgpipe.TransformError`.
    pub type_name: String,
    /// `str(exception)`.
    pub message: String,
    /// The formatted traceback.
    pub stacktrace: String,
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
    /// The frames beyond the caller, innermost first (`CALLSPAN_STACK_DEPTH`).
    pub stack: Option<Box<[CallerSite]>>,
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
