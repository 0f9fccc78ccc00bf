//! Permissions across users: objects are private to their owner by
//! default (mode 0600), a node created with `Permissions::group(gid)`
//! shares everything it creates with that group (mode 0660), FIFOs and
//! socket files made with the same value likewise, and a user outside the
//! group gets a named `PermissionDenied`.
//!
//! The children switch to unprivileged uids (`setgroups`/`setgid`/
//! `setuid`), which needs root (CAP_SETUID and CAP_SETGID); without it
//! each test prints a `skipped:` line and passes.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{child_command, read_line, shm_objects_containing, unique, watchdog};
use conduit::node::{Node, NodeCreateError};
use conduit::service::ServiceError;
use conduit::shm::{self, Permissions, Segment};

child_entry!(dispatch);

/// An unused group id for the shared group (no `/etc/group` entry is
/// needed: the kernel only compares numbers).
const SHARED_GID: u32 = 46_021;
/// A member of the shared group.
const MEMBER_UID: u32 = 46_022;
/// A user outside the group.
const OUTSIDER_UID: u32 = 46_023;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Prints the skip line and returns true when not root.
fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    println!(
        "skipped: {test} needs root (CAP_SETUID/CAP_SETGID) because its children switch to other uids and gids"
    );
    true
}

/// Becomes `uid`/`gid` with supplementary `groups`, for good (real,
/// effective and saved ids). Without CAP_SETUID/CAP_SETGID (root in a
/// restricted container) prints a `skipped:` line and returns false.
fn become_user(uid: u32, gid: u32, groups: &[u32]) -> bool {
    // SAFETY: `groups` is a valid slice of gid_t for its length; the three
    // calls only change this process's credentials (glibc applies them to
    // every thread).
    let ok = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) == 0
            && libc::setgid(gid) == 0
            && libc::setuid(uid) == 0
    };
    if !ok {
        let e = std::io::Error::last_os_error();
        println!("skipped: needs CAP_SETUID and CAP_SETGID to switch to uid {uid}: {e}");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, uid);
    true
}

/// The child's first line; `None` (after printing it) if it skipped.
fn first_line(child: &mut Child) -> Option<String> {
    let line = read_line(child);
    if line.starts_with("skipped:") {
        println!("{line}");
        return None;
    }
    Some(line)
}

fn spawn(role: &str, args: &[&str]) -> Child {
    child_command(role, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn tell(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("stdin piped");
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
}

fn wait_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim().to_owned()
}

fn finish(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
}

/// (mode bits, uid, gid) of every /dev/shm object of `domain`.
fn shm_modes(domain: &str) -> Vec<(String, u32, u32, u32)> {
    let mut out: Vec<_> = shm_objects_containing(&format!("conduit.{domain}."))
        .into_iter()
        .map(|name| {
            let md = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
            (name, md.mode() & 0o7777, md.uid(), md.gid())
        })
        .collect();
    out.sort();
    out
}

fn assert_clean(domain: &str) {
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn dispatch(role: &str, args: &[String]) {
    let domain = args[0].as_str();
    match role {
        // Another user tries every object of the root-owned domain.
        "intruder" => {
            let (queue, fifo) = (&args[1], &args[2]);
            if !become_user(OUTSIDER_UID, OUTSIDER_UID, &[]) {
                return;
            }
            for read_only in [false, true] {
                let mut b = Segment::builder("plain").domain(domain);
                if read_only {
                    b = b.read_only();
                }
                let r = b.open();
                assert!(
                    matches!(r, Err(shm::OpenError::PermissionDenied { .. })),
                    "segment open (read_only {read_only}): {r:?}"
                );
            }
            let r = Segment::remove(domain, "plain");
            assert!(
                matches!(r, Err(shm::RemoveError::PermissionDenied { .. })),
                "remove: {r:?}"
            );
            let node = Node::builder().domain(domain).create().unwrap();
            for open_or_create in [false, true] {
                let b = node.service("private").publish_subscribe::<u64>();
                let r = if open_or_create {
                    b.open_or_create()
                } else {
                    b.open()
                };
                match r {
                    Err(e @ ServiceError::PermissionDenied { .. }) => {
                        let text = e.to_string();
                        assert!(text.contains("Permissions::group"), "{text}");
                        assert!(matches!(
                            std::error::Error::source(&e)
                                .and_then(|s| s.downcast_ref::<shm::OpenError>()),
                            Some(shm::OpenError::PermissionDenied { .. })
                        ));
                    }
                    other => panic!("service open: {other:?}"),
                }
            }
            let r = node.service("private").event().open();
            assert!(
                matches!(r, Err(ServiceError::PermissionDenied { .. })),
                "event open: {r:?}"
            );
            let r = conduit::mq::MessageQueue::builder(queue.as_str()).open();
            assert!(
                matches!(r, Err(conduit::mq::OpenError::PermissionDenied { .. })),
                "mq open: {r:?}"
            );
            let r = conduit::pipe::open_fifo_writer(fifo);
            assert!(
                matches!(r, Err(conduit::pipe::FifoError::PermissionDenied { .. })),
                "fifo open: {r:?}"
            );
            println!("ok");
        }
        // A member of the shared group writes a line into root's group
        // FIFO and connects to its group socket file; an outsider is
        // refused both.
        "fifo-socket-peer" => {
            use std::io::Write as _;
            let (fifo, sock, member) = (&args[1], &args[2], args[3] == "member");
            let ok = if member {
                become_user(MEMBER_UID, MEMBER_UID, &[SHARED_GID])
            } else {
                become_user(OUTSIDER_UID, OUTSIDER_UID, &[])
            };
            if !ok {
                return;
            }
            let name = conduit::socket::SocketName::path(sock);
            if member {
                println!("ready");
                let mut w = conduit::pipe::open_fifo_writer(fifo).unwrap();
                w.write_all(b"from the member\n").unwrap();
                drop(w);
                let mut s = conduit::socket::UnixStream::connect(&name).unwrap();
                s.write_all(b"hi").unwrap();
            } else {
                let r = conduit::pipe::open_fifo_writer(fifo);
                assert!(
                    matches!(r, Err(conduit::pipe::FifoError::PermissionDenied { .. })),
                    "fifo open: {r:?}"
                );
                let r = conduit::socket::UnixStream::connect(&name);
                assert!(
                    matches!(
                        r,
                        Err(conduit::socket::ConnectError::PermissionDenied { .. })
                    ),
                    "connect: {r:?}"
                );
                println!("refused");
            }
        }
        // A member of the shared group: receives from and sends to root.
        "member" => {
            if !become_user(MEMBER_UID, MEMBER_UID, &[SHARED_GID]) {
                return;
            }
            let node = Node::builder()
                .domain(domain)
                .permissions(Permissions::group(SHARED_GID))
                .create()
                .unwrap();
            let service = node
                .service("shared")
                .publish_subscribe::<u64>()
                .open()
                .unwrap();
            let subscriber = service.subscriber().create().unwrap();
            let publisher = service.publisher().create().unwrap();
            let events = node.service("shared").event().open().unwrap();
            let notifier = events.notifier().create().unwrap();
            println!("ready");
            assert_eq!(wait_line(), "sent");
            let got = subscriber.receive_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(*got, 7);
            drop(got);
            publisher.send_copy(8).unwrap();
            notifier.notify(3).unwrap();
            println!("sent back");
            // Root drops its handles first: we are then the last user of
            // a service whose name only root may remove.
            assert_eq!(wait_line(), "bye");
        }
        // Outside the group: cannot join the shared objects.
        "outsider" => {
            if !become_user(OUTSIDER_UID, OUTSIDER_UID, &[]) {
                return;
            }
            let r = Node::builder()
                .domain(domain)
                .permissions(Permissions::group(SHARED_GID))
                .create();
            assert!(
                matches!(
                    r,
                    Err(NodeCreateError::Segment(
                        shm::CreateError::PermissionDenied { .. }
                    ))
                ),
                "group node of a non-member: {r:?}"
            );
            let node = Node::builder().domain(domain).create().unwrap();
            let r = node.service("shared").publish_subscribe::<u64>().open();
            assert!(
                matches!(r, Err(ServiceError::PermissionDenied { .. })),
                "service open: {r:?}"
            );
            let r = node.service("shared").event().open();
            assert!(
                matches!(r, Err(ServiceError::PermissionDenied { .. })),
                "event open: {r:?}"
            );
            let r =
                Segment::builder(&conduit::ServiceKind::PublishSubscribe.segment_name("shared"))
                    .domain(domain)
                    .permissions(Permissions::group(SHARED_GID))
                    .read_only()
                    .open();
            assert!(
                matches!(r, Err(shm::OpenError::PermissionDenied { .. })),
                "{r:?}"
            );
            println!("ok");
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn objects_are_private_to_their_owner_by_default() {
    if skip_unless_root("objects_are_private_to_their_owner_by_default") {
        return;
    }
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("perm-private");
    let queue = format!("/{}", unique("conduit-perm"));
    let fifo_path = std::env::temp_dir().join(unique("conduit-perm-fifo"));
    {
        let plain = Segment::builder("plain")
            .domain(&domain)
            .size(4096)
            .create()
            .unwrap();
        let node = Node::builder().domain(&domain).create().unwrap();
        let service = node
            .service("private")
            .publish_subscribe::<u64>()
            .create()
            .unwrap();
        let publisher = service.publisher().create().unwrap();
        let subscriber = service.subscriber().create().unwrap();
        let events = node.service("private").event().create().unwrap();
        let _listener = events.listener().create().unwrap();
        let _queue = conduit::mq::MessageQueue::builder(&queue)
            .capacity(2)
            .message_size(16)
            .create()
            .unwrap();
        let _fifo = conduit::pipe::Fifo::create(&fifo_path, 0o600).unwrap();

        // Every object of the domain: node, service, event service,
        // publisher data segment, the plain segment: all 0600, all root's.
        let modes = shm_modes(&domain);
        assert!(modes.len() >= 5, "{modes:?}");
        for (name, mode, uid, _) in &modes {
            assert_eq!((*mode, *uid), (0o600, 0), "{name}");
        }

        let mut child = spawn("intruder", &[&domain, &queue, fifo_path.to_str().unwrap()]);
        if let Some(line) = first_line(&mut child) {
            assert_eq!(line, "ok");
        }
        finish(child);

        // Nothing the intruder tried changed anything.
        assert_eq!(shm_modes(&domain), modes);
        publisher.send_copy(5).unwrap();
        assert_eq!(*subscriber.receive().unwrap(), 5);
        plain.unlink().unwrap();
    }
    let _ = Node::cleanup(&domain);
    assert_clean(&domain);
}

#[test]
fn a_group_shared_service_works_for_members_and_refuses_others() {
    if skip_unless_root("a_group_shared_service_works_for_members_and_refuses_others") {
        return;
    }
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("perm-group");
    let shared = Permissions::group(SHARED_GID);
    let node = match Node::builder().domain(&domain).permissions(shared).create() {
        Ok(node) => node,
        Err(NodeCreateError::Segment(shm::CreateError::PermissionDenied { source, .. })) => {
            println!(
                "skipped: needs CAP_CHOWN to give objects to group {SHARED_GID} (fchown: {source})"
            );
            assert_clean(&domain);
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(node.permissions(), shared);
    let service = node
        .service("shared")
        .publish_subscribe::<u64>()
        .create()
        .unwrap();
    let publisher = service.publisher().create().unwrap();
    let subscriber = service.subscriber().create().unwrap();
    let events = node.service("shared").event().create().unwrap();
    let listener = events.listener().create().unwrap();

    // Everything the node created is 0660 and belongs to the group.
    let modes = shm_modes(&domain);
    assert_eq!(modes.len(), 4, "node, service, data, event: {modes:?}");
    for (name, mode, uid, gid) in &modes {
        assert_eq!((*mode, *uid, *gid), (0o660, 0, SHARED_GID), "{name}");
    }

    // Tools (list, info) see group-shared objects of their user too.
    assert!(
        Node::list(&domain)
            .unwrap()
            .iter()
            .any(|n| n.id == node.id())
    );
    let services = conduit::pubsub::list(&conduit::Domain::new(&domain).unwrap()).unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].publishers, 1);
    assert!(
        conduit::pubsub::details(&conduit::Domain::new(&domain).unwrap(), "shared")
            .unwrap()
            .is_some()
    );
    assert_eq!(
        conduit::event::list(&conduit::Domain::new(&domain).unwrap())
            .unwrap()
            .len(),
        1
    );

    let mut outsider = spawn("outsider", &[&domain]);
    let skipped = match first_line(&mut outsider) {
        Some(line) => {
            assert_eq!(line, "ok");
            false
        }
        None => true,
    };
    finish(outsider);

    let mut member = spawn("member", &[&domain]);
    if skipped || first_line(&mut member).is_none() {
        drop(member.stdin.take());
        finish(member);
        drop((publisher, subscriber, service, listener, events, node));
        let _ = Node::cleanup_with(&domain, shared);
        assert_clean(&domain);
        return;
    }
    // The member's node and data segment: its own uid, the shared group.
    for (name, mode, uid, gid) in shm_modes(&domain) {
        assert_eq!(mode, 0o660, "{name}");
        assert_eq!(gid, SHARED_GID, "{name}");
        assert!(uid == 0 || uid == MEMBER_UID, "{name}");
    }
    publisher.send_copy(7).unwrap();
    tell(&mut member, "sent");
    assert_eq!(read_line(&mut member), "sent back");
    // Root's subscriber gets its own 7 and the member's 8.
    let mut got: Vec<u64> = (0..2)
        .map(|_| *subscriber.receive_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [7, 8]);
    assert!(listener.wait_timeout(Duration::from_secs(10)).contains(3));

    // Root leaves first; the member, last user, cannot unlink root's
    // segments (/dev/shm is sticky) and must leave them usable.
    drop((publisher, subscriber, service, listener, events));
    tell(&mut member, "bye");
    finish(member);
    let service = node
        .service("shared")
        .publish_subscribe::<u64>()
        .open()
        .expect("a service its last user could not remove stays usable");
    let events = node.service("shared").event().open().unwrap();
    drop((service, events));
    drop(node);
    let _ = Node::cleanup_with(&domain, shared);
    assert_clean(&domain);
}

#[test]
fn openers_must_ask_for_the_same_permissions() {
    let _w = watchdog(Duration::from_secs(10));
    let domain = unique("perm-same");
    // Our own group: every user may give its objects to it.
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let shared = Permissions::group(gid);
    let segment = Segment::builder("g")
        .domain(&domain)
        .size(64)
        .permissions(shared)
        .create()
        .unwrap();
    let modes = shm_modes(&domain);
    assert_eq!(modes.len(), 1);
    assert_eq!((modes[0].1, modes[0].3), (0o660, gid));

    assert!(
        Segment::builder("g")
            .domain(&domain)
            .permissions(shared)
            .open()
            .is_ok()
    );
    let r = Segment::builder("g").domain(&domain).open();
    assert!(
        matches!(
            r,
            Err(shm::OpenError::ModeMismatch {
                expected: 0o600,
                found: 0o660,
                ..
            })
        ),
        "{r:?}"
    );
    let other = gid.wrapping_add(1);
    let r = Segment::builder("g")
        .domain(&domain)
        .permissions(Permissions::group(other))
        .open();
    match r {
        Err(e @ shm::OpenError::GroupMismatch { .. }) => {
            assert!(e.to_string().contains("Permissions::group"), "{e}")
        }
        other => panic!("expected GroupMismatch, got {other:?}"),
    }
    // Tools see it whatever its permissions.
    assert!(
        Segment::builder("g")
            .domain(&domain)
            .read_only()
            .any_permissions()
            .open()
            .is_ok()
    );
    // A node and its service: an opener with other permissions is told so.
    let node = Node::builder()
        .domain(&domain)
        .permissions(shared)
        .create()
        .unwrap();
    let _service = node
        .service("s")
        .publish_subscribe::<u64>()
        .create()
        .unwrap();
    let private = Node::builder().domain(&domain).create().unwrap();
    let r = private.service("s").publish_subscribe::<u64>().open();
    assert!(
        matches!(
            r,
            Err(ServiceError::PermissionDenied {
                source: shm::OpenError::ModeMismatch { .. },
                ..
            })
        ),
        "{r:?}"
    );
    segment.unlink().unwrap();
    drop((segment, _service, node, private));
    assert_clean(&domain);
}

#[test]
fn fifos_and_socket_files_are_shared_with_a_group_only() {
    use conduit::pipe::Fifo;
    use conduit::socket::{SocketName, StreamListener};
    use std::io::Read as _;
    let _w = watchdog(Duration::from_secs(30));
    // Owner only (any user): exactly 0600 whatever the umask.
    let dir = std::env::temp_dir().join(unique("perm-files"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    {
        let fifo = Fifo::create_with(dir.join("own.fifo"), Permissions::owner_only()).unwrap();
        let md = std::fs::metadata(fifo.path()).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600);
        let name = SocketName::path(dir.join("own.sock"));
        let listener = StreamListener::bind_with(&name, Permissions::owner_only()).unwrap();
        let md = std::fs::metadata(dir.join("own.sock")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600);
        drop(listener);
        assert!(
            !dir.join("own.sock").exists(),
            "the listener removes its file"
        );
        let r = StreamListener::bind_with(
            &SocketName::abstract_name(unique("perm-abstract")),
            Permissions::owner_only(),
        );
        assert!(
            matches!(
                r,
                Err(conduit::socket::BindError::NoPermissionsForAbstract { .. })
            ),
            "{r:?}"
        );
    }
    if skip_unless_root("fifos_and_socket_files_are_shared_with_a_group_only") {
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    let fifo_path = dir.join("shared.fifo");
    let sock_path = dir.join("shared.sock");
    let fifo = Fifo::create_with(&fifo_path, Permissions::group(SHARED_GID)).unwrap();
    let name = SocketName::path(&sock_path);
    let listener = StreamListener::bind_with(&name, Permissions::group(SHARED_GID)).unwrap();
    for path in [&fifo_path, &sock_path] {
        let md = std::fs::metadata(path).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.gid()),
            (0o660, SHARED_GID),
            "{path:?}"
        );
    }
    let (f, s) = (fifo_path.to_str().unwrap(), sock_path.to_str().unwrap());
    let mut outsider = spawn("fifo-socket-peer", &["-", f, s, "outsider"]);
    if let Some(line) = first_line(&mut outsider) {
        assert_eq!(line, "refused");
        finish(outsider);
        let mut member = spawn("fifo-socket-peer", &["-", f, s, "member"]);
        assert_eq!(first_line(&mut member).as_deref(), Some("ready"));
        let mut text = String::new();
        fifo.open_reader()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "from the member\n");
        let (mut stream, credentials) = listener.accept().unwrap();
        assert_eq!(credentials.uid, MEMBER_UID);
        let mut hi = String::new();
        stream.read_to_string(&mut hi).unwrap();
        assert_eq!(hi, "hi");
        finish(member);
    }
    drop((fifo, listener));
    std::fs::remove_dir_all(&dir).unwrap();
}
