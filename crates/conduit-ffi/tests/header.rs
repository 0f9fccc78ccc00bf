//! `include/conduit.h` is what cbindgen generates from this crate: the
//! test fails when the checked-in header is out of date, and rewrites it
//! with `CONDUIT_BLESS=1`.

use std::path::Path;

#[test]
fn checked_in_header_matches_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/conduit.h");
    if std::env::var_os("CONDUIT_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/conduit.h");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date: regenerate it with \
         `CONDUIT_BLESS=1 cargo test -p conduit-ffi --test header` and commit it",
        path.display()
    );
}
