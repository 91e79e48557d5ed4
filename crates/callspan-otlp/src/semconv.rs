//! Every attribute name callspan writes: the span contract's keys (DESIGN.md), the exception
//! event's, and the resource's, in one place.
//!
//! The encoder (`encode.rs`), the resource (`resource.rs`), the console output
//! (`transport.rs`) and the tests all name attributes through these constants, so a key is
//! spelt once. The OpenTelemetry semantic-convention names are used where one exists
//! (`code.*`, `thread.*`, `exception.*`, `service.*`, `telemetry.sdk.*`, `process.pid`);
//! `caller.*` is callspan's own namespace for the calling site.

/// The traced function's qualified name (`imgpipe.Transformer.apply_transform`).
pub const CODE_FUNCTION_NAME: &str = "code.function.name";
/// The file the traced function is defined in.
pub const CODE_FILE_PATH: &str = "code.file.path";
/// The line the traced function is defined on.
pub const CODE_LINE_NUMBER: &str = "code.line.number";
/// The frames beyond the caller, most recent call last (`CALLSPAN_CAPTURE=stack`).
pub const CODE_STACKTRACE: &str = "code.stacktrace";

/// The calling function's qualified name.
pub const CALLER_FUNCTION_NAME: &str = "caller.function.name";
/// The calling function's file.
pub const CALLER_FILE_PATH: &str = "caller.file.path";
/// The line of the call in the caller.
pub const CALLER_LINE_NUMBER: &str = "caller.line.number";
/// The class of the caller's `self` or `cls`, when it has one.
pub const CALLER_CLASS_NAME: &str = "caller.class.name";
/// The caller's `self` (or `cls`) identity, as hex of its `id()` (`CALLSPAN_CAPTURE=instance`).
pub const CALLER_INSTANCE_ID: &str = "caller.instance.id";

/// The calling thread's `threading.get_ident()`.
pub const THREAD_ID: &str = "thread.id";
/// The calling thread's name.
pub const THREAD_NAME: &str = "thread.name";

/// The name of the span event that describes an exception.
pub const EXCEPTION_EVENT: &str = "exception";
/// The exception's qualified type name.
pub const EXCEPTION_TYPE: &str = "exception.type";
/// `str()` of the exception.
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// The formatted traceback.
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

/// The logical service (`OTEL_SERVICE_NAME`).
pub const SERVICE_NAME: &str = "service.name";
/// `callspan`.
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
/// `python`.
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
/// callspan's version.
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";
/// The exporting process's id.
pub const PROCESS_PID: &str = "process.pid";

/// The instrumentation scope every span is reported under (its version is callspan's).
pub const SCOPE_NAME: &str = "callspan";
