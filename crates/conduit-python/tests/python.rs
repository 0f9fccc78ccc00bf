//! Runs the Python binding's tests (`tests/py/test_conduit.py`) in a real
//! interpreter: the extension module cargo just built is copied, with the
//! package's Python files, into a private directory on `PYTHONPATH`, and
//! the tests run against the `rust_peer` binary of this crate, in a
//! domain of their own. Afterwards nothing of that domain may be left in
//! `/dev/shm`.
//!
//! Needs `python3` 3.11 or later. Without it the test says so and passes,
//! unless `CONDUIT_REQUIRE_PYTHON` is set (CI sets it: a skip there would
//! hide a broken binding).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `lib_conduit.so` cargo built with this test: in `deps/`, next to
/// the test binary (`target/<profile>/lib_conduit.so` is refreshed only
/// when the library itself is a requested target, so it may be stale).
fn extension_module() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let so = exe
        .parent()
        .expect("target/<profile>/deps")
        .join("lib_conduit.so");
    assert!(
        so.exists(),
        "{} is missing: cargo builds it with this test",
        so.display()
    );
    so
}

/// Whether `python3` runs and is at least 3.11 (the buffer protocol in
/// the limited API); why not otherwise.
fn python_ok() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info >= (3, 11))"])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => Ok(()),
        _ => Err("python3 is older than 3.11".into()),
    }
}

/// conduit-ffi's C subscriber example, compiled with `cc` against the
/// `libconduit_ffi.a` built for this test; `None` (and why) without a C
/// compiler.
fn c_subscriber(out_dir: &Path) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().expect("current_exe");
    let lib = exe.parent().expect("deps").join("libconduit_ffi.a");
    let ffi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conduit-ffi");
    let out = out_dir.join("c_subscriber");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let result = Command::new(&cc)
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-I"])
        .arg(ffi.join("include"))
        .arg(ffi.join("examples/subscriber.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !result.status.success() {
        panic!(
            "{cc} failed on the C subscriber:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(out)
}

fn leftovers(domain: &str) -> Vec<String> {
    let prefix = format!("conduit.{domain}.");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn python_binding_suite() {
    if let Err(why) = python_ok() {
        if std::env::var_os("CONDUIT_REQUIRE_PYTHON").is_some() {
            panic!("CONDUIT_REQUIRE_PYTHON is set, but {why}");
        }
        eprintln!("SKIPPED python_binding_suite: {why}");
        return;
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("conduit-python-test-{}", std::process::id()));
    let package = dir.join("conduit");
    std::fs::create_dir_all(&package).expect("package dir");
    // The package as maturin lays it out: python/conduit/* and the module.
    for entry in std::fs::read_dir(crate_dir.join("python/conduit")).expect("python/conduit") {
        let path = entry.expect("python/conduit entry").path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().expect("a file name")))
                .expect("copy the package's files");
        }
    }
    std::fs::copy(extension_module(), package.join("_conduit.abi3.so"))
        .expect("copy the extension module");
    let domain = format!("pyt-{}", std::process::id());
    let c_subscriber = c_subscriber(&dir);
    let mut python = Command::new("python3");
    match &c_subscriber {
        Ok(path) => {
            python.env("CONDUIT_C_SUBSCRIBER", path);
        }
        Err(why) => eprintln!("no C program in the three-language test: {why}"),
    }
    let out = python
        .arg(crate_dir.join("tests/py/test_conduit.py"))
        .env("PYTHONPATH", &dir)
        .env("CONDUIT_TEST_DOMAIN", &domain)
        .env("CONDUIT_RUST_PEER", env!("CARGO_BIN_EXE_rust_peer"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    let _ = std::fs::remove_dir_all(&dir);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{log}");
    let left = leftovers(&domain);
    for name in &left {
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(name));
    }
    assert!(
        out.status.success(),
        "the Python tests failed: {}",
        out.status
    );
    assert!(log.contains("OK"), "no unittest summary in the output");
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
