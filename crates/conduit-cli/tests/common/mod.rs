//! Helpers shared by the CLI's integration tests.

#![allow(dead_code)] // Each test binary uses a different part.

use std::process::Output;

/// A command's standard error, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The names in /dev/shm that start with `prefix`, sorted.
pub fn shm_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
