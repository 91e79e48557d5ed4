//! Build script for the PyO3 binding crate.
//!
//! 1. Re-exports PyO3's interpreter cfgs (`Py_3_9` … `Py_3_13`, `Py_LIMITED_API`, `Py_GIL_DISABLED`,
//!    `PyPy`, …) to this crate. Cargo cfgs are per crate: PyO3 sets them for itself only, so a crate
//!    that wants `#[cfg(Py_3_11)]` must ask `pyo3-build-config` for them (it reads the interpreter
//!    config PyO3's own build script exported through `links = "pyo3-python"`).
//! 2. Decides whether `src/python_frame/` may read CPython's frame structs directly
//!    (`cfg(callspan_frame_direct)`): only for a version-specific (non-abi3), GIL-enabled CPython
//!    3.9–3.13 build, the versions whose layouts that module declares and checks. Anything else uses
//!    the public-API fallback. `CALLSPAN_FRAME_PUBLIC_API=1` forces the fallback on 3.11+ (for tests
//!    and benchmarks; on 3.9/3.10 the direct route is already the public one plus public headers).

use pyo3_build_config::{GilUsed, PythonAbiKind, PythonImplementation};

fn main() {
    pyo3_build_config::use_pyo3_cfgs();

    println!("cargo:rustc-check-cfg=cfg(callspan_frame_direct)");
    println!("cargo:rerun-if-env-changed=CALLSPAN_FRAME_PUBLIC_API");
    println!("cargo:rerun-if-changed=build.rs");

    let config = pyo3_build_config::get();
    let version = config.version();
    // A build-time switch read by Cargo (rerun-if-env-changed above), not runtime configuration.
    #[allow(
        clippy::disallowed_methods,
        reason = "build scripts take their inputs from the build environment"
    )]
    let forced_public = std::env::var("CALLSPAN_FRAME_PUBLIC_API")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    let abi = config.target_abi();
    let known_layout = abi.implementation() == PythonImplementation::CPython
        // version-specific ABI (not abi3/abi3t) with the GIL (not free-threaded)
        && abi.kind() == PythonAbiKind::VersionSpecific(GilUsed::GilEnabled)
        && version.major == 3
        && (9..=13).contains(&version.minor);
    if known_layout && !(forced_public && version.minor >= 11) {
        println!("cargo:rustc-cfg=callspan_frame_direct");
    }
}
