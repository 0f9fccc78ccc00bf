//! Raw OS access for tests that need memory or descriptors conduit does
//! not hand out (a plain memfd, a second mapping of a foreign object, an
//! unsealed file): the `conduit-raw` crate, shared with the benchmark
//! floors. Each function makes the system call its doc names and panics on
//! failure unless it returns a `Result`: the tests only use it to set the
//! stage.

#[allow(unused_imports)] // Each test binary uses a different part.
pub use conduit_raw::*;
