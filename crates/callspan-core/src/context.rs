//! The per-thread stack of open traced calls, which makes nested calls parent and child.
//!
//! A traced call pushes its trace id, span id and sampling decision before calling the function
//! and pops them after. Unsampled calls push too: their children must inherit "not sampled"
//! under a parent-based sampler instead of starting new root traces.

use crate::per_thread;
use std::cell::RefCell;

/// The span a nested traced call would be the child of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentSpan {
    /// The trace the parent belongs to.
    pub trace_id: u128,
    /// The parent's span id.
    pub span_id: u64,
    /// Whether the parent was sampled.
    pub sampled: bool,
    /// Whether the parent came from outside callspan (another SDK or process).
    pub remote: bool,
}

/// One thread's stack (a field of [`crate::per_thread::PerThread`]).
#[derive(Debug)]
pub struct ContextStack(RefCell<Vec<ParentSpan>>);

impl ContextStack {
    pub(crate) const fn new() -> ContextStack {
        ContextStack(RefCell::new(Vec::new()))
    }

    /// The innermost open traced call.
    #[inline]
    pub fn current(&self) -> Option<ParentSpan> {
        self.0.borrow().last().copied()
    }

    /// Makes `span` the current span until the matching [`ContextStack::pop`].
    #[inline]
    pub fn push(&self, span: ParentSpan) {
        self.0.borrow_mut().push(span);
    }

    /// Ends the innermost open traced call.
    #[inline]
    pub fn pop(&self) {
        self.0.borrow_mut().pop();
    }

    /// How many traced calls are open.
    pub fn depth(&self) -> usize {
        self.0.borrow().len()
    }
}

/// The innermost open traced call on this thread.
#[inline]
pub fn current() -> Option<ParentSpan> {
    per_thread::with(|t| t.context.current()).flatten()
}

/// Makes `span` the current span of this thread until the matching [`pop`].
#[inline]
pub fn push(span: ParentSpan) {
    per_thread::with(|t| t.context.push(span));
}

/// Ends the innermost open traced call on this thread.
#[inline]
pub fn pop() {
    per_thread::with(|t| t.context.pop());
}

/// How many traced calls are open on this thread.
pub fn depth() -> usize {
    per_thread::with(|t| t.context.depth()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_push_pop() {
        assert_eq!(current(), None);
        let a = ParentSpan {
            trace_id: 1,
            span_id: 2,
            sampled: true,
            remote: false,
        };
        let b = ParentSpan {
            trace_id: 1,
            span_id: 3,
            sampled: true,
            remote: false,
        };
        push(a);
        push(b);
        assert_eq!(current(), Some(b));
        assert_eq!(depth(), 2);
        pop();
        assert_eq!(current(), Some(a));
        pop();
        assert_eq!(current(), None);
    }

    #[test]
    fn stacks_are_per_thread() {
        push(ParentSpan {
            trace_id: 9,
            span_id: 9,
            sampled: true,
            remote: false,
        });
        let other = std::thread::spawn(current).join().unwrap();
        assert_eq!(other, None);
        pop();
    }
}
