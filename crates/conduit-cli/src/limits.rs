//! `conduit limits`: the kernel limits that bound message passing and
//! shared memory.

/// Prints shared-memory, descriptor, mapping, pipe, socket and
/// message-queue limits of this system (`json`: one `{"limit": …,
/// "value": …}` object per line). These are the limits conduit's
/// exhaustion errors name (`shm::ResourceExhausted`, the
/// `TooManyOpenFiles` of sockets and queues, `ResourceLimit`...).
pub fn run(json: bool) -> i32 {
    let show = |what: &str, value: String| {
        if json {
            println!("{}", serde_json::json!({"limit": what, "value": value}));
        } else {
            println!("{what:<48} {value}");
        }
    };
    let bytes_or_unlimited =
        |limit: Option<u64>| limit.map_or("unlimited".into(), |b| format!("{b} bytes"));
    match conduit::limits::shared_memory_space() {
        Ok(space) => show(
            "shared memory in /dev/shm (free of size)",
            format!("{} of {} bytes", space.free, space.total),
        ),
        Err(e) => show("shared memory in /dev/shm", format!("unreadable: {e}")),
    }
    show(
        "open files per process (RLIMIT_NOFILE)",
        conduit::limits::open_files().map_or("unlimited".into(), |n| n.to_string()),
    );
    show(
        "memory mappings per process (vm.max_map_count)",
        conduit::limits::memory_mappings().map_or("unreadable".into(), |n| n.to_string()),
    );
    show(
        "address space per process (RLIMIT_AS)",
        bytes_or_unlimited(conduit::limits::address_space()),
    );
    match conduit::pipe::max_capacity() {
        Ok(n) => show("pipe capacity limit (pipe-max-size)", format!("{n} bytes")),
        Err(e) => show(
            "pipe capacity limit (pipe-max-size)",
            format!("unreadable: {e}"),
        ),
    }
    show(
        "descriptors per SCM_RIGHTS message (SCM_MAX_FD)",
        conduit::socket::MAX_FDS_PER_MESSAGE.to_string(),
    );
    match conduit::mq::MessageQueue::limits() {
        Ok(l) => {
            show("mq capacity limit (msg_max)", l.msg_max.to_string());
            show(
                "mq message size limit (msgsize_max)",
                format!("{} bytes", l.msgsize_max),
            );
            show(
                "mq default capacity (msg_default)",
                l.msg_default.to_string(),
            );
            show(
                "mq default message size (msgsize_default)",
                format!("{} bytes", l.msgsize_default),
            );
            show(
                "mq queues on the system (queues_max)",
                l.queues_max.to_string(),
            );
        }
        Err(e) => show("/proc/sys/fs/mqueue", format!("unreadable: {e}")),
    }
    show(
        "mq bytes per user (RLIMIT_MSGQUEUE)",
        bytes_or_unlimited(conduit::limits::message_queue_bytes()),
    );
    0
}
