//! POSIX message queues with real child processes.

mod common;

use std::time::Duration;

use conduit::mq::{MessageQueue, OpenError, RecvError, SendError};

child_entry!(dispatch);

fn dispatch(role: &str, args: &[String]) {
    match role {
        "sender" => {
            let q = MessageQueue::builder(&args[0]).send_only().open().unwrap();
            for (text, prio) in [("low", 1), ("high", 9), ("mid", 5), ("low2", 1)] {
                q.send(text.as_bytes(), prio).unwrap();
            }
            println!("sent");
        }
        "blocked_receiver" => {
            let q = MessageQueue::builder(&args[0])
                .receive_only()
                .open()
                .unwrap();
            let mut buf = vec![0; q.message_size()];
            println!("waiting");
            let m = q.receive(&mut buf).unwrap();
            println!("got {}", String::from_utf8_lossy(&buf[..m.len]));
        }
        _ => panic!("unknown role {role}"),
    }
}

fn queue_name() -> String {
    format!("/{}", common::unique("conduit-mq"))
}

fn line_containing(child: &mut std::process::Child, what: &str) -> String {
    for _ in 0..10 {
        let line = common::read_line(child);
        if let Some(i) = line.find(what) {
            return line[i..].to_owned();
        }
    }
    panic!("child did not print {what:?}");
}

#[test]
fn priorities_order_messages_between_processes() {
    let _w = common::watchdog(Duration::from_secs(30));
    let name = queue_name();
    let q = MessageQueue::builder(&name)
        .capacity(4)
        .message_size(64)
        .receive_only()
        .create()
        .unwrap();
    assert_eq!((q.capacity(), q.message_size()), (4, 64));
    let mut child = common::spawn_child("sender", &[&name]);
    assert_eq!(line_containing(&mut child, "sent"), "sent");
    assert_eq!(q.attributes().unwrap().current_messages, 4);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = q.receive(&mut buf).unwrap();
        got.push((
            String::from_utf8_lossy(&buf[..m.len]).into_owned(),
            m.priority,
        ));
    }
    assert_eq!(
        got,
        [
            ("high".into(), 9),
            ("mid".into(), 5),
            ("low".into(), 1),
            ("low2".into(), 1)
        ]
    );
    assert!(child.wait().unwrap().success());
    drop(q);
    assert!(matches!(
        MessageQueue::builder(&name).open(),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn blocked_receiver_wakes_up() {
    let _w = common::watchdog(Duration::from_secs(30));
    let name = queue_name();
    let q = MessageQueue::builder(&name)
        .capacity(2)
        .message_size(32)
        .create()
        .unwrap();
    let mut child = common::spawn_child("blocked_receiver", &[&name]);
    assert_eq!(line_containing(&mut child, "waiting"), "waiting");
    q.send(b"wake", 0).unwrap();
    assert_eq!(line_containing(&mut child, "got"), "got wake");
    assert!(child.wait().unwrap().success());
}

#[test]
fn size_full_empty_and_timeouts_are_clear_errors() {
    let name = queue_name();
    let q = MessageQueue::builder(&name)
        .capacity(2)
        .message_size(16)
        .nonblocking(true)
        .create()
        .unwrap();
    assert!(matches!(
        q.send(&[0; 17], 0),
        Err(SendError::MessageTooLarge { len: 17, max: 16 })
    ));
    assert!(matches!(
        q.send(b"x", 40000),
        Err(SendError::InvalidPriority(40000))
    ));
    let mut small = [0u8; 8];
    assert!(matches!(
        q.receive(&mut small),
        Err(RecvError::BufferTooSmall {
            len: 8,
            message_size: 16
        })
    ));
    let mut buf = [0u8; 16];
    assert!(matches!(q.receive(&mut buf), Err(RecvError::Empty)));
    q.send(b"a", 0).unwrap();
    q.send(b"b", 0).unwrap();
    assert!(matches!(
        q.send(b"c", 0),
        Err(SendError::Full { capacity: 2 })
    ));

    // A blocking descriptor of the same queue: timeouts.
    let blocking = MessageQueue::builder(&name).open().unwrap();
    assert!(matches!(
        blocking.send_timeout(b"c", 0, Duration::from_millis(10)),
        Err(SendError::Timeout(_))
    ));
    blocking.receive(&mut buf).unwrap();
    blocking.receive(&mut buf).unwrap();
    assert!(matches!(
        blocking.receive_timeout(&mut buf, Duration::from_millis(10)),
        Err(RecvError::Timeout(_))
    ));
}

#[test]
fn limits_and_names_are_reported() {
    let limits = MessageQueue::limits().unwrap();
    assert!(limits.msg_max >= 1);
    // Above even the privileged hard limit: refused for everyone.
    match MessageQueue::builder(queue_name())
        .capacity(conduit::mq::HARD_MAX_MESSAGES + 1)
        .message_size(16)
        .create()
    {
        Err(OpenError::CapacityAboveLimit {
            requested, limit, ..
        }) => {
            assert_eq!(requested, conduit::mq::HARD_MAX_MESSAGES + 1);
            assert!(limit == limits.msg_max || limit == conduit::mq::HARD_MAX_MESSAGES);
        }
        other => panic!("expected CapacityAboveLimit, got {other:?}"),
    }
    match MessageQueue::builder(queue_name())
        .capacity(1)
        .message_size(conduit::mq::HARD_MAX_MESSAGE_SIZE + 1)
        .create()
    {
        Err(OpenError::MessageSizeAboveLimit { .. }) => {}
        other => panic!("expected MessageSizeAboveLimit, got {other:?}"),
    }
    assert!(matches!(
        MessageQueue::builder("no-slash").create(),
        Err(OpenError::InvalidName { .. })
    ));
    assert!(matches!(
        MessageQueue::builder("/a/b").create(),
        Err(OpenError::InvalidName { .. })
    ));
    let name = queue_name();
    let _q = MessageQueue::builder(&name)
        .capacity(1)
        .message_size(8)
        .create()
        .unwrap();
    assert!(matches!(
        MessageQueue::builder(&name)
            .capacity(1)
            .message_size(8)
            .create(),
        Err(OpenError::AlreadyExists { .. })
    ));
}

/// Mode and group of an open queue (`fstat` on its descriptor).
fn mode_and_group(queue: &MessageQueue) -> (u32, u32) {
    let stat = rustix::fs::fstat(queue).unwrap();
    (stat.st_mode & 0o777, stat.st_gid)
}

#[test]
fn permissions_set_mode_and_group_exactly_on_a_created_queue_only() {
    use conduit::shm::Permissions;
    let gid = rustix::process::getegid().as_raw();
    // 0660 exactly, whatever the umask (which would make `mode` 0640).
    let shared = MessageQueue::builder(queue_name())
        .permissions(Permissions::group(gid))
        .capacity(1)
        .message_size(8)
        .create()
        .unwrap();
    assert_eq!(mode_and_group(&shared), (0o660, gid));
    // open_or_create of an existing queue keeps its permissions and its
    // name (only `create` removes the name on drop).
    let private = MessageQueue::builder(queue_name())
        .permissions(Permissions::owner_only())
        .capacity(1)
        .message_size(8)
        .open_or_create()
        .unwrap();
    assert_eq!(mode_and_group(&private).0, 0o600);
    let again = MessageQueue::builder(private.name())
        .permissions(Permissions::group(gid))
        .open_or_create()
        .unwrap();
    assert_eq!(mode_and_group(&again).0, 0o600);
    drop(again);
    assert!(MessageQueue::builder(private.name()).open().is_ok());
    MessageQueue::unlink(private.name()).unwrap();
    // A domain's queue is /conduit.<domain>.<name>.
    let domain = conduit::Domain::new("mqdomain").unwrap();
    assert_eq!(domain.queue_name("jobs"), "/conduit.mqdomain.jobs");
}
