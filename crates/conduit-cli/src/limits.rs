//! `conduit limits`: the kernel limits that bound message passing and
//! shared memory.

use serde_json::{Value, json};

/// One limit's value.
enum Limit {
    /// A number of things (descriptors, mappings, messages, queues).
    Count(u64),
    /// A number of bytes.
    Bytes(u64),
    /// Free and total bytes of a file system.
    Space { free: u64, total: u64 },
    /// No limit.
    Unlimited,
    /// Could not be read, and why.
    Unreadable(String),
}

impl Limit {
    fn text(&self) -> String {
        match self {
            Limit::Count(n) => n.to_string(),
            Limit::Bytes(b) => format!("{b} bytes"),
            Limit::Space { free, total } => format!("{free} of {total} bytes"),
            Limit::Unlimited => "unlimited".into(),
            Limit::Unreadable(e) => format!("unreadable: {e}"),
        }
    }

    /// Numbers as JSON numbers, the unit in its own field.
    fn json(&self, what: &str) -> Value {
        match self {
            Limit::Count(n) => json!({"limit": what, "value": n, "unit": "count"}),
            Limit::Bytes(b) => json!({"limit": what, "value": b, "unit": "bytes"}),
            Limit::Space { free, total } => {
                json!({"limit": what, "value": free, "total": total, "unit": "bytes"})
            }
            Limit::Unlimited => json!({"limit": what, "value": null, "unlimited": true}),
            Limit::Unreadable(e) => json!({"limit": what, "value": null, "error": e}),
        }
    }
}

/// Prints shared-memory, descriptor, mapping, pipe, socket and
/// message-queue limits of this system (`json`: one object per line:
/// `limit`, `value` a number (or null), `unit` "bytes" or "count"; the
/// /dev/shm line's `value` is the free bytes and `total` the size;
/// `"unlimited": true` or an `error` when there is no number). These are
/// the limits conduit's exhaustion errors name (`shm::ResourceExhausted`,
/// the `TooManyOpenFiles` of sockets and queues, `ResourceLimit`...).
pub fn run(json: bool) -> i32 {
    let show = |what: &str, value: Limit| {
        if json {
            println!("{}", value.json(what));
        } else {
            println!("{what:<48} {}", value.text());
        }
    };
    let bytes_or_unlimited = |limit: Option<u64>| limit.map_or(Limit::Unlimited, Limit::Bytes);
    show(
        "shared memory in /dev/shm (free of size)",
        match conduit::limits::shared_memory_space() {
            Ok(space) => Limit::Space {
                free: space.free,
                total: space.total,
            },
            Err(e) => Limit::Unreadable(e.to_string()),
        },
    );
    show(
        "open files per process (RLIMIT_NOFILE)",
        conduit::limits::open_files().map_or(Limit::Unlimited, Limit::Count),
    );
    show(
        "memory mappings per process (vm.max_map_count)",
        conduit::limits::memory_mappings().map_or(
            Limit::Unreadable("/proc/sys/vm/max_map_count".into()),
            Limit::Count,
        ),
    );
    show(
        "address space per process (RLIMIT_AS)",
        bytes_or_unlimited(conduit::limits::address_space()),
    );
    show(
        "pipe capacity limit (pipe-max-size)",
        match conduit::pipe::max_capacity() {
            Ok(n) => Limit::Bytes(n as u64),
            Err(e) => Limit::Unreadable(e.to_string()),
        },
    );
    show(
        "descriptors per SCM_RIGHTS message (SCM_MAX_FD)",
        Limit::Count(conduit::socket::MAX_FDS_PER_MESSAGE as u64),
    );
    match conduit::mq::MessageQueue::limits() {
        Ok(l) => {
            show(
                "mq capacity limit (msg_max)",
                Limit::Count(l.msg_max as u64),
            );
            show(
                "mq message size limit (msgsize_max)",
                Limit::Bytes(l.msgsize_max as u64),
            );
            show(
                "mq default capacity (msg_default)",
                Limit::Count(l.msg_default as u64),
            );
            show(
                "mq default message size (msgsize_default)",
                Limit::Bytes(l.msgsize_default as u64),
            );
            show(
                "mq queues on the system (queues_max)",
                Limit::Count(l.queues_max as u64),
            );
        }
        Err(e) => show("/proc/sys/fs/mqueue", Limit::Unreadable(e.to_string())),
    }
    show(
        "mq bytes per user (RLIMIT_MSGQUEUE)",
        bytes_or_unlimited(conduit::limits::message_queue_bytes()),
    );
    0
}
