//! Resource exhaustion: a full `/dev/shm`, no file descriptors left, no
//! memory mappings or address space left, and the message-queue limits.
//! Each case runs in a child process (limits and namespaces stay there),
//! expects a named error whose text says what to raise, and checks that
//! the failure left nothing behind: no object in `/dev/shm`, no queue, and
//! the descriptor count back at its baseline once everything is dropped.
//!
//! `/dev/shm` full and the queue-count limit need root (a private mount or
//! IPC namespace, an unprivileged uid); without it those parts print a
//! `skipped:` line and pass.

mod common;

use std::time::Duration;

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::mq::{self, MessageQueue};
use conduit::node::{Node, NodeCreateError};
use conduit::pubsub::PublisherCreateError;
use conduit::service::ServiceError;
use conduit::shm::{CreateError, OpenError, Resource, ResourceExhausted, Segment};

child_entry!(dispatch);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Descriptors open in this process now.
fn fd_count() -> usize {
    // The directory handle itself is one of the entries.
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Sets the soft limit of `resource` (the hard limit stays).
fn set_soft_limit(resource: libc::__rlimit_resource_t, soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill, and
    // setrlimit only reads it.
    unsafe {
        assert_eq!(libc::getrlimit(resource, &mut lim), 0);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(resource, &lim), 0, "setrlimit");
    }
}

/// Objects of `domain` in `/dev/shm`, sorted.
fn objects(domain: &str) -> Vec<String> {
    let mut v = shm_objects_containing(&format!("conduit.{domain}."));
    v.sort();
    v
}

fn run_child(role: &str, domain: &str) {
    let _w = watchdog(Duration::from_secs(60));
    let mut child = spawn_child(role, &[domain]);
    let mut lines = Vec::new();
    loop {
        let line = read_line(&mut child);
        if line.is_empty() {
            break;
        }
        if line.starts_with("skipped:") {
            println!("{line}");
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let _ = Node::cleanup(domain);
    let left = objects(domain);
    // A failed child may leave its objects: remove them before failing.
    for name in &left {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    assert!(
        status.success(),
        "child {role} failed: {status}; said {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("ok"), "{lines:?}");
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn dispatch(role: &str, args: &[String]) {
    let domain = args[0].as_str();
    match role {
        "shm_full" => shm_full(domain),
        "descriptors" => descriptors(domain),
        "mappings" => mappings(domain),
        "address_space" => address_space(domain),
        "mqueue" => mqueue(domain),
        _ => panic!("unknown role {role}"),
    }
    println!("ok");
}

#[test]
fn dev_shm_full_is_insufficient_space_and_leaves_nothing() {
    run_child("shm_full", &unique("exh-shm"));
}

#[test]
fn descriptors_exhausted_is_too_many_open_files_and_recovers() {
    run_child("descriptors", &unique("exh-fd"));
}

#[test]
fn mapping_limit_is_out_of_mappings_and_recovers() {
    run_child("mappings", &unique("exh-maps"));
}

#[test]
fn address_space_limit_is_out_of_mappings() {
    run_child("address_space", &unique("exh-as"));
}

#[test]
fn mqueue_limits_are_named_and_leave_no_queue() {
    run_child("mqueue", &unique("exh-mq"));
}

// ---------------------------------------------------------------------
// /dev/shm full: a private 1 MiB tmpfs on /dev/shm in a mount namespace.

fn shm_full(domain: &str) {
    if !is_root() {
        println!(
            "skipped: /dev/shm full needs root (CAP_SYS_ADMIN) because it mounts a 1 MiB tmpfs on /dev/shm in a private mount namespace"
        );
        return;
    }
    // SAFETY: plain system calls on constant, NUL-terminated strings. The
    // new mount namespace belongs to this thread (and so this process's
    // view of /dev/shm) only: the parent test process is not affected.
    let failed = unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            Some("unshare(CLONE_NEWNS)")
        } else if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            Some("mount(/, MS_REC | MS_PRIVATE)")
        } else if libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=1777".as_ptr().cast(),
        ) != 0
        {
            Some("mount(tmpfs, /dev/shm)")
        } else {
            None
        }
    };
    if let Some(call) = failed {
        let e = std::io::Error::last_os_error();
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)),
            "{call}: {e}"
        );
        println!(
            "skipped: /dev/shm full needs CAP_SYS_ADMIN because it mounts a 1 MiB tmpfs on /dev/shm in a private mount namespace ({call}: {e})"
        );
        return;
    }
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert!(listing().is_empty());
    let baseline = fd_count();

    // Bigger than the whole file system.
    match Segment::builder("big")
        .domain(domain)
        .size(2 << 20)
        .create()
    {
        Err(
            e @ CreateError::Exhausted(ResourceExhausted {
                resource:
                    Resource::SharedMemorySpace {
                        requested,
                        available,
                        total,
                    },
                ..
            }),
        ) => {
            assert!(requested > 2 << 20);
            assert!(
                available <= total && total <= 1 << 20,
                "{available} {total}"
            );
            assert!(e.to_string().contains("--shm-size"), "{e}");
        }
        other => panic!("expected Exhausted(SharedMemorySpace), got {other:?}"),
    }
    assert!(listing().is_empty(), "{:?}", listing());

    // Many small ones until it is full: the last one fails cleanly and
    // every earlier one is intact.
    let mut made = Vec::new();
    let err = loop {
        match Segment::builder(&format!("fill{}", made.len()))
            .domain(domain)
            .size(60 << 10)
            .create()
        {
            Ok(s) => made.push(s),
            Err(e) => break e,
        }
        assert!(made.len() < 64, "a 1 MiB tmpfs held 64 segments of 60 KiB");
    };
    assert!(
        matches!(
            err,
            CreateError::Exhausted(ResourceExhausted {
                resource: Resource::SharedMemorySpace { .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert!(made.len() >= 8, "only {} fitted", made.len());
    assert_eq!(listing().len(), made.len(), "no half-made segment");
    for (i, s) in made.iter().enumerate() {
        assert!(s.data().len() >= 60 << 10, "segment {i}");
    }
    for s in made.drain(..) {
        s.unlink().unwrap();
    }
    assert!(listing().is_empty());

    // Services and ports: a node and a service first, then ballast that
    // leaves too little for anything else.
    let node = Node::builder().domain(domain).create().unwrap();
    let service = node
        .service("full")
        .publish_subscribe::<[u8]>()
        .create()
        .unwrap();
    let before = listing();
    let free = conduit_free_bytes();
    // Header plus data rounds up to exactly the free space.
    let ballast = Segment::builder("ballast")
        .domain(domain)
        .size(free as usize - 4096)
        .create()
        .unwrap();
    assert_eq!(conduit_free_bytes(), 0);
    let with_ballast = listing();
    let r = Node::builder().domain(domain).create();
    assert!(
        matches!(
            r,
            Err(NodeCreateError::Segment(CreateError::Exhausted(
                ResourceExhausted {
                    resource: Resource::SharedMemorySpace { .. },
                    ..
                }
            )))
        ),
        "{r:?}"
    );
    let r = service.publisher().max_slice_len(64 << 10).create();
    assert!(
        matches!(
            r,
            Err(PublisherCreateError::Segment(CreateError::Exhausted(
                ResourceExhausted {
                    resource: Resource::SharedMemorySpace { .. },
                    ..
                }
            )))
        ),
        "{r:?}"
    );
    let r = node
        .service("other")
        .publish_subscribe::<[u8; 4096]>()
        .subscriber_buffer(64)
        .create();
    assert!(
        matches!(
            r,
            Err(ServiceError::Create {
                source: CreateError::Exhausted(ResourceExhausted {
                    resource: Resource::SharedMemorySpace { .. },
                    ..
                }),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(listing(), with_ballast, "failures left nothing behind");
    ballast.unlink().unwrap();
    drop(ballast);
    assert_eq!(listing(), before);
    // With the space back, the same publisher can be created.
    let publisher = service.publisher().max_slice_len(4096).create().unwrap();
    drop((publisher, service, node));
    assert!(listing().is_empty(), "{:?}", listing());
    assert_eq!(fd_count(), baseline, "descriptors back at the baseline");
}

/// Free bytes of the file system at /dev/shm.
fn conduit_free_bytes() -> u64 {
    // SAFETY: statvfs is plain data, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid statvfs to fill.
    assert_eq!(unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

// ---------------------------------------------------------------------
// File descriptors: RLIMIT_NOFILE just above what the process uses.

fn descriptors(domain: &str) {
    let baseline = fd_count();
    let node = Node::builder().domain(domain).create().unwrap();
    let service = node
        .service("fds")
        .publish_subscribe::<u64>()
        .create()
        .unwrap();
    let keep = Segment::builder("keep")
        .domain(domain)
        .size(4096)
        .create()
        .unwrap();
    // Room for a dozen more descriptors above the highest in use.
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    // Fill the holes below it (inherited descriptors can be sparse), so
    // that the limit leaves exactly the room above `highest`.
    let mut filler = Vec::new();
    loop {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = f.as_raw_fd() as u64;
        filler.push(f);
        if fd >= highest {
            break;
        }
    }
    set_soft_limit(libc::RLIMIT_NOFILE, highest + 12);
    let before = objects(domain);

    let mut made = Vec::new();
    let err = loop {
        match Segment::builder(&format!("s{}", made.len()))
            .domain(domain)
            .size(4096)
            .create()
        {
            Ok(s) => made.push(s),
            Err(e) => break e,
        }
        assert!(
            made.len() < 100,
            "the descriptor limit did not apply (highest fd {highest})"
        );
    };
    match &err {
        CreateError::Exhausted(ResourceExhausted {
            resource: Resource::FileDescriptors { limit },
            ..
        }) => {
            assert_eq!(*limit, Some(highest + 12));
            assert!(err.to_string().contains("ulimit -n"), "{err}");
        }
        other => panic!("expected Exhausted(FileDescriptors), got {other:?}"),
    }
    // Everything else that needs a descriptor says the same.
    let r = Segment::builder("keep").domain(domain).open();
    assert!(
        matches!(
            r,
            Err(OpenError::Exhausted(ResourceExhausted {
                resource: Resource::FileDescriptors { .. },
                ..
            }))
        ),
        "{r:?}"
    );
    let r = Segment::builder("anon").size(4096).create_anonymous();
    assert!(
        matches!(
            r,
            Err(CreateError::Exhausted(ResourceExhausted {
                resource: Resource::FileDescriptors { .. },
                ..
            }))
        ),
        "{r:?}"
    );
    let r = service.publisher().create();
    assert!(
        matches!(
            r,
            Err(PublisherCreateError::Segment(CreateError::Exhausted(
                ResourceExhausted {
                    resource: Resource::FileDescriptors { .. },
                    ..
                }
            )))
        ),
        "{r:?}"
    );
    let r = Node::builder().domain(domain).create();
    assert!(
        matches!(
            r,
            Err(NodeCreateError::Segment(CreateError::Exhausted(
                ResourceExhausted {
                    resource: Resource::FileDescriptors { .. },
                    ..
                }
            )))
        ),
        "{r:?}"
    );
    let r = node.service("fds2").publish_subscribe::<u64>().create();
    assert!(
        matches!(
            r,
            Err(ServiceError::Create {
                source: CreateError::Exhausted(ResourceExhausted {
                    resource: Resource::FileDescriptors { .. },
                    ..
                }),
                ..
            })
        ),
        "{r:?}"
    );
    let r = conduit::pipe::pipe();
    assert!(
        matches!(r, Err(conduit::pipe::CreateError::TooManyFiles(_))),
        "{r:?}"
    );
    assert!(r.unwrap_err().to_string().contains("ulimit -n"));
    let r = conduit::socket::UnixStream::pair();
    let e = r.expect_err("socketpair with no descriptor left");
    assert!(e.to_string().contains("ulimit -n"), "{e}");
    let name = conduit::socket::SocketName::abstract_name(unique("conduit-exh").as_bytes());
    let r = conduit::socket::Listener::<conduit::socket::UnixStream>::bind(&name);
    assert!(
        matches!(r, Err(conduit::socket::BindError::TooManyOpenFiles { .. })),
        "{r:?}"
    );
    let queue = format!("/{}", unique("conduit-exh-fd"));
    let r = MessageQueue::builder(&queue)
        .capacity(1)
        .message_size(16)
        .create();
    match r {
        Err(e @ mq::OpenError::TooManyOpenFiles { .. }) => {
            assert!(e.to_string().contains("ulimit -n"), "{e}")
        }
        other => panic!("expected mq TooManyOpenFiles, got {other:?}"),
    }
    let r = conduit::waitset::WaitSet::new();
    assert!(
        matches!(r, Err(conduit::waitset::CreateError::TooManyDescriptors(_))),
        "{r:?}"
    );
    // Closing a few makes room again (one first, to list /dev/shm).
    let one = made.pop().unwrap();
    one.unlink().unwrap();
    drop(one);
    assert_eq!(
        objects(domain).len(),
        before.len() + made.len(),
        "no half-made object"
    );
    for s in made.drain(..2) {
        s.unlink().unwrap();
    }
    let publisher = service.publisher().create().unwrap();
    publisher.send_copy(1).unwrap();
    let (a, b) = conduit::pipe::pipe().unwrap();
    drop((a, b, publisher));
    let q = MessageQueue::builder(&queue)
        .capacity(1)
        .message_size(16)
        .create()
        .expect("the failed queue left no name behind");
    drop(q);
    assert!(matches!(
        MessageQueue::builder(&queue).open(),
        Err(mq::OpenError::NotFound { .. })
    ));
    for s in made.drain(..) {
        s.unlink().unwrap();
    }
    keep.unlink().unwrap();
    drop((keep, service, node, filler));
    assert_eq!(fd_count(), baseline, "descriptors back at the baseline");
    assert!(objects(domain).is_empty(), "{:?}", objects(domain));
}

// ---------------------------------------------------------------------
// vm.max_map_count: fill this process's mappings with tiny regions.

/// Maps one-page regions until `mmap` fails with ENOMEM; alternating
/// protections keep the kernel from merging neighbours into one mapping.
fn fill_mappings(max_map_count: usize) -> Vec<usize> {
    let page = 4096;
    // Reserved up front: growing it while mappings run out would fail.
    let mut maps = Vec::with_capacity(max_map_count + 16);
    loop {
        let prot = if maps.len() % 2 == 0 {
            libc::PROT_READ
        } else {
            libc::PROT_NONE
        };
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{e}");
            break;
        }
        maps.push(p as usize);
        assert!(
            maps.len() <= max_map_count,
            "the mapping limit did not apply"
        );
    }
    maps
}

fn unmap(maps: &mut Vec<usize>, n: usize) {
    for p in maps.drain(..n.min(maps.len())) {
        // SAFETY: each address is one page this function's caller mapped
        // with fill_mappings and nothing refers to.
        unsafe { libc::munmap(p as *mut libc::c_void, 4096) };
    }
}

/// Largest `vm.max_map_count` the test fills (a few seconds; some
/// distributions set it to 2^31).
const MAX_MAPS_TO_FILL: usize = 2_000_000;

fn mappings(domain: &str) {
    let max_map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max_map_count > MAX_MAPS_TO_FILL {
        println!(
            "skipped: vm.max_map_count is {max_map_count}; filling that many mappings would take too long (the sysctl is global, so the test does not lower it)"
        );
        return;
    }
    let baseline = fd_count();
    let node = Node::builder().domain(domain).create().unwrap();
    let service = node
        .service("maps")
        .publish_subscribe::<u64>()
        .create()
        .unwrap();
    let keep = Segment::builder("keep")
        .domain(domain)
        .size(4096)
        .create()
        .unwrap();
    let before = objects(domain);
    // Reserve the heap this test needs while mappings run out.
    let mut scratch: Vec<String> = Vec::with_capacity(64);

    let mut maps = fill_mappings(max_map_count);
    let r = Segment::builder("new").domain(domain).size(4096).create();
    match &r {
        Err(
            e @ CreateError::Exhausted(ResourceExhausted {
                resource: Resource::Mappings { max_map_count, .. },
                ..
            }),
        ) => {
            assert!(max_map_count.is_some());
            scratch.push(e.to_string());
        }
        other => panic!("expected Exhausted(Mappings), got {other:?}"),
    }
    let r = Segment::builder("keep").domain(domain).open();
    assert!(
        matches!(
            r,
            Err(OpenError::Exhausted(ResourceExhausted {
                resource: Resource::Mappings { .. },
                ..
            }))
        ),
        "{r:?}"
    );
    let r = service.publisher().create();
    assert!(
        matches!(
            r,
            Err(PublisherCreateError::Segment(CreateError::Exhausted(
                ResourceExhausted {
                    resource: Resource::Mappings { .. },
                    ..
                }
            )))
        ),
        "{r:?}"
    );
    let after = objects(domain);
    unmap(&mut maps, 64);
    assert!(scratch[0].contains("vm.max_map_count"), "{}", scratch[0]);
    assert_eq!(after, before, "a failed mapping left no object behind");

    // With a few mappings back, creation works again.
    let s = Segment::builder("new")
        .domain(domain)
        .size(4096)
        .create()
        .unwrap();
    let publisher = service.publisher().create().unwrap();
    s.unlink().unwrap();
    let n = maps.len();
    unmap(&mut maps, n);
    keep.unlink().unwrap();
    drop((s, publisher, keep, service, node));
    assert_eq!(fd_count(), baseline);
    assert!(objects(domain).is_empty(), "{:?}", objects(domain));
}

/// RLIMIT_AS: a segment larger than the address space left.
fn address_space(domain: &str) {
    let baseline = fd_count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let limit = (vm_kib << 10) + (4 << 20);
    set_soft_limit(libc::RLIMIT_AS, limit);
    let r = Segment::builder("huge")
        .domain(domain)
        .size(16 << 20)
        .create();
    match r {
        Err(
            e @ CreateError::Exhausted(ResourceExhausted {
                resource:
                    Resource::Mappings {
                        address_space_limit,
                        ..
                    },
                ..
            }),
        ) => {
            assert_eq!(address_space_limit, Some(limit));
            assert!(e.to_string().contains("RLIMIT_AS"), "{e}");
        }
        other => panic!("expected Exhausted(Mappings), got {other:?}"),
    }
    assert!(objects(domain).is_empty(), "{:?}", objects(domain));
    // A small one still fits.
    let s = Segment::builder("small")
        .domain(domain)
        .size(4096)
        .create()
        .unwrap();
    s.unlink().unwrap();
    drop(s);
    assert_eq!(fd_count(), baseline);
}

// ---------------------------------------------------------------------
// Message queues: RLIMIT_MSGQUEUE, msg_max / msgsize_max, queues_max.

fn mqueue(_domain: &str) {
    let baseline = fd_count();
    let name = |what: &str| format!("/{}", unique(&format!("conduit-exh-{what}")));
    let gone = |queue: &str| {
        matches!(
            MessageQueue::builder(queue).open(),
            Err(mq::OpenError::NotFound { .. })
        )
    };
    // As root: an own queue namespace (its own queues_max count) and an
    // unprivileged uid, so that the /proc limits apply and the
    // RLIMIT_MSGQUEUE bytes are not shared with other root processes.
    // SAFETY: plain system calls; the namespace and credentials change
    // for this (test child) process only.
    let isolated = is_root() && unsafe { libc::unshare(libc::CLONE_NEWIPC) } == 0;
    if is_root() {
        // SAFETY: as above. Without CAP_SETUID we stay root.
        let _ = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(46_030) == 0
                && libc::setuid(46_030) == 0
        };
    }
    let unprivileged = !is_root();
    if !unprivileged {
        println!(
            "skipped: the msg_max/msgsize_max part needs an unprivileged uid (as root, CAP_SETUID to become one)"
        );
    }
    if !isolated || !unprivileged {
        println!(
            "skipped: the queue-count (queues_max) part needs root with CAP_SYS_ADMIN, to exhaust queues_max in a private IPC namespace without disturbing other processes"
        );
    }

    // RLIMIT_MSGQUEUE: 4 KiB of queues for this user.
    set_soft_limit(libc::RLIMIT_MSGQUEUE, 4096);
    let big = name("big");
    match MessageQueue::builder(&big)
        .capacity(8)
        .message_size(1024)
        .create()
    {
        Err(e @ mq::OpenError::ResourceLimit { rlimit, .. }) => {
            assert_eq!(rlimit, Some(4096));
            assert!(e.to_string().contains("ulimit -q"), "{e}");
        }
        other => panic!("expected ResourceLimit, got {other:?}"),
    }
    assert!(gone(&big), "the refused queue left its name");
    let small = MessageQueue::builder(name("small"))
        .capacity(1)
        .message_size(64)
        .create()
        .unwrap();
    small.send(b"still works", 1).unwrap();
    drop(small);

    if unprivileged {
        // msg_max / msgsize_max (10 / 8192 by default) bind unprivileged
        // users (which we are now).
        let limits = MessageQueue::limits().unwrap();
        set_soft_limit(libc::RLIMIT_MSGQUEUE, u64::MAX);
        let q = name("cap");
        let r = MessageQueue::builder(&q)
            .capacity(limits.msg_max + 1)
            .message_size(16)
            .create();
        assert!(
            matches!(r, Err(mq::OpenError::CapacityAboveLimit { limit, .. }) if limit == limits.msg_max),
            "{r:?}"
        );
        assert!(gone(&q));
        let r = MessageQueue::builder(&q)
            .capacity(1)
            .message_size(limits.msgsize_max + 1)
            .create();
        assert!(
            matches!(r, Err(mq::OpenError::MessageSizeAboveLimit { limit, .. }) if limit == limits.msgsize_max),
            "{r:?}"
        );
        assert!(gone(&q));

        if isolated {
            // queues_max: only in our own namespace, where the count is
            // ours alone.
            let mut queues = Vec::new();
            let err = loop {
                match MessageQueue::builder(name("n"))
                    .capacity(1)
                    .message_size(16)
                    .create()
                {
                    Ok(q) => queues.push(q),
                    Err(e) => break e,
                }
                assert!(queues.len() <= 100_000, "no queues_max");
            };
            assert!(
                matches!(err, mq::OpenError::TooManyQueues { .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("queues_max"), "{err}");
            assert_eq!(queues.len(), limits.queues_max, "{err}");
            drop(queues);
            // All names went with their queues: the count is free again.
            let again = MessageQueue::builder(name("again"))
                .capacity(1)
                .message_size(16)
                .create()
                .unwrap();
            drop(again);
        }
    }
    assert_eq!(fd_count(), baseline);
}
