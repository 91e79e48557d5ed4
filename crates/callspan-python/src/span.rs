//! The span lifecycle: the one sequence every entry point follows to turn a call into a span.
//!
//! 1. [`decide`]: find the parent (this thread's open call, else the task's published span, else
//!    the current OpenTelemetry span), take its trace or draw a new one, and ask
//!    [`callspan_core::hot::HotState::decide`] (sampler → the function's own rate → rate limit).
//! 2. [`read_caller`]: the caller's code, call line and class from a given frame (the decorator
//!    passes the frame current when it is called, which is the caller's; a profile hook passes
//!    the callee frame's `f_back`), the thread, and the outer stack if configured.
//! 3. [`OpenSpan::new`] draws the span id; [`enter`] makes the span current while its code runs
//!    (the thread's context stack, the task's `ContextVar` for coroutines, the OpenTelemetry
//!    context with `CALLSPAN_OTEL_CONTEXT`) and [`Active::exit`] undoes it. A plain call enters
//!    once; a coroutine or generator enters around each step and exits when the step suspends.
//! 4. [`finish`]: end time (a span reads [`clock::ticks`] at its start and end and converts
//!    both to Unix time here: the clock's cheapest reading on the call's path),
//!    `CALLSPAN_MIN_DURATION`, the exception, submit; then diagnostics.
//!
//! When every call is counted (a metrics exporter or `CALLSPAN_REPORT`: [`HotState::counting`]),
//! [`finish`] also counts the sampled call on its caller edge, with the span as the edge's
//! exemplar; an unsampled call reads its caller site, times itself in [`clock::ticks`] and
//! ends with [`count_call`] ([`CountedCall`]). A plain call, which ends on the thread it
//! started on, reads its site together with this thread's counters of its edge from one
//! per-thread call-site cache ([`counted_caller_site`]: [`read_counted_caller`] when sampled,
//! [`CountedHere`] when not) and bumps them directly at the end ([`finish_here`],
//! [`CountedHere::returned`]); a coroutine, a generator or a profiled call, which may end on
//! another thread, counts by the edge's key. Turned off, this costs one relaxed load per
//! unsampled call.
//!
//! The decorator's vectorcall (`traced`), the coroutine and generator wrappers (`steps`) and the
//! profile hook (`hook`) all use these functions; none of them repeats a step. A plain call's
//! steps 2–4, as an entry point keeps them across its call into Python, are [`PlainCall`]: the
//! decorator's calls and the 3.9–3.11 profile hook's plain calls are the same code. Each entry point
//! looks up the thread's [`PerThread`] state once per call and passes it to every step, which
//! keeps the thread-local look-ups of a call to one (see `callspan_core::per_thread`).

use crate::python_frame::{self, CallerFrame};
use crate::{caller, diagnostics, exception, otel, task_context, thread};
use callspan_core::clock::{self, now_unix_ns};
use callspan_core::config::Capture;
use callspan_core::context::{self, ParentSpan};
use callspan_core::edges::{self, EdgeCounters, EdgeKey, Exemplar};
use callspan_core::hot::{self, FunctionRate, HotState};
use callspan_core::per_thread::PerThread;
use callspan_core::record::{
    CallerSite, ClassId, ExceptionInfo, FunctionId, SpanRecord, Stack, ThreadKey,
};
use callspan_core::{registry, stats};
use callspan_otlp::pipeline;
use pyo3::ffi;
use pyo3::prelude::*;
use std::mem::ManuallyDrop;

/// The innermost span on this thread (`local`), else the one published in this task's context,
/// else the current OpenTelemetry span. With `task_first`, the task's published span comes
/// before the thread's: the profile hook sees a coroutine only at its first step, possibly in a
/// task of its own, where the span published in the task is the one that created it.
#[inline]
pub(crate) fn current_parent(
    py: Python<'_>,
    local: &PerThread,
    task_first: bool,
) -> Option<ParentSpan> {
    let task = || task_context::parent(py);
    let own = if task_first {
        task().or_else(|| local.context.current())
    } else {
        local.context.current().or_else(task)
    };
    own.or_else(|| otel::current_parent(py, local))
}

/// What [`decide`] found for one call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decision {
    /// Not recorded. Its children inherit `trace_id` and "not sampled"; 0 means the call belongs
    /// to no trace (the sampler never samples), so a child starts its own trace should the
    /// sampler be reconfigured meanwhile.
    Unsampled { trace_id: u128 },
    /// Recorded, in `trace_id`, as a child of `parent`.
    Sampled {
        trace_id: u128,
        parent: Option<ParentSpan>,
    },
}

impl Decision {
    /// The context entry of an unsampled call, which makes its children inherit the decision.
    #[inline]
    pub(crate) fn unsampled_marker(trace_id: u128) -> ParentSpan {
        ParentSpan {
            trace_id,
            span_id: 0,
            sampled: false,
            remote: false,
        }
    }
}

/// Step 1: whether this call of `function` becomes a span.
#[inline]
pub(crate) fn decide(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    function: FunctionId,
    rate: &FunctionRate,
) -> Decision {
    decide_under(hot, local, function, rate, || {
        current_parent(py, local, false)
    })
}

/// [`decide`] with the parent found by `find_parent` (called only when the sampler may sample;
/// the profile hook looks in the task first for a coroutine, see [`current_parent`]).
#[inline]
pub(crate) fn decide_under(
    hot: &HotState,
    local: &PerThread,
    function: FunctionId,
    rate: &FunctionRate,
    find_parent: impl FnOnce() -> Option<ParentSpan>,
) -> Decision {
    let rule = hot.sampling_rule();
    if rule.never_samples() {
        // always_off (or a ratio of 0): no parent can change this decision, so none is looked
        // up and no trace id is drawn.
        return Decision::Unsampled { trace_id: 0 };
    }
    let parent = find_parent();
    let trace_id = match parent {
        // Trace id 0: the parent is an always_off call, which belongs to no trace.
        Some(parent) if parent.trace_id != 0 => parent.trace_id,
        _ => local.ids.trace_id(),
    };
    if hot.decide(
        rule,
        parent.map(|p| p.sampled),
        trace_id,
        rate,
        function,
        now_unix_ns,
    ) {
        Decision::Sampled { trace_id, parent }
    } else {
        Decision::Unsampled { trace_id }
    }
}

/// Who called, as the configuration asks to capture it.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    site: CallerSite,
    thread: ThreadKey,
    /// Boxed as the record carries it: one pointer while the call runs.
    stack: Option<Stack>,
    /// `caller.instance.id` (0: not captured).
    instance: u64,
    /// `CALLSPAN_CAPTURE` bits not captured.
    omitted: u8,
}

/// Step 2: the caller attributes of a call made from `frame` (None: called from C).
#[inline]
pub(crate) fn read_caller(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    frame: Option<CallerFrame<'_>>,
) -> Caller {
    let site = caller_site(py, hot, local, frame.as_ref());
    caller_at(py, hot, local, frame, site)
}

/// [`read_caller`] for a call of `function` that ends on this thread (a plain call): when calls
/// are counted, the site comes with this thread's counters of the call's edge
/// ([`counted_caller_site`]), for [`finish_here`].
#[inline]
pub(crate) fn read_counted_caller<'t>(
    py: Python<'_>,
    hot: &HotState,
    local: &'t PerThread,
    function: FunctionId,
    frame: Option<CallerFrame<'_>>,
) -> (Caller, Option<EdgeCounters<'t>>) {
    let (site, edge) = if hot.counting() {
        let (site, edge) = counted_caller_site(py, hot, local, function, frame.as_ref());
        (site, Some(edge))
    } else {
        (caller_site(py, hot, local, frame.as_ref()), None)
    };
    (caller_at(py, hot, local, frame, site), edge)
}

/// The caller attributes of a call made from `frame` whose site is `site`.
#[inline]
fn caller_at(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    frame: Option<CallerFrame<'_>>,
    site: CallerSite,
) -> Caller {
    let omitted = hot.omitted();
    let registry = registry::global();
    let instance = match frame {
        Some(frame) if hot.instance() => caller::instance_of(py, &frame, registry, local),
        _ => 0,
    };
    let depth = hot.stack_depth();
    let stack = match frame {
        Some(frame) if depth > 0 => {
            caller::outer_stack(py, &frame, registry, local, depth).map(Box::new)
        }
        _ => None,
    };
    // Last: a thread's first look-up runs `threading`'s Python code (the frame is not read
    // after it).
    let thread = if omitted & Capture::THREAD != 0 {
        0
    } else {
        thread::current_key(py, registry, local)
    };
    Caller {
        site,
        thread,
        stack,
        instance,
        omitted,
    }
}

/// The caller's code, call line and class (as `CALLSPAN_CAPTURE` asks) of a call made from
/// `frame`; all zeros when called from C.
#[inline]
pub(crate) fn caller_site(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    frame: Option<&CallerFrame<'_>>,
) -> CallerSite {
    let omitted = hot.omitted();
    match frame {
        Some(frame) if omitted & caller::FRAME_BITS != caller::FRAME_BITS => caller::site_of(
            py,
            frame,
            registry::global(),
            local,
            omitted & Capture::CLASS == 0,
        ),
        _ => CallerSite::default(),
    }
}

/// [`caller_site`] of a call of `function` that ends on this thread, with this thread's
/// counters of its edge (error 0): from the per-thread call-site cache
/// (`caller::counted_site_of`), which spares a call from a site seen before the line, the class
/// and the edge look-ups.
#[inline(always)]
pub(crate) fn counted_caller_site<'t>(
    py: Python<'_>,
    hot: &HotState,
    local: &'t PerThread,
    function: FunctionId,
    frame: Option<&CallerFrame<'_>>,
) -> (CallerSite, EdgeCounters<'t>) {
    match frame {
        Some(&frame) => caller::counted_site_of(py, frame, local, function, hot.omitted()),
        // The site is a constant, the counters a register: no temporary to merge through.
        None => (CallerSite::default(), siteless_edge(local, function)),
    }
}

/// This thread's counters of the edge of a call of `function` made from C (no site).
#[cold]
fn siteless_edge(local: &PerThread, function: FunctionId) -> EdgeCounters<'_> {
    local
        .edges
        .counters(EdgeKey::of(function, CallerSite::default(), 0))
}

/// Counts one finished call of `function` from `site` on its caller edge; `error` is the class
/// of the exception that ended it (0: it returned), `exemplar` the span of a sampled call.
#[inline]
pub(crate) fn count_call(
    function: FunctionId,
    site: CallerSite,
    duration_ns: u64,
    error: ClassId,
    exemplar: Option<&Exemplar>,
) {
    edges::count(EdgeKey::of(function, site, error), duration_ns, exemplar);
}

/// [`count_call`] in the counters of the thread whose state is `local` (the thread the call ends
/// on), with its counters of the returned call's edge at hand when the caller has them (`edge`,
/// from [`counted_caller_site`]): a call that returned is counted on them, one that raised on
/// its error's edge.
#[inline]
fn count_on(
    local: &PerThread,
    edge: Option<EdgeCounters<'_>>,
    function: FunctionId,
    site: CallerSite,
    duration_ns: u64,
    error: ClassId,
    exemplar: Option<&Exemplar>,
) {
    if error == 0 {
        if let Some(edge) = edge {
            return edge.add(duration_ns, exemplar);
        }
    }
    count_in(
        local,
        EdgeKey::of(function, site, error),
        duration_ns,
        exemplar,
    );
}

/// [`count_on`] by the edge's key: out of line, so that the span's end, which inlines
/// [`count_on`], stays small enough to be inlined where the call ends.
#[inline(never)]
fn count_in(local: &PerThread, key: EdgeKey, duration_ns: u64, exemplar: Option<&Exemplar>) {
    local.edges.count(key, duration_ns, exemplar);
}

/// The class of the exception a call is raising now, when calls are counted (else 0, unread).
#[inline]
pub(crate) fn raised_class(py: Python<'_>, hot: &HotState) -> ClassId {
    if hot.counting() {
        caller::raised_class(py)
    } else {
        0
    }
}

/// An unsampled call being counted: where it was called from and when its code started, in
/// [`clock::ticks`] (a duration needs no Unix time, and a tick is the cheapest reading).
///
/// `repr(C)`, the site first: laid out as the caches hold a site (8-byte aligned), it is copied
/// from them in two moves instead of through a temporary.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct CountedCall {
    site: CallerSite,
    function: FunctionId,
    /// 0 until its code first runs (a generator starts at its first step).
    start_ticks: u64,
}

impl CountedCall {
    /// A call of `function` from `site` whose code starts now.
    #[inline]
    pub(crate) fn starting(function: FunctionId, site: CallerSite) -> CountedCall {
        CountedCall {
            function,
            site,
            start_ticks: clock::ticks(),
        }
    }

    /// A call whose code starts later ([`CountedCall::start`]): a generator's first step.
    pub(crate) fn not_started(function: FunctionId, site: CallerSite) -> CountedCall {
        CountedCall {
            function,
            site,
            start_ticks: 0,
        }
    }

    /// Starts the clock unless it runs already.
    #[inline]
    pub(crate) fn start(&mut self) {
        if self.start_ticks == 0 {
            self.start_ticks = clock::ticks();
        }
    }

    /// Whether its code has run at all.
    pub(crate) fn started(&self) -> bool {
        self.start_ticks != 0
    }

    /// Its duration so far (0: its code never ran).
    #[inline]
    fn elapsed_ns(&self) -> u64 {
        if self.started() {
            ns_since(self.start_ticks)
        } else {
            0
        }
    }

    /// Ends the call now: counts it, with `error` the class of the exception that ended it.
    #[inline]
    pub(crate) fn finish(self, error: ClassId) {
        count_call(self.function, self.site, self.elapsed_ns(), error, None);
    }

    /// [`Self::finish`] on this thread, whose state (`local`) is at hand.
    #[inline]
    pub(crate) fn finish_on(self, local: &PerThread, error: ClassId) {
        count_on(
            local,
            None,
            self.function,
            self.site,
            self.elapsed_ns(),
            error,
            None,
        );
    }
}

/// An unsampled plain call being counted, which ends on the thread it started on: a
/// [`CountedCall`] with this thread's counters of its edge at hand (`'t`: the thread's state).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CountedHere<'t> {
    call: CountedCall,
    edge: EdgeCounters<'t>,
}

impl<'t> CountedHere<'t> {
    /// A call of `function` made from `frame` whose code starts now.
    #[inline]
    pub(crate) fn starting(
        py: Python<'_>,
        hot: &HotState,
        local: &'t PerThread,
        function: FunctionId,
        frame: Option<&CallerFrame<'_>>,
    ) -> CountedHere<'t> {
        let (site, edge) = counted_caller_site(py, hot, local, function, frame);
        CountedHere {
            call: CountedCall::starting(function, site),
            edge,
        }
    }

    /// Ends the call now: counts it as returned, on its edge's counters (a separate function
    /// from [`Self::raised`], so that the common end compiles to no error check at all).
    #[inline]
    pub(crate) fn returned(self) {
        // Started when made: no `started` check.
        self.edge.add(ns_since(self.call.start_ticks), None);
    }

    /// Ends the call now on its thread (`local`): counts it, `error` being the class of the
    /// exception that ended it.
    #[inline]
    pub(crate) fn raised(self, local: &PerThread, error: ClassId) {
        let call = self.call;
        count_on(
            local,
            Some(self.edge),
            call.function,
            call.site,
            ns_since(call.start_ticks),
            error,
            None,
        );
    }
}

/// Nanoseconds since `start_ticks` ([`clock::ticks`]).
#[inline(always)]
fn ns_since(start_ticks: u64) -> u64 {
    clock::ticks_to_ns(clock::ticks().saturating_sub(start_ticks))
}

/// A sampled call between its start and its end.
#[derive(Debug)]
pub(crate) struct OpenSpan {
    trace_id: u128,
    span_id: u64,
    /// The parent's span id (0: none). Of the parent only this and `parent_is_remote` are
    /// kept, which keeps a running call small (the profile hook moves it to and from its stack).
    parent_span_id: u64,
    function: FunctionId,
    parent_is_remote: bool,
    caller: Caller,
    /// When the span's code first ran, in [`clock::ticks`] (converted to Unix time with the
    /// end, by [`finish`]); 0 until then (a generator starts at its first step).
    start_ticks: u64,
}

impl OpenSpan {
    /// Step 3a: a new span of `function` in `trace_id` under `parent`, called by `caller`, its
    /// id drawn from this thread's generator (`local`).
    #[inline]
    pub(crate) fn new(
        local: &PerThread,
        trace_id: u128,
        parent: Option<ParentSpan>,
        function: FunctionId,
        caller: Caller,
    ) -> OpenSpan {
        OpenSpan {
            trace_id,
            span_id: local.ids.span_id(),
            parent_span_id: parent.map_or(0, |p| p.span_id),
            function,
            parent_is_remote: parent.is_some_and(|p| p.remote),
            caller,
            start_ticks: 0,
        }
    }

    /// This span as the parent of calls made while it runs.
    #[inline]
    pub(crate) fn as_parent(&self) -> ParentSpan {
        ParentSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: true,
            remote: false,
        }
    }

    /// Starts the clock unless it runs already.
    #[inline]
    pub(crate) fn start_clock(&mut self) {
        if self.start_ticks == 0 {
            self.start_ticks = clock::ticks();
        }
    }

    /// Whether the span's code has run at all.
    pub(crate) fn started(&self) -> bool {
        self.start_ticks != 0
    }
}

/// A span made current by [`enter`]; [`Active::exit`] makes it not current again. Dropped
/// without `exit` (an unwind, a profiled call abandoned at stop), it still pops the thread's
/// context stack.
#[must_use]
pub(crate) struct Active {
    otel_token: Option<Py<PyAny>>,
    task_token: Option<Py<PyAny>>,
}

/// Step 3b: makes `span` the current span while its code runs: on the thread's context stack,
/// published in the task's context when `publish` (coroutines and async generators, whose work
/// may leave the thread with the context), and, for a sampled span under
/// `CALLSPAN_OTEL_CONTEXT`, as the current OpenTelemetry span.
#[inline(always)]
pub(crate) fn enter(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    span: ParentSpan,
    publish: bool,
) -> Active {
    local.context.push(span);
    let task_token = if publish {
        task_context::publish(py, span).ok().map(Bound::unbind)
    } else {
        None
    };
    let otel_token = if span.sampled && hot.otel_context() {
        otel::attach(py, span.trace_id, span.span_id)
    } else {
        None
    };
    Active {
        otel_token,
        task_token,
    }
}

impl Active {
    /// Undoes [`enter`] on this thread (`local`), keeping an exception the span's code raised.
    #[inline]
    pub(crate) fn exit(mut self, py: Python<'_>, local: &PerThread) {
        let otel_token = self.otel_token.take();
        let task_token = self.task_token.take();
        if otel_token.is_some() || task_token.is_some() {
            keeping_error(py, || {
                if let Some(token) = otel_token {
                    otel::detach(py, token);
                }
                if let Some(token) = task_token {
                    let _ = task_context::reset(py, token.bind(py));
                }
            });
        }
        local.context.pop();
        // Popped: the drop would pop again (both tokens are taken, nothing is leaked).
        std::mem::forget(self);
    }
}

impl Drop for Active {
    #[inline]
    fn drop(&mut self) {
        context::pop();
    }
}

/// Runs `f` (which calls Python) with any pending exception set aside and restored after.
fn keeping_error(py: Python<'_>, f: impl FnOnce()) {
    // SAFETY: GIL held.
    if unsafe { ffi::PyErr_Occurred() }.is_null() {
        return f();
    }
    let pending = PyErr::take(py);
    f();
    if let Some(e) = pending {
        e.restore(py);
    }
}

/// Step 4: ends `span`, whose code stopped running at `end_ticks` ([`clock::ticks`]: both of a
/// span's readings are converted to Unix time here, together); `error` describes the exception
/// that ended it, if any (asked only when the span is kept and, for a call that `raised`, the
/// queue is not full: a span the full queue drops is counted as dropped without it), and
/// `error_class` is its class ([`raised_class`]; 0: none). Counts the call on its caller edge when calls are counted, submits the span unless shorter than
/// `CALLSPAN_MIN_DURATION`, then forwards pending diagnostics to Python `logging` (keeping a
/// pending exception).
#[allow(clippy::too_many_arguments)] // the span, how it ended, and the thread's state
#[inline]
pub(crate) fn finish(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    span: OpenSpan,
    end_ticks: u64,
    error_class: ClassId,
    raised: bool,
    error: impl FnOnce() -> Option<ExceptionInfo>,
) {
    finish_here(
        py,
        hot,
        local,
        span,
        None,
        end_ticks,
        error_class,
        raised,
        error,
    );
}

/// [`finish`] for a call that ends on the thread it started on, with this thread's counters of
/// its edge from [`read_counted_caller`] (`edge`; None: count by the edge's key).
#[allow(clippy::too_many_arguments)] // `finish`'s eight and the edge's counters
#[inline]
pub(crate) fn finish_here(
    py: Python<'_>,
    hot: &HotState,
    local: &PerThread,
    span: OpenSpan,
    edge: Option<EdgeCounters<'_>>,
    end_ticks: u64,
    error_class: ClassId,
    raised: bool,
    error: impl FnOnce() -> Option<ExceptionInfo>,
) {
    let start_ticks = if span.started() {
        span.start_ticks
    } else {
        end_ticks
    };
    let (start_unix_ns, end_unix_ns) = clock::span_unix_ns(start_ticks, end_ticks);
    let duration_ns = end_unix_ns - start_unix_ns;
    let kept = duration_ns >= hot.min_duration_ns();
    if hot.counting() {
        // A span too short to keep is no exemplar: it never arrives.
        let exemplar = kept.then_some(Exemplar {
            trace_id: span.trace_id,
            span_id: span.span_id,
            duration_ns,
            time_unix_ns: end_unix_ns,
        });
        count_on(
            local,
            edge,
            span.function,
            span.caller.site,
            duration_ns,
            error_class,
            exemplar.as_ref(),
        );
    }
    if !kept {
        stats::count_below_min_duration();
    } else if !(raised && pipeline::global().dropped_if_full(local)) {
        // (Describing the exception runs its `__str__`: not for a span the queue would drop.)
        let record = SpanRecord {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            parent_is_remote: span.parent_is_remote,
            start_unix_ns,
            end_unix_ns,
            function: span.function,
            caller: span.caller.site,
            thread: span.caller.thread,
            error: error().map(Box::new),
            omitted: span.caller.omitted,
            instance: span.caller.instance,
            stack: span.caller.stack,
        };
        pipeline::global().submit(record, local);
    }
    if callspan_otlp::diagnostic::pending() {
        diagnostics::forward(py);
    }
}

/// A plain call (not a coroutine's or generator's) between its start and its end, as an entry
/// point keeps it across its call into Python: the decorator's calls, and the 3.9–3.11 profile
/// hook's. Nothing in it has a destructor there (`ManuallyDrop`; see `thread_exit`). A plain
/// call ends on the thread it started on (`'t`: that thread's state), so when calls are counted
/// it keeps that thread's counters of its edge across the call.
pub(crate) enum PlainCall<'t> {
    /// Not sampled: its marker is current (and it is counted, when calls are counted).
    Unsampled(ManuallyDrop<Active>, Option<CountedHere<'t>>),
    /// Sampled: its span is current (with its edge's counters, when calls are counted).
    Sampled(ManuallyDrop<(OpenSpan, Active)>, Option<EdgeCounters<'t>>),
}

impl<'t> PlainCall<'t> {
    /// Steps 2 and 3 for a plain call of `function` decided as `decision` ([`decide`]): the
    /// caller is the frame current now, read when the call is sampled or counted.
    ///
    /// # Safety
    /// GIL held; the frame current now is the caller's (no frame of the callee runs yet).
    #[inline(always)]
    pub(crate) unsafe fn start(
        py: Python<'_>,
        hot: &HotState,
        local: &'t PerThread,
        function: FunctionId,
        decision: Decision,
    ) -> PlainCall<'t> {
        match decision {
            Decision::Unsampled { trace_id } => {
                let counted = hot.counting().then(|| {
                    // SAFETY: the caller's contract.
                    let frame = unsafe { python_frame::caller_frame(py) };
                    CountedHere::starting(py, hot, local, function, frame.as_ref())
                });
                let active = enter(py, hot, local, Decision::unsampled_marker(trace_id), false);
                PlainCall::Unsampled(ManuallyDrop::new(active), counted)
            }
            Decision::Sampled { trace_id, parent } => {
                // SAFETY: the caller's contract.
                let frame = unsafe { python_frame::caller_frame(py) };
                let (caller, edge) = read_counted_caller(py, hot, local, function, frame);
                let mut open = OpenSpan::new(local, trace_id, parent, function, caller);
                let active = enter(py, hot, local, open.as_parent(), false);
                open.start_clock();
                PlainCall::Sampled(ManuallyDrop::new((open, active)), edge)
            }
        }
    }

    /// Step 4: the call returned `result` (NULL: the exception set now ended it; it is described
    /// and left set).
    ///
    /// # Safety
    /// GIL held; `local` is the state of the thread the call started on.
    #[inline(always)]
    pub(crate) unsafe fn end(self, local: &PerThread, result: *mut ffi::PyObject) {
        // SAFETY: the caller's contract.
        let py = unsafe { Python::assume_attached() };
        match self {
            PlainCall::Unsampled(active, counted) => {
                ManuallyDrop::into_inner(active).exit(py, local);
                if let Some(counted) = counted {
                    if result.is_null() {
                        counted.raised(local, raised_class(py, hot::state()));
                    } else {
                        counted.returned();
                    }
                }
            }
            PlainCall::Sampled(call, edge) => {
                let end_ticks = clock::ticks();
                let (open, active) = ManuallyDrop::into_inner(call);
                active.exit(py, local);
                let hot = hot::state();
                let error_class = if result.is_null() {
                    raised_class(py, hot)
                } else {
                    0
                };
                let raised = result.is_null();
                finish_here(
                    py,
                    hot,
                    local,
                    open,
                    edge,
                    end_ticks,
                    error_class,
                    raised,
                    || raised.then(|| exception::capture_current(py)),
                );
            }
        }
    }
}
