//! Run-time linking of libtorch for every binary, test and example of the
//! package that uses this build script.
//!
//! torch-sys finds libtorch (`LIBTORCH`, which `.cargo/config.toml` points at
//! the `.libtorch` link that `scripts/setup.sh` makes) and links against it,
//! but the binaries also need to *find* it when they start. This script
//! records the library folder as an rpath, and keeps `libtorch_cuda` (which
//! nothing references by symbol: it registers the CUDA backend when loaded)
//! from being dropped by the linker's `--as-needed`, so that
//! `Device::cuda_if_available()` sees the GPU. It also checks that the
//! libtorch is PyTorch 2.13.0, which torch-sys does not do when `LIBTORCH`
//! is set, and says "run scripts/setup.sh" when it is missing or wrong.
//!
//! In `mc-node` the arguments go to the `mc-learn-worker` binary and the
//! tests only: the `mc-node` binary itself does not link libtorch.
//!
//! An rpath given here applies only to this package's own binaries and tests,
//! not to those of packages that depend on it. Every package that builds
//! binaries or tests linking tch reuses this file:
//!
//! ```toml
//! [package]
//! build = "../learn/build.rs"
//!
//! [dependencies]
//! # Direct, so that the build script sees DEP_TCH_LIBTORCH_LIB.
//! torch-sys.workspace = true
//! ```
//!
//! On a fresh checkout without `.libtorch`, torch-sys's build script runs
//! (and fails, on a missing `torch/torch.h`) before this one can: its error
//! shows the `.libtorch` path. This script's message covers a `.libtorch`
//! removed or replaced after a successful build.

use std::env;
use std::path::Path;

/// The PyTorch release tch 0.26 is built for.
const TORCH_VERSION: &str = "2.13.0";

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let package = env::var("CARGO_PKG_NAME").unwrap_or_default();
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: make torch-sys a direct dependency of {package} \
             (`torch-sys.workspace = true`) so that its build script can link libtorch"
        );
    };
    let lib = Path::new(&lib);
    // Rerun when the folder changes or disappears (a removed `.libtorch`
    // must give the message below, not a loader error at run time).
    println!("cargo:rerun-if-changed={}", lib.display());
    if !lib.join("libtorch_cpu.so").exists() && !lib.join("libtorch_cpu.dylib").exists() {
        panic!(
            "\n\nlibtorch not found: {} has no libtorch_cpu.\nRun scripts/setup.sh: it installs \
             PyTorch {TORCH_VERSION} and links it as .libtorch in the repository root, where \
             .cargo/config.toml points LIBTORCH.\n\n",
            lib.display()
        );
    }
    check_version(lib);
    // mc-node's own binary must not load libtorch (an idle node stays
    // small): there, only the worker binary and the tests get the link
    // arguments.
    let targets: &[&str] = if package == "mc-node" {
        &["-bin=mc-learn-worker=", "-tests="]
    } else {
        &["="]
    };
    for target in targets {
        println!("cargo:rustc-link-arg{target}-Wl,-rpath,{}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!(
                "cargo:rustc-link-arg{target}-Wl,--no-as-needed,-L{},-ltorch_cuda,--as-needed",
                lib.display()
            );
        }
    }
}

/// A pip-installed torch package states its version in `version.py`
/// (`__version__ = '2.13.0+cu130'`); a libtorch archive has `build-version`
/// instead, which torch-sys checks itself.
fn check_version(lib: &Path) {
    let Some(version_py) = lib.parent().map(|torch| torch.join("version.py")) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(&version_py) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("__version__"))
        .map(|rest| rest.trim_matches(|c: char| c == ' ' || c == '=' || c == '\'' || c == '"'))
        .unwrap_or("unknown");
    if version.split('+').next() != Some(TORCH_VERSION) {
        panic!(
            "\n\n{} is PyTorch {version}; tch 0.26 needs exactly {TORCH_VERSION}.\nRun \
             scripts/setup.sh (or point LIBTORCH at a PyTorch {TORCH_VERSION} install).\n\n",
            version_py.display()
        );
    }
}
