//! Peer baselines for conduit's benchmarks: the same two-process ping-pongs
//! as `conduit_bench::floors`, run over iceoryx2 0.10, reported with
//! `conduit_bench::harness` (same table, same `--json` lines).
//!
//! This crate is outside the main workspace (its own `[workspace]`) so that
//! `cargo test --workspace` never builds iceoryx2. Run it with
//! `cargo run --release --manifest-path crates/bench-peers/Cargo.toml --bin
//! iceoryx2_pubsub [-- --quick] [--json]` (and `--bin iceoryx2_event`).

use conduit_bench::harness::{Mode, Plan};


/// A service-name prefix unique to this run, scenario and variant, so that
/// two runs (or a stale leftover) never share a service.
pub fn unique_prefix(kind: &str, payload: usize, mode: Mode) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "conduit-bench/{kind}/{}-{nanos}/{payload}-{}",
        std::process::id(),
        mode.as_str()
    )
}

/// The payload sizes of the publish/subscribe scenarios.
pub const PAYLOADS: [usize; 4] = [8, 1 << 10, 64 << 10, 1 << 20];

/// Plan for a busy-polling ping-pong carrying `payload` bytes: the floors'
/// ([`conduit_bench::floors::payload_plan`]), so that iceoryx2, the floors
/// and conduit share one statistic (per-round-trip samples, then a batch
/// phase of `harness::BATCH`).
pub fn pubsub_plan(payload: usize, mode: Mode, quick: bool) -> Plan {
    conduit_bench::floors::payload_plan(payload, mode, quick)
}

/// An iceoryx2 domain private to one benchmark run: a config whose file
/// prefix and root directory are unique to the measuring process, so that
/// everything iceoryx2 creates can be removed afterwards — including the
/// per-domain "global management segment" (`/dev/shm/<prefix>node.<version>.global_mgmt`),
/// which iceoryx2 deliberately keeps after the last node is gone.
pub struct Domain {
    config: iceoryx2::config::Config,
    prefix: String,
    root: std::path::PathBuf,
    owner: bool,
}

impl Domain {
    /// A new domain for this run (the measuring process owns it and cleans
    /// it up on drop).
    pub fn create() -> Domain {
        let prefix = format!("iox2cb{}_", std::process::id());
        let root =
            std::env::temp_dir().join(format!("conduit-bench-iceoryx2-{}", std::process::id()));
        Domain::with(prefix, root, true)
    }

    /// The domain a child was told about with [`Domain::to_args`].
    pub fn from_args(prefix: &str, root: &str) -> Domain {
        Domain::with(prefix.to_owned(), root.into(), false)
    }

    fn with(prefix: String, root: std::path::PathBuf, owner: bool) -> Domain {
        use iceoryx2::prelude::{FileName, Path, SemanticString};
        let mut config = iceoryx2::config::Config::default();
        config.global.prefix = FileName::new(prefix.as_bytes()).expect("iceoryx2 prefix");
        let mut root_str = root.to_str().expect("utf-8 temp dir").to_owned();
        if !root_str.ends_with('/') {
            root_str.push('/');
        }
        config
            .global
            .set_root_path(&Path::new(root_str.as_bytes()).expect("iceoryx2 root path"));
        Domain {
            config,
            prefix,
            root,
            owner,
        }
    }

    /// The config every node of this domain is built with.
    pub fn config(&self) -> &iceoryx2::config::Config {
        &self.config
    }

    /// Arguments that let a child build the same domain ([`Domain::from_args`]).
    pub fn to_args(&self) -> [String; 2] {
        [
            self.prefix.clone(),
            self.root.to_str().expect("utf-8").to_owned(),
        ]
    }

    /// Files in `/dev/shm` that belong to this domain.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        // SAFETY: the contract is that no other process uses this domain any
        // more — its name contains our pid and every child that
        // joined it has exited (`Peer::finish` waited for it) before the
        // domain is dropped. `testing` is iceoryx2's own (doc-hidden) hook
        // for exactly this removal.
        let _ = unsafe {
            iceoryx2::testing::remove_global_mgmt_segment::<iceoryx2::prelude::ipc::Service>(
                &self.config,
            )
        };
        let _ = std::fs::remove_dir_all(&self.root);
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!("warning: iceoryx2 left in /dev/shm: {left:?}");
        }
    }
}
