//! `conduit limits`: the kernel limits that bound message passing.

/// Prints pipe, socket and message-queue limits of this system (`json`:
/// one `{"limit": …, "value": …}` object per line).
pub fn run(json: bool) -> i32 {
    let show = |what: &str, value: String| {
        if json {
            println!("{}", serde_json::json!({"limit": what, "value": value}));
        } else {
            println!("{what:<48} {value}");
        }
    };
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
        conduit::sys::mq::rlimit_bytes().map_or("unlimited".into(), |b| format!("{b} bytes")),
    );
    0
}
