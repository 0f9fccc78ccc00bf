//! End-to-end tests of `conduit list|info|clean|pub|sub|hz|top|bench`
//! against real services: the test process creates services and ports with
//! the library, `conduit` runs as a child process. Each test has its own
//! domain and leaves nothing in /dev/shm.

mod common;

use common::{shm_names, stderr};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conduit::node::Node;

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

/// A unique domain, checked empty in /dev/shm when dropped.
struct Domain(String);

impl Domain {
    fn new() -> Domain {
        static N: AtomicU32 = AtomicU32::new(0);
        // A hung child or test ends the whole run instead of blocking CI.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(120));
            eprintln!("watchdog: test hung");
            std::process::abort();
        });
        Domain(format!(
            "clitest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn node(&self) -> Node {
        Node::builder()
            .name("test")
            .domain(&self.0)
            .create()
            .unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CONDUIT);
        c.env("CONDUIT_DOMAIN", &self.0)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn leftovers(&self) -> Vec<String> {
        shm_names(&format!("conduit.{}.", self.0))
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Node::cleanup(&self.0);
        let left = self.leftovers();
        for name in &left {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed with `code` and one `conduit: ` line on stderr.
fn assert_fails(o: &Output, code: i32, contains: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("conduit: "), "{err}");
    assert!(err.contains(contains), "{err:?} lacks {contains:?}");
    assert!(!err.contains("panicked"), "{err}");
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A `conduit` child that announces "subscribed" on stderr; killed on drop.
struct Running {
    child: Child,
    err: BufReader<ChildStderr>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("conduit: subscribed to") || line.starts_with("conduit: listening to"),
            "{line:?}"
        );
        Running { child, err }
    }

    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut out = String::new();
        // (A test that read stdout itself took it.)
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        let mut err = String::new();
        self.err.read_to_string(&mut err).unwrap();
        (self.child.wait().unwrap(), out, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn list_shows_request_response_services() {
    let d = Domain::new();
    let node = d.node();
    let svc = node
        .service("planner/plan")
        .request_response::<u64, u32>()
        .active_requests(3)
        .open_or_create()
        .unwrap();
    let _client = svc.client().create().unwrap();
    let _server = svc.server().create().unwrap();

    let o = d.run(&["list", "services", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["kind"], "request/response");
    assert_eq!(v[0]["name"], "planner/plan");
    assert_eq!(v[0]["request"]["name"], "u64");
    assert_eq!(v[0]["response"]["name"], "u32");
    assert_eq!(
        (v[0]["clients"].as_u64(), v[0]["servers"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v[0]["qos"]["active_requests"], 3);

    let text = stdout(&d.run(&["list", "services"]));
    assert!(
        text.contains("planner/plan") && text.contains("u64 → u32"),
        "{text}"
    );

    // `info`: the ports, and how many responses each client awaits (a
    // request sent wanting no response is not awaited).
    let pending = _client.send_copy(7).unwrap();
    let _pending2 = _client.send_copy(8).unwrap();
    _client.send_copy_no_response(9).unwrap();
    let o = d.run(&["info", "planner/plan", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(v[0]["kind"], "request/response");
    assert_eq!(v[0]["client_ports"][0]["awaiting"], 2, "{v:?}");
    assert_eq!(
        v[0]["client_ports"][0]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(v[0]["server_ports"].as_array().map(Vec::len), Some(1));
    drop(pending);
    let text = stdout(&d.run(&["info", "planner/plan"]));
    assert!(
        text.contains("request/response service")
            && text.contains("client")
            && text.contains("server"),
        "{text}"
    );
    let v = json_lines(&d.run(&["info", "planner/plan", "--json"]));
    assert_eq!(v[0]["client_ports"][0]["awaiting"], 1, "{v:?}");
}

#[test]
fn info_shows_request_response_user_headers() {
    let d = Domain::new();
    let node = d.node();
    let _svc = node
        .service("traced")
        .request_response::<u64, u32>()
        .request_header::<u16>()
        .open_or_create()
        .unwrap();
    let v = json_lines(&d.run(&["info", "traced", "--json"]));
    assert_eq!(v[0]["request_header"]["name"], "u16", "{v:?}");
    assert_eq!(v[0]["request_header"]["size"], 2, "{v:?}");
    assert_eq!(v[0]["response_header"]["size"], 0, "{v:?}");
    let text = stdout(&d.run(&["info", "traced"]));
    let headers: Vec<&str> = text.lines().filter(|l| l.contains("header:")).collect();
    assert_eq!(headers.len(), 1, "only the request has one: {text}");
    assert!(headers[0].contains("u16 (size 2, align 2"), "{text}");
}

/// Starts `conduit serve ARGS` and waits for its "serving" line.
fn serve(d: &Domain, args: &[&str]) -> Child {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut child = d.cmd(&all).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("conduit: serving"), "{line}");
    // Keep reading its stderr: a closed pipe would fail its next message.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

#[test]
fn call_and_serve_between_processes() {
    let d = Domain::new();
    // Echo: text, hex, fire-and-forget; then the server exits (--count 3).
    let mut echo = serve(&d, &["echo", "--count", "3"]);
    let o = d.run(&["call", "echo", "hello there"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello there\n");
    let o = d.run(&["call", "echo", "--hex", "00 ff 7f"]);
    assert_eq!(stdout(&o), "00ff7f\n", "{}", stderr(&o));
    let o = d.run(&["call", "echo", "--no-response", "x"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(echo.wait().unwrap().success());

    // A command per request: the request on its stdin, its stdout back.
    let mut upper = serve(&d, &["upper", "--count", "1", "--", "tr", "a-z", "A-Z"]);
    let o = d.run(&["call", "upper", "shout this"]);
    assert_eq!(stdout(&o), "SHOUT THIS\n", "{}", stderr(&o));
    assert!(upper.wait().unwrap().success());
    // A failing command answers nothing: the caller says so (exit 1).
    let mut failing = serve(&d, &["failing", "--count", "1", "--", "false"]);
    assert_fails(&d.run(&["call", "failing", "x"]), 1, "without answering");
    assert!(failing.wait().unwrap().success());

    // Bad input: no such service, another type, a bad server id.
    assert_fails(
        &d.run(&["call", "missing", "x"]),
        3,
        "no service \"missing\"",
    );
    let node = d.node();
    let _typed = node
        .service("typed")
        .request_response::<u64, u32>()
        .open_or_create()
        .unwrap();
    assert_fails(&d.run(&["call", "typed", "x"]), 4, "u64 → u32");
    assert_fails(
        &d.run(&["serve", "typed", "--count", "1"]),
        4,
        "[u8] → [u8]",
    );
    assert_fails(
        &d.run(&["call", "echo", "x", "--server", "not-hex"]),
        2,
        "not a hex port id",
    );
}

#[test]
fn list_shows_services_nodes_and_segments() {
    let d = Domain::new();
    let node = d.node();
    let topic = node
        .service("robot/pose")
        .publish_subscribe::<[u8]>()
        .subscriber_buffer(6)
        .open_or_create()
        .unwrap();
    let _publisher = topic.publisher().create().unwrap();

    let o = d.run(&["list", "services", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["name"], "robot/pose");
    assert_eq!(v[0]["payload_kind"], "slice");
    assert_eq!(v[0]["payload"]["name"], "u8");
    assert_eq!(v[0]["publishers"], 1);
    assert_eq!(v[0]["qos"]["subscriber_buffer"], 6);

    let o = d.run(&["list", "nodes", "--json"]);
    let v = json_lines(&o);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["pid"], std::process::id());
    assert_eq!(v[0]["state"], "alive");
    assert_eq!(v[0]["name"], "test");

    let o = d.run(&["list", "segments", "--json"]);
    let types: Vec<String> = json_lines(&o)
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    for t in ["service", "node", "publisher data"] {
        assert!(types.iter().any(|x| x == t), "{types:?}");
    }
    assert!(
        json_lines(&o)
            .iter()
            .all(|v| v["bytes"].as_u64().unwrap() > 0)
    );

    // Everything, as tables (no colors: stdout is not a terminal).
    let o = d.run(&["list"]);
    let text = stdout(&o);
    assert!(
        text.contains("robot/pose") && text.contains("[u8]"),
        "{text}"
    );
    assert!(text.contains("alive"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");
}

#[test]
fn info_shows_ports_and_queue_fill() {
    let d = Domain::new();
    let node = d.node();
    let topic = node
        .service("info/me")
        .publish_subscribe::<u64>()
        .subscriber_buffer(4)
        .open_or_create()
        .unwrap();
    let publisher = topic.publisher().create().unwrap();
    let subscriber = topic.subscriber().create().unwrap();
    for i in 0..3 {
        publisher.send_copy(i).unwrap();
    }
    let o = d.run(&["info", "info/me", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["payload_kind"], "typed");
    assert_eq!(v["publishers"][0]["pid"], std::process::id());
    assert_eq!(v["subscribers"][0]["alive"], true);
    let c = &v["connections"][0];
    assert_eq!(c["sent"], 3);
    assert_eq!(c["queued"], 3);
    assert_eq!(c["capacity"], 4);
    let s = subscriber.try_receive().unwrap().unwrap();
    drop(s);
    let v = &json_lines(&d.run(&["info", "info/me", "--json"]))[0];
    assert_eq!(v["connections"][0]["queued"], 2);
    assert_eq!(v["connections"][0]["sent"], 3);
    // Returns are written lazily (when the subscriber finds its queue
    // empty): at most the one sample dropped so far.
    assert!(v["connections"][0]["released"].as_u64().unwrap() <= 1);

    let text = stdout(&d.run(&["info", "info/me"]));
    assert!(text.contains("publisher") && text.contains("2/4"), "{text}");

    // Exact drops, per connection, from shared memory (DropOldest).
    let lossy = node
        .service("info/lossy")
        .publish_subscribe::<u64>()
        .subscriber_buffer(2)
        .open_or_create()
        .unwrap();
    let lossy_pub = lossy.publisher().create().unwrap();
    let _lossy_sub = lossy.subscriber().create().unwrap();
    for i in 0..7 {
        lossy_pub.send_copy(i).unwrap();
    }
    let v = &json_lines(&d.run(&["info", "info/lossy", "--json"]))[0];
    assert_eq!(v["connections"][0]["dropped"], 5, "{v}");
    let text = stdout(&d.run(&["info", "info/lossy"]));
    assert!(text.contains("dropped"), "{text}");
    let top = json_lines(&d.run(&["top", "--iterations", "1", "--json"]));
    let row = top.iter().find(|r| r["service"] == "info/lossy").unwrap();
    assert_eq!(row["dropped"], 5, "{row}");

    assert_fails(&d.run(&["info", "no/such"]), 3, "no service \"no/such\"");
    assert_fails(&d.run(&["info", "bad name"]), 2, "invalid service name");
    assert_fails(
        &Command::new(CONDUIT)
            .args(["--domain", "a/b", "info", "x"])
            .output()
            .unwrap(),
        2,
        "invalid domain",
    );
}

#[test]
fn sub_prints_samples_published_by_another_process() {
    let d = Domain::new();
    let node = d.node();
    let topic = node
        .service("chat")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let publisher = topic.publisher().max_slice_len(64).create().unwrap();

    let sub = Running::start(d.cmd(&["sub", "chat", "--count", "3"]));
    for text in ["hello", "wörld", "third"] {
        publisher.send_slice_copy(text.as_bytes()).unwrap();
    }
    let (status, out, err) = sub.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "hello\nwörld\nthird\n");

    let sub = Running::start(d.cmd(&["sub", "chat", "--count", "1", "--hex"]));
    publisher.send_slice_copy(&[0xde, 0xad, 0x00]).unwrap();
    let (_, out, _) = sub.finish();
    assert_eq!(out, "dead00\n");

    let sub = Running::start(d.cmd(&["sub", "chat", "--count", "2", "--json"]));
    publisher.send_slice_copy(b"{\"a\":1}").unwrap();
    publisher.send_slice_copy(&[0xff, 0xfe]).unwrap();
    let (_, out, _) = sub.finish();
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["text"], "{\"a\":1}");
    assert_eq!(v[0]["len"], 7);
    assert_eq!(v[1]["hex"], "fffe");
    assert_eq!(v[1]["publisher"], format!("{:016x}", publisher.id()));
}

#[test]
fn sub_and_pub_reject_other_types_and_unknown_services() {
    let d = Domain::new();
    let node = d.node();
    let _typed = node
        .service("typed")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    assert_fails(&d.run(&["sub", "typed", "--count", "1"]), 4, "carries u64");
    assert_fails(&d.run(&["pub", "typed", "x"]), 4, "carries u64");
    assert_fails(&d.run(&["hz", "typed"]), 4, "carries u64");
    assert_fails(&d.run(&["sub", "missing"]), 3, "no service");
    assert_fails(&d.run(&["pub", "missing", "x"]), 3, "no service");
    assert_fails(&d.run(&["pub", "-bad-", "x"]), 2, "");
    assert_fails(&d.run(&["pub", "typed", "abc", "--hex"]), 2, "hex");
    assert_fails(
        &d.run(&["pub", "typed", "zz", "--hex"]),
        2,
        "not hexadecimal",
    );
    assert_fails(&d.run(&["hz", "typed", "--window=-1"]), 2, "--window");
}

/// A name used by a service of the other kind is reported as such (exit
/// 4, naming the kind and its commands), not as a missing service.
#[test]
fn commands_name_a_service_of_the_other_kind() {
    let d = Domain::new();
    let node = d.node();
    let _events = node.service("ev").event().open_or_create().unwrap();
    let _topic = node
        .service("ps")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    for args in [
        &["sub", "ev", "--count", "1"][..],
        &["pub", "ev", "x"],
        &["hz", "ev"],
    ] {
        assert_fails(
            &d.run(args),
            4,
            "\"ev\" is a service of another kind: event service (use conduit notify, listen)",
        );
    }
    for args in [&["notify", "ps"][..], &["listen", "ps", "--count", "1"]] {
        assert_fails(
            &d.run(args),
            4,
            "\"ps\" is a service of another kind: publish/subscribe service (use conduit pub, sub, hz)",
        );
    }
    assert_fails(&d.run(&["notify", "missing"]), 3, "does not exist");
    assert_fails(&d.run(&["sub", "missing"]), 3, "no service");
}

/// A service whose segment header was overwritten is reported as
/// corrupted, not as "abandoned by its creator".
#[test]
fn corrupted_header_is_not_called_abandoned() {
    use std::os::unix::fs::FileExt;

    let d = Domain::new();
    let node = d.node();
    let _topic = node
        .service("scribbled")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let file = d
        .leftovers()
        .into_iter()
        .find(|n| n.contains(".svc."))
        .unwrap();
    let shm = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{file}"))
        .unwrap();
    // The header's state word (offset 12): a value no creator writes.
    shm.write_all_at(&0x4d_u32.to_ne_bytes(), 12).unwrap();
    for args in [
        &["info", "scribbled"][..],
        &["sub", "scribbled", "--count", "1"],
    ] {
        let o = d.run(args);
        assert_fails(&o, 1, "corrupted header: header state word is 0x4d");
        assert!(!stderr(&o).contains("abandoned"), "{}", stderr(&o));
    }
}

/// A negative number after an option is its value (not an unknown flag),
/// and is rejected as an invalid value naming the option.
#[test]
fn negative_numbers_are_values_rejected_as_invalid() {
    let d = Domain::new();
    for (args, message) in [
        (
            &["top", "--interval", "-1"][..],
            "--interval must be a number of seconds > 0",
        ),
        (
            &["top", "--iterations", "-1"],
            "'--iterations <ITERATIONS>': must be 0 or more, not -1",
        ),
        (
            &["hz", "x", "--window", "-1"],
            "--window must be a number of seconds > 0",
        ),
        (
            &["pub", "x", "y", "--interval", "-1"],
            "--interval must be a number of seconds ≥ 0",
        ),
        (
            &["pub", "x", "y", "--count", "-2"],
            "'--count <COUNT>': must be 0 or more, not -2",
        ),
        (
            &["sub", "x", "--count", "-1"],
            "'--count <COUNT>': must be 0 or more",
        ),
        (
            &["listen", "x", "--count", "-1"],
            "'--count <COUNT>': must be 0 or more",
        ),
        (
            &["notify", "x", "--id", "-1"],
            "'--id <ID>': must be 0 or more",
        ),
        (
            &["soak", "--kill-interval", "-1"],
            "'--kill-interval <KILL_INTERVAL>': must be 0 or more",
        ),
        (
            &["soak", "--duration", "-5s"],
            "'--duration <DURATION>': must be 0 or more, not -5s",
        ),
        (
            &["soak", "--publishers", "-1"],
            "'--publishers <PUBLISHERS>': must be 0 or more",
        ),
    ] {
        let o = d.run(args);
        assert_fails(&o, 2, message);
        assert!(!stderr(&o).contains("unexpected argument"), "{args:?}");
    }
}

/// Bytes that are not UTF-8, in an argument or in $CONDUIT_DOMAIN: one
/// `conduit: ` line and exit 2, never a panic (101) or a silent `default`.
#[test]
fn arguments_and_domain_that_are_not_utf8_are_bad_input() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let d = Domain::new();
    let bad = OsStr::from_bytes(b"a\xff");
    let o = d.cmd(&["pub"]).arg(bad).arg("x").output().unwrap();
    assert_fails(&o, 2, r#"argument 2 ("a\xFF") is not valid UTF-8"#);
    let o = d
        .cmd(&["list"])
        .arg(OsStr::from_bytes(b"\xff"))
        .output()
        .unwrap();
    assert_fails(&o, 2, "");
    let o = d.cmd(&["info"]).arg(bad).output().unwrap();
    assert_fails(&o, 2, "not valid UTF-8");
    let o = d.cmd(&["--domain"]).arg(bad).arg("list").output().unwrap();
    assert_fails(&o, 2, "not valid UTF-8");
    for args in [&["list", "services"][..], &["sub", "x"], &["clean"]] {
        let o = d.cmd(args).env("CONDUIT_DOMAIN", bad).output().unwrap();
        assert_fails(&o, 2, r#"$CONDUIT_DOMAIN "a\xFF" is not valid UTF-8"#);
    }
    // --domain wins over a bad $CONDUIT_DOMAIN.
    let o = d
        .cmd(&["list", "services", "--domain", &d.0])
        .env("CONDUIT_DOMAIN", bad)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `sub --wait` waits for a service that does not exist yet, then
/// subscribes; without it the error says --wait exists.
#[test]
fn sub_wait_subscribes_once_the_service_appears() {
    let d = Domain::new();
    assert_fails(
        &d.run(&["sub", "later"]),
        3,
        "(pass --wait to wait until it appears)",
    );
    let mut child = d
        .cmd(&["sub", "later", "--wait", "--count", "1"])
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert_eq!(line, "conduit: waiting for service \"later\"\n");
    // Still waiting: nothing exists yet, and it has not given up.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none());
    let node = d.node();
    let topic = node
        .service("later")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let publisher = topic.publisher().create().unwrap();
    line.clear();
    err.read_line(&mut line).unwrap();
    assert_eq!(line, "conduit: subscribed to \"later\"\n");
    while child.try_wait().unwrap().is_none() {
        publisher.send_slice_copy(b"at last").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), "at last\n");
}

#[test]
fn pub_delivers_to_a_subscriber_in_another_process() {
    let d = Domain::new();
    let node = d.node();
    let topic = node
        .service("cmd")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let subscriber = topic.subscriber().create().unwrap();
    let publish = |args: &[&str]| {
        let child = d.cmd(args).spawn().unwrap();
        let got = subscriber
            .receive_timeout(Duration::from_secs(20))
            .unwrap()
            .to_vec();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        got
    };
    assert_eq!(publish(&["pub", "cmd", "go ahead"]), b"go ahead");
    assert_eq!(
        publish(&["pub", "cmd", "de:ad be ef", "--hex"]),
        [0xde, 0xad, 0xbe, 0xef]
    );
    // --create makes a [u8] service of its own.
    let o = d.run(&["pub", "fresh", "x", "--create", "--linger", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn hz_reports_rate_and_bandwidth() {
    let d = Domain::new();
    let node = d.node();
    let topic = node
        .service("rate")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let publisher = topic.publisher().max_slice_len(100).create().unwrap();
    let mut hz =
        Running::start(d.cmd(&["hz", "rate", "--window", "0.2", "--count", "2", "--json"]));
    while hz.child.try_wait().unwrap().is_none() {
        publisher.send_slice_copy(&[7u8; 100]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (status, out, err) = hz.finish();
    assert!(status.success(), "{err}");
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{out}");
    let messages: u64 = v.iter().map(|l| l["messages"].as_u64().unwrap()).sum();
    let bytes: u64 = v.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    assert!(messages > 0);
    assert_eq!(bytes, messages * 100);
    assert!(v[0]["rate_hz"].as_f64().unwrap() >= 0.0);
}

#[test]
fn top_shows_every_service() {
    let d = Domain::new();
    let node = d.node();
    let a = node
        .service("top/a")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    let _b = node
        .service("top/b")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let publisher = a.publisher().create().unwrap();
    let _subscriber = a.subscriber().create().unwrap();
    publisher.send_copy(1).unwrap();
    let rr = node
        .service("top/rr")
        .request_response::<[u8], u32>()
        .open_or_create()
        .unwrap();
    let client = rr.client().create().unwrap();
    let _server = rr.server().create().unwrap();
    let _pending = client.send_slice_copy(b"q").unwrap();
    let o = d.run(&["top", "--iterations", "2", "--interval", "0.05", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(v.len(), 6, "{}", stdout(&o));
    let rr_row = v.iter().find(|l| l["service"] == "top/rr").unwrap();
    assert_eq!(rr_row["payload"], "[u8] → u32", "{rr_row}");
    assert_eq!(
        (rr_row["clients"].as_u64(), rr_row["awaiting"].as_u64()),
        (Some(1), Some(1))
    );
    let a_row = v.iter().find(|l| l["service"] == "top/a").unwrap();
    assert_eq!(a_row["queued"], 1);
    assert_eq!(a_row["subscribers"], 1);
    // No rate before two refreshes (not a misleading 0.0), then a number.
    assert_eq!(a_row["refresh"], 0);
    assert!(a_row["sent_per_s"].is_null(), "{a_row}");
    let second = v
        .iter()
        .find(|l| l["service"] == "top/a" && l["refresh"] == 1)
        .unwrap();
    assert_eq!(second["sent_per_s"], 0.0, "{second}");
    let o = d.run(&["top", "--iterations", "1"]);
    let text = stdout(&o);
    assert!(
        text.contains("top/a")
            && text.contains("top/b")
            && text.contains("[u8]")
            && text.contains("1 awaiting"),
        "{text}"
    );
    // The help promises only what works (there is no `q` key).
    let help = stdout(&d.run(&["top", "--help"]));
    assert!(!help.contains("`q`"), "{help}");
    assert_fails(&d.run(&["top", "--interval", "0"]), 2, "--interval");
}

#[test]
fn clean_removes_what_a_killed_process_left() {
    let d = Domain::new();
    // A live node and its service are kept. (Created first: creating a
    // node cleans up the dead ones of its domain.)
    let node = d.node();
    let _live = node
        .service("alive")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    // A `conduit sub --create` process holds a node, a service and a port;
    // it is killed with SIGKILL and leaves them behind.
    // Likewise a `conduit listen --create` process and an event service.
    // (Both started before either dies: a new node cleans up dead ones.)
    let mut sub = Running::start(d.cmd(&["sub", "orphan", "--create"]));
    let mut listen = Running::start(d.cmd(&["listen", "orphan-events", "--create"]));
    // A publisher (with its data segment) in the live service.
    let mut publisher = d
        .cmd(&[
            "pub",
            "alive-bytes",
            "x",
            "--create",
            "--count",
            "1000",
            "--interval",
            "1",
        ])
        .spawn()
        .unwrap();
    while !d.leftovers().iter().any(|n| n.contains(".pub.")) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _bytes = node
        .service("alive-bytes")
        .publish_subscribe::<[u8]>()
        .open()
        .unwrap();
    let pid = sub.child.id();
    for child in [&mut sub.child, &mut listen.child, &mut publisher] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let segments = |o: &Output, action: &str| -> Vec<String> {
        let mut s: Vec<String> = json_lines(o)
            .iter()
            .filter(|l| l["action"] == action)
            .map(|l| l["segment"].as_str().unwrap().to_owned())
            .collect();
        s.sort();
        s
    };

    let before = d.leftovers();
    let o = d.run(&["clean", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert!(
        v.iter()
            .any(|l| l["action"] == "would remove" && l["object"] == "node" && l["pid"] == pid),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l["action"] == "kept" && l["pid"] == std::process::id()),
        "{v:?}"
    );
    let planned = segments(&o, "would remove");
    // Nothing removed yet.
    assert_eq!(d.leftovers(), before);
    // Three dead nodes, the publisher's data segment, the two services
    // only the dead used; the live node and both live services stay.
    assert_eq!(planned.len(), 6, "{v:?}");
    assert_eq!(planned.iter().filter(|s| s.contains(".node.")).count(), 3);
    assert_eq!(planned.iter().filter(|s| s.contains(".pub.")).count(), 1);
    assert!(v.iter().any(|l| l["action"] == "would remove"
        && l["name"] == "orphan"
        && l["object"] == "service"));
    for kept in ["alive", "alive-bytes"] {
        assert!(
            v.iter().any(|l| l["action"] == "kept" && l["name"] == kept),
            "{kept}: {v:?}"
        );
    }

    // The real clean removes exactly that: what it reports and what
    // disappeared from /dev/shm.
    let o = d.run(&["clean", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(segments(&o, "removed"), planned);
    assert!(segments(&o, "could not remove").is_empty());
    let after = d.leftovers();
    let mut gone: Vec<String> = before
        .iter()
        .filter(|n| !after.contains(n))
        .map(|n| n.to_string())
        .collect();
    gone.sort();
    assert_eq!(gone, planned);

    // The text form, on a domain with nothing left to clean.
    let o = d.run(&["clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("kept service \"alive\""), "{text}");
    assert!(text.contains("removed 0 object(s)"), "{text}");
    let nodes = json_lines(&d.run(&["list", "nodes", "--json"]));
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["pid"], std::process::id());
    let services = json_lines(&d.run(&["list", "services", "--json"]));
    assert_eq!(services.len(), 2);
}

/// Another user's `clean` says, object by object, what it could not check
/// (private objects of others) and what it could not remove (group-shared
/// objects it may use but, in the sticky /dev/shm, not unlink).
#[test]
fn clean_by_another_user_names_what_it_could_not_remove() {
    use std::os::unix::process::CommandExt;
    const OTHER_UID: u32 = 65534;
    const SHARED_GID: u32 = 4242;
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: clean as another user needs root (to run conduit as uid {OTHER_UID})");
        return;
    }
    let d = Domain::new();
    let as_other = |args: &[&str]| {
        let mut c = d.cmd(args);
        c.uid(OTHER_UID).gid(SHARED_GID);
        c.output()
    };
    match as_other(&["--version"]) {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skipped: uid {OTHER_UID} cannot run {CONDUIT}: {other:?}");
            return;
        }
    }
    // Root's private publisher and a group-shared one, both killed.
    let mut children = Vec::new();
    for args in [
        &[
            "pub",
            "private",
            "x",
            "--create",
            "--count",
            "1000",
            "--interval",
            "1",
        ][..],
        &[
            "--share-group",
            "4242",
            "pub",
            "shared",
            "x",
            "--create",
            "--count",
            "1000",
            "--interval",
            "1",
        ],
    ] {
        children.push(d.cmd(args).spawn().unwrap());
    }
    while d.leftovers().iter().filter(|n| n.contains(".pub.")).count() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let before = d.leftovers();
    assert_eq!(before.len(), 6, "{before:?}");

    let o = as_other(&["--share-group", "4242", "clean", "--json"]).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(d.leftovers(), before, "another user removed something");
    let lines = |action: &str| -> Vec<String> {
        v.iter()
            .filter(|l| l["action"] == action)
            .map(|l| {
                format!(
                    "{} {}",
                    l["object"].as_str().unwrap(),
                    l["reason"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Every object is named, none as removed.
    assert_eq!(
        v.iter().filter(|l| l["segment"].is_string()).count(),
        6,
        "{v:?}"
    );
    assert!(lines("removed").is_empty(), "{v:?}");
    let not_removed = lines("could not remove");
    assert!(
        not_removed
            .iter()
            .any(|l| l.starts_with("service no live process has it open")
                && l.ends_with("owned by uid 0: only its owner or root can remove it")),
        "{v:?}"
    );
    assert!(
        not_removed.iter().any(|l| l.starts_with("publisher data")),
        "{v:?}"
    );
    let unchecked = lines("could not check");
    assert!(
        unchecked
            .iter()
            .filter(|l| l.contains("owned by uid 0"))
            .count()
            >= 3,
        "{v:?}"
    );
    let o = as_other(&["--share-group", "4242", "clean"]).unwrap();
    assert!(
        stdout(&o).contains("could not check or remove 6 object(s)"),
        "{}",
        stdout(&o)
    );
    // Root cleans both (the group-shared objects with --share-group).
    let o = d.run(&["clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.run(&["--share-group", "4242", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.leftovers().is_empty(), "{:?}", d.leftovers());
}

/// `--share-group` between two users, both through the CLI: a service
/// created by one is joined by the other, in both directions; a member
/// without the option gets exit 5 with the hint.
#[test]
fn share_group_works_between_two_users() {
    use std::os::unix::process::CommandExt;
    const OTHER_UID: u32 = 65534;
    const GID: &str = "4243";
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!(
            "skipped: --share-group between two users needs root (to run conduit as uid {OTHER_UID})"
        );
        return;
    }
    let d = Domain::new();
    let member = |args: &[&str]| {
        let mut c = d.cmd(args);
        c.uid(OTHER_UID).gid(GID.parse().unwrap());
        c
    };
    match member(&["--version"]).output() {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skipped: uid {OTHER_UID} cannot run {CONDUIT}: {other:?}");
            return;
        }
    }
    for (creator_is_root, service) in [(true, "made-by-root"), (false, "made-by-member")] {
        let sub_args = [
            "--share-group",
            GID,
            "sub",
            service,
            "--create",
            "--count",
            "1",
        ];
        let pub_args = [
            "--share-group",
            GID,
            "pub",
            service,
            "hello",
            "--linger",
            "20",
        ];
        let (sub, mut publisher) = if creator_is_root {
            (d.cmd(&sub_args), member(&pub_args))
        } else {
            (member(&sub_args), d.cmd(&pub_args))
        };
        let sub = Running::start(sub);
        if creator_is_root {
            // Without the option the member's private node is told how.
            let o = member(&["pub", service, "x"]).output().unwrap();
            assert_fails(&o, 5, "pass --share-group GID");
        }
        // The subscriber is stopped while the publisher sends: the
        // publisher must linger until it took the sample (it reads its
        // queues through its own handle: a tool's read of another user's
        // service fails, which made it leave at once and lose the sample).
        let sub_pid = rustix::process::Pid::from_raw(sub.child.id() as i32).unwrap();
        let stop = |signal| rustix::process::kill_process(sub_pid, signal).unwrap();
        stop(rustix::process::Signal::STOP);
        let mut publisher = publisher.spawn().unwrap();
        while !d.leftovers().iter().any(|n| n.contains(".pub."))
            && publisher.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let early = publisher.try_wait().unwrap();
        stop(rustix::process::Signal::CONT);
        assert!(
            early.is_none(),
            "{service}: the publisher left before the sample was taken"
        );
        let o = publisher.wait_with_output().unwrap();
        assert!(o.status.success(), "{service}: {}", stderr(&o));
        // The publisher lingered until the sample was taken: the
        // subscriber is done (a lost sample fails here, not by a hang).
        let mut sub = sub;
        for _ in 0..300 {
            if sub.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            sub.child.try_wait().unwrap().is_some(),
            "{service}: the subscriber got nothing"
        );
        let (status, out, err) = sub.finish();
        assert!(status.success(), "{service}: {err}");
        assert_eq!(out, "hello\n", "{service}");
    }
    let _ = Node::cleanup_with(&d.0, conduit::shm::Permissions::group(GID.parse().unwrap()));
}

#[test]
fn bench_smoke_writes_a_report_with_charts() {
    let dir = std::env::temp_dir().join(format!("conduit-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("out.html");
    let o = Command::new(CONDUIT)
        .args(["bench", "--smoke", "--json", "--report"])
        .arg(&html)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_lines(&o);
    for mechanism in [
        "conduit pubsub (busy)",
        "conduit reqres (busy)",
        "conduit reqres (blocking)",
    ] {
        assert!(
            rows.iter().any(|r| r["mechanism"] == mechanism),
            "{mechanism} missing: {rows:?}"
        );
    }
    assert!(rows.iter().any(|r| r["baseline"] == true));
    assert!(rows.iter().any(|r| r["kind"] == "throughput"));
    // One statistic for every latency row: conduit's rows carry both
    // processes' CPU, busy rows a separate batch mean, and only rows whose
    // payload is written and read a throughput.
    for r in rows.iter().filter(|r| r["kind"] == "latency") {
        let name = r["mechanism"].as_str().unwrap();
        if name.starts_with("conduit ") {
            assert!(r["cpu_ns_per_msg"].as_f64().is_some(), "{r}");
        }
        let busy = name.contains("(busy)") || name.starts_with("raw spin");
        assert_eq!(r["batch"].as_u64().is_some(), busy, "{r}");
        // Request/response writes and reads its payload busy or blocking.
        let touched = busy || name.starts_with("conduit reqres");
        assert_eq!(r["bytes_per_s"].as_f64().is_some(), touched, "{r}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.matches("<svg").count() >= 3, "charts missing");
    // The latency-vs-payload chart draws every latency row: one point
    // each, and each mechanism in its legend.
    let heading = page
        .find("<h2>Latency vs payload size</h2>")
        .expect("latency chart heading");
    let chart = &page[heading..heading + page[heading..].find("</svg>").expect("latency chart")];
    let latency: Vec<_> = rows
        .iter()
        .filter(|r| r["kind"] == "latency" && r["p50_ns"].as_f64().is_some_and(|v| v > 0.0))
        .collect();
    assert!(latency.len() >= 2, "{rows:?}");
    assert_eq!(chart.matches("<circle").count(), latency.len(), "{chart}");
    for r in &latency {
        let name = r["mechanism"].as_str().unwrap();
        assert!(
            chart.contains(name),
            "{name} missing from the latency chart"
        );
    }
    // No script and no external resource: the only URL is the SVG
    // namespace, and nothing is loaded.
    assert!(!page.contains("<script"), "the page has a script");
    let rest = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for loads in ["http://", "https://", "src=", "href=", "url(", "@import"] {
        assert!(!rest.contains(loads), "the page loads something: {loads}");
    }

    let o = Command::new(CONDUIT)
        .args(["bench", "--only", "no-such-scenario"])
        .output()
        .unwrap();
    assert_fails(&o, 2, "no scenario matches");
    // The error lists the names the table shows, and those names select.
    assert_fails(&o, 2, "conduit pubsub (busy), conduit pubsub (blocking)");
    let o = Command::new(CONDUIT)
        .args([
            "bench",
            "--smoke",
            "--json",
            "--only",
            "Conduit PubSub (busy)",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_lines(&o);
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["mechanism"] == "conduit pubsub (busy)"),
        "{rows:?}"
    );
    // The text table ends with the ratios the issues set targets for,
    // from rows of the same run.
    let o = Command::new(CONDUIT)
        .args(["bench", "--smoke", "--only", "busy"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("request/response round trip vs pub/sub one-way, busy, 8 B: "),
        "{text}"
    );
    assert!(
        text.contains("p50, p99 and mean are over per-round-trip samples"),
        "{text}"
    );
    let o = Command::new(CONDUIT)
        .args(["bench", "--smoke", "--peers", "/nonexistent/peers.json"])
        .output()
        .unwrap();
    assert_fails(&o, 2, "cannot read");
    let o = Command::new(CONDUIT)
        .args(["bench", "--smoke", "--report", "/nonexistent/dir/out.html"])
        .output()
        .unwrap();
    assert_fails(&o, 1, "cannot write /nonexistent/dir/out.html");
}

#[test]
fn bench_with_iceoryx2_runs_the_peer_binaries_of_peers_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("conduit-cli-peers-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Stand-ins for bench-peers' iceoryx2_event (a harness measurement
    // line) and iceoryx2_reqres (a row line, 8 B at 1 ms one-way): each
    // prints its name and the arguments it got on stderr, then its line.
    let peer = |name: &str, line: &str| {
        let script = dir.join(name);
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"{name}: $@\" >&2\necho '{line}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    peer(
        "iceoryx2_event",
        concat!(
            "{\"scenario\":\"iceoryx2_event\",\"payload\":0,\"mode\":\"header\",",
            "\"p50_ns\":1000.0,\"p99_ns\":2000.0,\"mean_ns\":1100.0,\"iterations\":10}"
        ),
    );
    peer(
        "iceoryx2_reqres",
        concat!(
            "{\"kind\":\"latency\",\"mechanism\":\"iceoryx2 reqres (busy)\",\"baseline\":false,",
            "\"payload\":8,\"p50_ns\":1000000.0,\"p99_ns\":2000000.0,\"msgs_per_s\":1000.0,",
            "\"bytes_per_s\":8000.0,\"cpu_ns_per_msg\":1000000.0,\"ratio\":null,\"target_met\":null}"
        ),
    );
    let run = |peers_dir: &std::path::Path, only: &str, json: bool| {
        Command::new(CONDUIT)
            .args(["bench", "--smoke", "--only", only, "--with-iceoryx2"])
            .args(json.then_some("--json"))
            .arg("--peers-dir")
            .arg(peers_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&dir, "raw futex", true);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_lines(&o);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "raw futex",
            "iceoryx2 event (header only)",
            "iceoryx2 reqres (busy)"
        ],
        "{names:?}"
    );
    assert!(
        stderr(&o).contains("iceoryx2_event: --json --quick"),
        "{}",
        stderr(&o)
    );
    // Measured in this run (the peers ran now): not marked ingested.
    assert!(rows.iter().all(|r| r.get("ingested").is_none()), "{rows:?}");
    // `--only reqres` runs conduit's request/response rows and only the
    // reqres peer, and the table ends with their ratio (conduit's round
    // trip is far below the stand-in's 2 ms: met).
    let o = run(&dir, "reqres", false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("iceoryx2_reqres: --json --quick"));
    assert!(!stderr(&o).contains("iceoryx2_event"), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("request/response round trip, busy, 8 B: conduit / iceoryx2 = "))
        .unwrap_or_else(|| panic!("no reqres ratio in {text}"));
    assert!(line.contains(" / 2000.0 us = "), "{line}");
    assert!(line.ends_with("x (target <= 0.4x, met)"), "{line}");
    // A directory without the binaries: what to build (every binary by
    // name), and --peers-dir.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&empty, "raw futex", true);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_fails(&o, 3, "--peers-dir");
    assert_fails(
        &o,
        3,
        "iceoryx2_pubsub, iceoryx2_event, iceoryx2_blackboard, iceoryx2_reqres",
    );
    assert!(stderr(&o).contains("cargo build --release --manifest-path crates/bench-peers"));
}

#[test]
fn bench_includes_peer_results_from_a_file() {
    let dir = std::env::temp_dir().join(format!("conduit-cli-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let peers = dir.join("peers.json");
    std::fs::write(
        &peers,
        concat!(
            "{\"scenario\":\"iceoryx2_pubsub\",\"payload\":8,\"mode\":\"payload\",\"p50_ns\":300.0,",
            "\"p99_ns\":400.0,\"mean_ns\":310.0,\"iterations\":1000}\n",
            "{\"scenario\":\"spin_line\",\"payload\":8,\"mode\":\"header\",\"p50_ns\":40.0,",
            "\"p99_ns\":50.0,\"mean_ns\":41.0,\"iterations\":1000}\n",
        ),
    )
    .unwrap();
    let o = Command::new(CONDUIT)
        .args([
            "bench",
            "--smoke",
            "--only",
            "raw futex",
            "--json",
            "--peers",
        ])
        .arg(&peers)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_lines(&o);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    // The peer's result joins the run; its floor duplicate (measured here) does not.
    assert_eq!(names, ["iceoryx2 pubsub", "raw futex"], "{names:?}");
    assert_eq!(rows[0]["p50_ns"], 300.0);
    // Another run's row is marked, and never one of this run's figures.
    assert_eq!(rows[0]["ingested"], true, "{rows:?}");
    assert!(rows[1].get("ingested").is_none(), "{rows:?}");
}

#[test]
fn list_follow_prints_services_appearing_and_disappearing() {
    let d = Domain::new();
    let node = d.node();
    let _before = node.service("existing").event().open_or_create().unwrap();
    let mut follow = Running::start(d.cmd(&["list", "services", "--follow", "--count", "3"]));
    let mut out = BufReader::new(follow.child.stdout.take().unwrap());
    // The listing first (the event service that existed), then a line per
    // change; each change is waited for before the next (a service that
    // comes and goes between two looks need not be reported).
    let mut next_change = || loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "stdout closed early");
        if line.starts_with("+ ") || line.starts_with("- ") {
            return line.trim_end().to_owned();
        }
        assert!(
            line.contains("existing") || !line.contains('/'),
            "a listing line: {line:?}"
        );
    };
    let topic = node
        .service("cam/frames")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    assert_eq!(next_change(), "+ publish/subscribe cam/frames");
    drop(topic); // the last user leaves: the service goes
    assert_eq!(next_change(), "- publish/subscribe cam/frames");
    let board = node
        .service("robot/state")
        .blackboard::<u32, u64>()
        .entry(1, 1)
        .create()
        .unwrap();
    assert_eq!(next_change(), "+ blackboard robot/state");
    let (status, _, err) = follow.finish();
    assert!(status.success(), "--count 3 ends it: {err}");

    let follow = Running::start(d.cmd(&["list", "services", "--follow", "--count", "1", "--json"]));
    drop(board);
    let (_, out, _) = follow.finish();
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "disappeared");
    assert_eq!(last["kind"], "blackboard");
    assert_eq!(last["name"], "robot/state");
    assert_fails(&d.run(&["list", "--count", "1"]), 2, "--follow");
}

#[test]
fn listen_prints_ids_notified_by_another_process() {
    let d = Domain::new();
    let node = d.node();
    let events = node.service("door").event().open_or_create().unwrap();
    let notifier = events.notifier().create().unwrap();
    let listen = Running::start(d.cmd(&["listen", "door", "--count", "2"]));
    notifier.notify(3).unwrap();
    notifier.notify(5).unwrap();
    let (status, out, err) = listen.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "3\n5\n");

    let listen = Running::start(d.cmd(&["listen", "door", "--count", "1", "--json"]));
    notifier.notify(9).unwrap();
    let (_, out, _) = listen.finish();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["event"], "door");
}

#[test]
fn notify_wakes_a_listener_in_another_process() {
    let d = Domain::new();
    let node = d.node();
    let events = node
        .service("bell")
        .event()
        .max_event_id(15)
        .open_or_create()
        .unwrap();
    let listener = events.listener().create().unwrap();
    let o = d.run(&["notify", "bell", "--id", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "notified id 7 to 1 listener(s)\n");
    let ids = listener.wait_timeout(Duration::from_secs(20));
    assert_eq!(ids.iter().collect::<Vec<_>>(), [7]);

    assert_fails(&d.run(&["notify", "bell", "--id", "16"]), 2, "exceeds");
    assert_fails(&d.run(&["notify", "nobody"]), 3, "does not exist");
    assert_fails(&d.run(&["listen", "nobody"]), 3, "does not exist");
    assert_fails(&d.run(&["notify", "bad name"]), 2, "invalid service name");
    assert_fails(&d.run(&["notify", "bell", "--id", "x"]), 2, "invalid value");
    // Event services are listed, described and shown by top.
    let v = json_lines(&d.run(&["list", "services", "--json"]));
    let bell = v.iter().find(|l| l["name"] == "bell").unwrap();
    assert_eq!(bell["kind"], "event_service");
    assert_eq!(bell["max_event_id"], 15);
    assert_eq!(bell["listeners"].as_array().unwrap().len(), 1);
    let o = d.run(&["info", "bell", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["max_event_id"], 15);
    let text = stdout(&d.run(&["info", "bell"]));
    assert!(
        text.contains("event service") && text.contains("0..=15"),
        "{text}"
    );
    let top = json_lines(&d.run(&["top", "--iterations", "1", "--json"]));
    assert!(
        top.iter()
            .any(|l| l["service"] == "bell" && l["payload"] == "event")
    );
    // An event service shows up among the segments.
    let segs = json_lines(&d.run(&["list", "segments", "--json"]));
    assert!(
        segs.iter().any(|s| s["type"] == "event service"),
        "{segs:?}"
    );
}

/// A reader that goes away (`conduit … | head -0`) ends the command
/// quietly with the SIGPIPE status 141, not a panic message.
#[test]
fn a_closed_stdout_ends_quietly() {
    let mut saw_epipe = false;
    for _ in 0..5 {
        let mut child = Command::new(CONDUIT)
            .args(["limits", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(stderr(&o), "", "{o:?}");
        match o.status.code() {
            Some(141) => saw_epipe = true,
            Some(0) => {} // It wrote everything before the pipe closed.
            other => panic!("exit {other:?}"),
        }
        if saw_epipe {
            break;
        }
    }
    assert!(saw_epipe, "never saw the closed pipe");
}

#[test]
fn limits_prints_text_and_json() {
    let o = Command::new(CONDUIT).arg("limits").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pipe capacity limit"));
    assert!(stdout(&o).contains("open files per process (RLIMIT_NOFILE)"));
    assert!(stdout(&o).contains("memory mappings per process (vm.max_map_count)"));
    let o = Command::new(CONDUIT)
        .args(["limits", "--json"])
        .output()
        .unwrap();
    let v = json_lines(&o);
    // Numbers, not strings with units: the unit is a field of its own.
    let scm = v
        .iter()
        .find(|l| l["limit"] == "descriptors per SCM_RIGHTS message (SCM_MAX_FD)")
        .unwrap();
    assert_eq!(scm["value"], 253);
    assert_eq!(scm["unit"], "count");
    let pipe = v
        .iter()
        .find(|l| l["limit"] == "pipe capacity limit (pipe-max-size)")
        .unwrap();
    assert!(pipe["value"].as_u64().is_some_and(|b| b >= 4096), "{pipe}");
    assert_eq!(pipe["unit"], "bytes");
    for l in &v {
        assert!(
            l["value"].is_u64() && (l["unit"] == "bytes" || l["unit"] == "count")
                || l["value"].is_null() && (l["unlimited"] == true || l["error"].is_string()),
            "{l}"
        );
    }
}

#[test]
fn group_option_joins_a_group_shared_service() {
    use std::os::unix::fs::MetadataExt;
    let d = Domain::new();
    // Our effective gid (the owner group of /proc/self).
    let gid = std::fs::metadata("/proc/self").unwrap().gid();
    let shared = conduit::shm::Permissions::group(gid);
    {
        let node = Node::builder()
            .name("test")
            .domain(&d.0)
            .permissions(shared)
            .create()
            .unwrap();
        let topic = node
            .service("grp")
            .publish_subscribe::<[u8]>()
            .open_or_create()
            .unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        // Without --share-group the CLI's private node is told how to share.
        let o = d.run(&["pub", "grp", "x"]);
        assert_fails(&o, 5, "--share-group GID");
        let child = d
            .cmd(&["--share-group", &gid.to_string(), "pub", "grp", "hello"])
            .spawn()
            .unwrap();
        let got = subscriber
            .receive_timeout(Duration::from_secs(20))
            .unwrap()
            .to_vec();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(got, b"hello");
    }
    let _ = Node::cleanup_with(&d.0, shared);
}
