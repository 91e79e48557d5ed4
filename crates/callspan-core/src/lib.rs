//! callspan's hot-path data: everything a traced call touches before the exporter takes over.
//!
//! A traced call asks [`hot::HotState::decide`] for a decision (the [`sampler`], the function's
//! own rate, the rate limit), reads two timestamps from the
//! [`clock`], takes ids from [`ids`], and pushes one fixed-size [`record::SpanRecord`] into the
//! bounded [`sink::SpanSink`]. Strings never travel with a record: code objects, classes and
//! threads are interned once in the [`registry::Registry`] and records carry small integer ids.
//! [`context`] keeps the per-thread stack of open spans that makes nested calls parent and child,
//! [`stats`] counts everything, and [`config`] is the one place every environment variable is read.
//! What a call keeps per thread (that stack, the id generator, the call counters, the binding's
//! caches) is one thread-local, [`per_thread::PerThread`], looked up once per call.
//!
//! ```
//! use callspan_core::{record::SpanRecord, sink::SpanSink};
//! let sink = SpanSink::new(8);
//! assert!(sink.push(SpanRecord::default()));
//! assert_eq!(sink.len(), 1);
//! ```

pub mod clock;
pub mod config;
pub mod context;
pub mod edges;
pub mod fork;
pub mod hot;
pub mod ids;
pub mod per_thread;
pub mod profile_filter;
pub mod record;
pub mod registry;
pub mod sampler;
pub mod sink;
pub mod stats;
pub mod thread_slots;
