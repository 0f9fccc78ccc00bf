//! End-to-end tests of `conduit mq send|receive|list|info|remove`: the
//! built binary runs as a user would run it, and a POSIX client written in
//! another language (Python's `posix_ipc` when installed, else a small C
//! program built with the system `cc`) shares its queues. Each test has
//! its own domain and leaves nothing in the queue namespace or /dev/shm.

mod common;

use common::{shm_names, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conduit::mq::{MessageQueue, OpenError};

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

/// A unique domain and the POSIX queue names a test used; every one must
/// be gone when dropped (and nothing of the domain in /dev/shm).
struct Domain {
    name: String,
    queues: Vec<String>,
}

impl Domain {
    fn new() -> Domain {
        static N: AtomicU32 = AtomicU32::new(0);
        // A hung child or test ends the whole run instead of blocking CI.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(120));
            eprintln!("watchdog: test hung");
            std::process::abort();
        });
        Domain {
            name: format!(
                "mqtest-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            queues: Vec::new(),
        }
    }

    /// The POSIX name of the domain's queue `name`, remembered for the
    /// leftover check.
    fn queue(&mut self, name: &str) -> String {
        let posix = format!("/conduit.{}.{name}", self.name);
        self.queues.push(posix.clone());
        posix
    }

    /// A POSIX name outside the domain (for queues made by a foreign
    /// client), remembered for the leftover check.
    fn foreign_queue(&mut self, name: &str) -> String {
        let posix = format!("/{}-{name}", self.name);
        self.queues.push(posix.clone());
        posix
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CONDUIT);
        c.env("CONDUIT_DOMAIN", &self.name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `conduit` and asserts success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "conduit {args:?} failed: {}",
            stderr(&out)
        );
        stdout(&out)
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let mut left = Vec::new();
        for name in &self.queues {
            match MessageQueue::unlink(name) {
                Err(OpenError::NotFound { .. }) => {}
                _ => left.push(name.clone()),
            }
        }
        let shm = shm_names(&format!("conduit.{}.", self.name));
        if !std::thread::panicking() {
            assert!(left.is_empty(), "message queues left: {left:?}");
            assert!(shm.is_empty(), "left in /dev/shm: {shm:?}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that `out` failed with `code` and one `conduit: ` line on
/// stderr (no panic, no backtrace); that line.
fn failed(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("conduit: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn send_then_receive_round_trips_text_hex_and_raw_bytes() {
    let mut d = Domain::new();
    let posix = d.queue("rt");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--capacity",
        "4",
        "--message-size",
        "64",
        "rt",
        "hello queue",
    ]);
    assert_eq!(d.ok(&["mq", "receive", "rt"]), "hello queue\n");
    d.ok(&["mq", "send", "rt", "--hex", "de ad 00 ff"]);
    assert_eq!(d.ok(&["mq", "receive", "rt", "--hex"]), "dead00ff\n");
    d.ok(&["mq", "send", "rt", "--hex", "00ff0a"]);
    let raw = d.run(&["mq", "receive", "rt", "--raw"]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    assert_eq!(raw.stdout, [0x00, 0xff, 0x0a]);
    // The POSIX name reaches the same queue.
    d.ok(&["mq", "send", &posix, "by posix name"]);
    assert_eq!(d.ok(&["mq", "receive", "rt"]), "by posix name\n");
    assert_eq!(d.ok(&["mq", "remove", "rt"]), format!("removed {posix}\n"));
    failed(&d.run(&["mq", "receive", "rt", "--nonblocking"]), 3);
}

#[test]
fn receive_takes_the_highest_priority_first_and_fifo_within_one() {
    let mut d = Domain::new();
    d.queue("prio");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--capacity",
        "8",
        "prio",
        "low",
        "-p",
        "1",
    ]);
    for (message, priority) in [("high", "5"), ("middle", "3"), ("high again", "5")] {
        d.ok(&["mq", "send", "prio", message, "--priority", priority]);
    }
    d.ok(&["mq", "send", "prio", "zero"]);
    assert_eq!(
        d.ok(&["mq", "receive", "prio", "--count", "5", "--show-priority"]),
        "5 high\n5 high again\n3 middle\n1 low\n0 zero\n"
    );
    // --count 0 with --nonblocking drains what is there and stops.
    d.ok(&["mq", "send", "prio", "a"]);
    d.ok(&["mq", "send", "prio", "b"]);
    assert_eq!(
        d.ok(&["mq", "receive", "prio", "--count", "0", "--nonblocking"]),
        "a\nb\n"
    );
    d.ok(&["mq", "remove", "prio"]);
}

#[test]
fn info_shows_capacity_message_size_and_current_messages() {
    let mut d = Domain::new();
    let posix = d.queue("inf");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--capacity",
        "3",
        "--message-size",
        "100",
        "inf",
        "one",
    ]);
    d.ok(&["mq", "send", "inf", "two"]);
    let info = d.ok(&["mq", "info", "inf"]);
    assert!(
        info.contains(&format!("posix name:    {posix}\n")),
        "{info}"
    );
    assert!(info.contains("messages:      2\n"), "{info}");
    assert!(info.contains("capacity:      3 messages\n"), "{info}");
    assert!(info.contains("message size:  100 bytes\n"), "{info}");
    // Looking takes nothing.
    assert!(d.ok(&["mq", "info", &posix]).contains("messages:      2\n"));
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["mq", "info", "inf", "--json"])).unwrap();
    assert_eq!(json["name"], "inf");
    assert_eq!(json["domain"], d.name.as_str());
    assert_eq!(json["posix_name"], posix.as_str());
    assert_eq!(
        (&json["messages"], &json["capacity"], &json["message_size"]),
        (&2.into(), &3.into(), &100.into()),
        "{json}"
    );
    // Full: a non-blocking or timed send fails (exit 1), nothing is lost.
    d.ok(&["mq", "send", "inf", "three"]);
    let err = failed(&d.run(&["mq", "send", "inf", "four", "--nonblocking"]), 1);
    assert!(err.contains("full"), "{err}");
    let err = failed(
        &d.run(&["mq", "send", "inf", "four", "--timeout", "0.05"]),
        1,
    );
    assert!(err.contains("stayed full"), "{err}");
    assert_eq!(
        d.ok(&["mq", "receive", "inf", "--count", "3"]),
        "one\ntwo\nthree\n"
    );
    let err = failed(&d.run(&["mq", "receive", "inf", "--timeout", "0.05"]), 1);
    assert!(err.contains("stayed empty"), "{err}");
    d.ok(&["mq", "remove", "inf"]);
}

#[test]
fn bad_input_is_one_line_with_the_right_exit_code() {
    let mut d = Domain::new();
    let missing = d.queue("missing");
    // No such queue: 3, with a hint.
    let err = failed(&d.run(&["mq", "send", "missing", "x"]), 3);
    assert!(err.contains(&missing) && err.contains("--create"), "{err}");
    failed(&d.run(&["mq", "receive", "missing", "--nonblocking"]), 3);
    failed(&d.run(&["mq", "info", "missing"]), 3);
    failed(&d.run(&["mq", "remove", "missing"]), 3);
    // Invalid names: 2.
    let long = format!("/{}", "a".repeat(300));
    for name in ["a/b", "", "/", "/a/b", long.as_str()] {
        let err = failed(&d.run(&["mq", "send", name, "x"]), 2);
        assert!(err.contains("invalid queue name"), "{name:?}: {err}");
        failed(&d.run(&["mq", "info", name]), 2);
    }
    // Not UTF-8: an argument or the domain.
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"a\xff");
    let cases: [&[&std::ffi::OsStr]; 3] = [
        &["mq".as_ref(), "send".as_ref(), bad, "x".as_ref()],
        &["mq".as_ref(), "send".as_ref(), "q".as_ref(), bad],
        &["mq".as_ref(), "info".as_ref(), bad],
    ];
    for args in cases {
        let out = Command::new(CONDUIT)
            .env("CONDUIT_DOMAIN", &d.name)
            .args(args)
            .output()
            .unwrap();
        let err = failed(&out, 2);
        assert!(err.contains("not valid UTF-8"), "{args:?}: {err}");
    }
    let out = Command::new(CONDUIT)
        .env("CONDUIT_DOMAIN", bad)
        .args(["mq", "info", "q"])
        .output()
        .unwrap();
    failed(&out, 2);
    // Limits and message sizes: 2, and no queue made.
    let err = failed(
        &d.run(&[
            "mq",
            "send",
            "--create",
            "--capacity",
            "100000",
            "missing",
            "x",
        ]),
        2,
    );
    assert!(err.contains("capacity of 100000"), "{err}");
    failed(
        &d.run(&[
            "mq",
            "send",
            "--create",
            "--message-size",
            "0",
            "missing",
            "x",
        ]),
        2,
    );
    failed(
        &d.run(&["mq", "send", "missing", "x", "--priority", "32768"]),
        2,
    );
    failed(
        &d.run(&["mq", "send", "missing", "x", "--priority", "-1"]),
        2,
    );
    failed(
        &d.run(&["mq", "send", "missing", "x", "--timeout", "-1"]),
        2,
    );
    failed(&d.run(&["mq", "send", "missing", "--hex", "zz"]), 2);
    failed(
        &d.run(&["mq", "send", "missing", "x", "--capacity", "4"]),
        2,
    );
    d.queue("small");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--message-size",
        "4",
        "small",
        "four",
    ]);
    let err = failed(&d.run(&["mq", "send", "small", "fives"]), 2);
    assert!(
        err.contains("exceeds the queue's message size of 4"),
        "{err}"
    );
    d.ok(&["mq", "remove", "small"]);
}

/// Runs `conduit args` where the mqueue filesystem can be listed: directly
/// when it is mounted, else in a private mount namespace with it mounted
/// at a temporary directory (`unshare -m`); `None` if neither works.
fn with_mqueue_mounted(d: &Domain, args: &[&str], check: &str) -> Option<Output> {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("mqueue"));
    if mounted {
        return Some(d.run(args));
    }
    let dir = std::env::temp_dir().join(format!("{}-mqueue", d.name));
    std::fs::create_dir_all(&dir).unwrap();
    // $0 mount point, $1 the check path (relative to it, "" for none),
    // then conduit and its arguments.
    let script = r#"mount -t mqueue none "$0" || exit 99
if [ -n "$1" ]; then stat -c '%a %g' "$0/$1" >&2 || exit 98; fi
shift; exec "$@""#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(&dir)
        .arg(check)
        .arg(CONDUIT)
        .args(args)
        .env("CONDUIT_DOMAIN", &d.name)
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_dir(&dir);
    // 99: mounting was refused; unshare's own complaint: not permitted.
    let out = out.ok()?;
    let refused = out.status.code() == Some(99) || stderr(&out).starts_with("unshare:");
    (!refused).then_some(out)
}

#[test]
fn list_shows_the_domains_queues_and_all_shows_every_queue() {
    let mut d = Domain::new();
    let other = Domain::new();
    d.queue("alpha");
    d.queue("beta");
    d.ok(&["mq", "send", "--create", "--capacity", "5", "alpha", "x"]);
    d.ok(&["mq", "send", "alpha", "y"]);
    let gid = rustix::process::getegid().as_raw().to_string();
    d.ok(&[
        "--share-group",
        &gid,
        "mq",
        "send",
        "--create",
        "--message-size",
        "32",
        "beta",
        "z",
    ]);
    let beta = format!("conduit.{}.beta", d.name);
    let Some(out) = with_mqueue_mounted(&d, &["mq", "list"], &beta) else {
        println!("skipped: mq list (no mqueue filesystem mounted and `unshare -m` not permitted)");
        d.ok(&["mq", "remove", "alpha"]);
        d.ok(&["mq", "remove", "beta"]);
        return;
    };
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][0], "QUEUE", "{list}");
    // Name, messages, capacity, message size.
    assert_eq!(rows[1][..3], ["alpha", "2", "5"], "{list}");
    assert_eq!(rows[2][0], "beta", "{list}");
    assert_eq!(rows[2][1], "1", "{list}");
    assert_eq!(rows[2][3], "32", "{list}");
    assert_eq!(rows.len(), 3, "{list}");
    // --share-group: mode 0660 exactly (no umask), given to the group
    // (stat on stderr when listed through a private mount).
    if let Some(stat) = stderr(&out).lines().next() {
        assert_eq!(stat, format!("660 {gid}"));
    }
    // --json: one object per queue.
    let out = with_mqueue_mounted(&d, &["mq", "list", "--json"], "").unwrap();
    let objects: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(objects[0]["name"], "alpha");
    assert_eq!(
        objects[0]["posix_name"],
        format!("/conduit.{}.alpha", d.name)
    );
    assert_eq!(
        (&objects[0]["messages"], &objects[0]["capacity"]),
        (&2.into(), &5.into())
    );
    assert_eq!(
        (&objects[1]["name"], &objects[1]["message_size"]),
        (&"beta".into(), &32.into())
    );
    // Another domain sees none of them; --all sees them by POSIX name.
    let none = with_mqueue_mounted(&other, &["mq", "list", "--json"], "").unwrap();
    assert_eq!(stdout(&none), "", "no queue, no line");
    let none = with_mqueue_mounted(&other, &["mq", "list"], "").unwrap();
    assert_eq!(
        stdout(&none),
        format!("no message queues in domain {:?}\n", other.name)
    );
    let all = stdout(&with_mqueue_mounted(&other, &["mq", "list", "--all"], "").unwrap());
    assert!(
        all.contains(&format!("/conduit.{}.alpha ", d.name)),
        "{all}"
    );
    d.ok(&["mq", "remove", "alpha"]);
    d.ok(&["mq", "remove", "beta"]);
}

/// A POSIX message-queue client in another language: `send NAME MESSAGE
/// PRIORITY [create]` and `receive NAME` (prints `<priority> <message>`).
enum Peer {
    Python,
    C(PathBuf),
}

const PEER_PY: &str = r#"
import sys, posix_ipc
command, name = sys.argv[1], sys.argv[2]
if command == "send":
    flags = posix_ipc.O_CREX if len(sys.argv) > 5 else 0
    q = posix_ipc.MessageQueue(name, flags, mode=0o600, max_messages=4, max_message_size=128)
    q.send(sys.argv[3].encode(), timeout=10, priority=int(sys.argv[4]))
else:
    q = posix_ipc.MessageQueue(name)
    message, priority = q.receive(10)
    sys.stdout.write("%d %s\n" % (priority, message.decode()))
q.close()
"#;

const PEER_C: &str = r#"
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    if (strcmp(argv[1], "send") == 0 && argc >= 5) {
        struct mq_attr attr = {0};
        attr.mq_maxmsg = 4;
        attr.mq_msgsize = 128;
        int flags = O_WRONLY | (argc > 5 ? O_CREAT | O_EXCL : 0);
        mqd_t q = mq_open(argv[2], flags, 0600, &attr);
        if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
        if (mq_timedsend(q, argv[3], strlen(argv[3]), (unsigned)atoi(argv[4]), &deadline) != 0) {
            perror("mq_send");
            return 1;
        }
        return mq_close(q) == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "receive") == 0) {
        mqd_t q = mq_open(argv[2], O_RDONLY);
        if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
        struct mq_attr attr;
        if (mq_getattr(q, &attr) != 0) { perror("mq_getattr"); return 1; }
        char *buf = malloc(attr.mq_msgsize);
        unsigned priority;
        ssize_t n = mq_timedreceive(q, buf, attr.mq_msgsize, &priority, &deadline);
        if (n < 0) { perror("mq_receive"); return 1; }
        printf("%u %.*s\n", priority, (int)n, buf);
        free(buf);
        return mq_close(q) == 0 ? 0 : 1;
    }
    return 2;
}
"#;

impl Peer {
    /// Python's `posix_ipc` if it imports, else the C peer built with
    /// `cc` into `dir`; `None` if neither is available.
    fn find(dir: &Path) -> Option<Peer> {
        let python = Command::new("python3")
            .args(["-c", "import posix_ipc"])
            .stderr(Stdio::null())
            .status();
        if python.is_ok_and(|s| s.success()) {
            return Some(Peer::Python);
        }
        std::fs::create_dir_all(dir).unwrap();
        let source = dir.join("peer.c");
        let binary = dir.join("peer");
        std::fs::write(&source, PEER_C).unwrap();
        let built = Command::new("cc")
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .arg("-lrt")
            .status();
        built.is_ok_and(|s| s.success()).then_some(Peer::C(binary))
    }

    fn run(&self, args: &[&str]) -> String {
        let out = match self {
            Peer::Python => Command::new("python3")
                .args(["-c", PEER_PY])
                .args(args)
                .output(),
            Peer::C(binary) => Command::new(binary).args(args).output(),
        }
        .unwrap();
        assert!(
            out.status.success(),
            "peer {args:?} failed: {}",
            stderr(&out)
        );
        stdout(&out)
    }
}

#[test]
fn a_client_in_another_language_shares_the_queues_both_ways() {
    let mut d = Domain::new();
    let dir = std::env::temp_dir().join(format!("{}-peer", d.name));
    let Some(peer) = Peer::find(&dir) else {
        let _ = std::fs::remove_dir_all(&dir);
        println!("skipped: mq interoperability (neither python3 posix_ipc nor cc available)");
        return;
    };
    let language = match peer {
        Peer::Python => "python posix_ipc",
        Peer::C(_) => "C (cc, -lrt)",
    };
    println!("foreign client: {language}");
    // conduit creates and sends; the foreign client receives.
    let posix = d.queue("interop");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--message-size",
        "128",
        "interop",
        "from conduit",
        "-p",
        "7",
    ]);
    assert_eq!(peer.run(&["receive", &posix]), "7 from conduit\n");
    // The foreign client sends to conduit's queue; conduit receives.
    peer.run(&["send", &posix, "from the peer", "11"]);
    assert_eq!(
        d.ok(&["mq", "receive", "interop", "--show-priority"]),
        "11 from the peer\n"
    );
    d.ok(&["mq", "remove", "interop"]);
    // A queue the foreign client created, by its POSIX name.
    let theirs = d.foreign_queue("theirs");
    peer.run(&["send", &theirs, "made elsewhere", "2", "create"]);
    let info = d.ok(&["mq", "info", &theirs]);
    assert!(info.contains("messages:      1\n"), "{info}");
    assert!(info.contains("capacity:      4 messages\n"), "{info}");
    assert!(info.contains("message size:  128 bytes\n"), "{info}");
    assert_eq!(
        d.ok(&["mq", "receive", &theirs, "--show-priority"]),
        "2 made elsewhere\n"
    );
    d.ok(&["mq", "send", &theirs, "and back"]);
    assert_eq!(peer.run(&["receive", &theirs]), "0 and back\n");
    d.ok(&["mq", "remove", &theirs]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two users through the CLI: a private queue refuses the other user
/// (exit 5, with the hint); one created with `--share-group GID` is used
/// by a member of GID, in both directions.
#[test]
fn share_group_lets_another_user_use_a_queue() {
    use std::os::unix::process::CommandExt;
    const OTHER_UID: u32 = 65534;
    const GID: &str = "4244";
    if rustix::process::geteuid().as_raw() != 0 {
        println!("skipped: mq between two users needs root (to run conduit as uid {OTHER_UID})");
        return;
    }
    let mut d = Domain::new();
    let member = |d: &Domain, args: &[&str]| {
        let mut c = d.cmd(args);
        c.uid(OTHER_UID).gid(GID.parse().unwrap());
        c.output().unwrap()
    };
    match Command::new(CONDUIT)
        .arg("--version")
        .uid(OTHER_UID)
        .output()
    {
        Ok(o) if o.status.success() => {}
        other => {
            println!("skipped: uid {OTHER_UID} cannot run {CONDUIT}: {other:?}");
            return;
        }
    }
    d.queue("private");
    d.ok(&[
        "mq",
        "send",
        "--create",
        "--message-size",
        "64",
        "private",
        "x",
    ]);
    let err = failed(&member(&d, &["mq", "info", "private"]), 5);
    assert!(err.contains("--share-group"), "{err}");
    failed(&member(&d, &["mq", "send", "private", "y"]), 5);
    d.ok(&["mq", "remove", "private"]);

    d.queue("by-root");
    d.ok(&[
        "--share-group",
        GID,
        "mq",
        "send",
        "--create",
        "--message-size",
        "64",
        "by-root",
        "from root",
    ]);
    let out = member(&d, &["mq", "receive", "by-root"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from root\n");
    d.queue("by-member");
    let out = member(
        &d,
        &[
            "--share-group",
            GID,
            "mq",
            "send",
            "--create",
            "--capacity",
            "2",
            "--message-size",
            "64",
            "by-member",
            "from the member",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.ok(&["mq", "receive", "by-member"]), "from the member\n");
    d.ok(&["mq", "remove", "by-root"]);
    d.ok(&["mq", "remove", "by-member"]);
}
