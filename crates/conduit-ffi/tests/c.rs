//! The C API from C: the C test (`tests/c/api.c`) and the examples
//! (`examples/*.c`) are compiled with the system `cc` against the static
//! and the shared library that `cargo test` built next to this test, and
//! run as processes: the C API checks, a C publisher with a Rust
//! subscriber (this process), and a Rust publisher with a C subscriber
//! that waits with `poll(2)`.
//!
//! Each test uses its own domain and checks that nothing of it is left
//! in `/dev/shm`. Set `CC` to use another compiler.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use conduit::node::Node;

/// Where cargo put `libconduit_ffi.{a,so}`: the newest copy in the
/// target profile directory (this test is in its `deps/`) or in `deps/`.
fn library(file: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let profile = deps.parent().expect("profile dir");
    [profile.join(file), deps.join(file)]
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("{file} not found next to {}", exe.display()))
}

/// Compiles `source` (relative to this crate) into `out_name` in the
/// test's scratch directory, linked statically or against the shared
/// library, once per test run.
fn compile(source: &str, out_name: &str, shared: bool) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conduit-ffi-c");
    std::fs::create_dir_all(&out_dir).expect("create scratch dir");
    let out = out_dir.join(out_name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra"])
        .args(["-Werror", "-g", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join(source))
        .arg("-o")
        .arg(&out);
    if shared {
        let so = library("libconduit_ffi.so");
        let lib_dir = so.parent().expect("lib dir");
        cmd.arg(format!("-L{}", lib_dir.display()))
            .arg("-lconduit_ffi")
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    } else {
        cmd.arg(library("libconduit_ffi.a"));
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let result = cmd.output().unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        result.status.success(),
        "{cc} failed on {source}:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn api_test() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("tests/c/api.c", "api", false))
}

fn c_publisher() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("examples/publisher.c", "publisher", false))
}

fn c_subscriber() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("examples/subscriber.c", "subscriber", true))
}

fn c_typed() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("tests/c/typed.c", "typed", false))
}

fn c_reqres() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("tests/c/reqres.c", "reqres", false))
}

/// A domain of this test alone.
fn unique_domain(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ffi-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let prefix = format!("conduit.{domain}.");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the child's stdout lines (to the end) on a thread.
fn collect_lines(child: &mut Child) -> std::thread::JoinHandle<Vec<String>> {
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    })
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn c_api_null_and_invalid_handles_round_trip_and_events() {
    let domain = unique_domain("api");
    let mut child = Command::new(api_test())
        .arg(&domain)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C test");
    let lines = collect_lines(&mut child);
    let status = wait_with_limit(&mut child, LIMIT);
    let lines = lines.join().unwrap();
    assert!(status.success(), "C test failed ({status}): {lines:?}");
    assert!(
        lines.iter().any(|l| l.ends_with(" passed, 0 failed")),
        "{lines:?}"
    );
    assert_clean(&domain);
}

#[test]
fn c_publisher_rust_subscriber() {
    let domain = unique_domain("c2rust");
    let node = Node::builder()
        .name("rust-subscriber")
        .domain(&domain)
        .create()
        .unwrap();
    let service = node
        .service("c-to-rust")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let subscriber = service.subscriber().create().unwrap();
    let done = node
        .service("c-to-rust.done")
        .event()
        .open_or_create()
        .unwrap();
    let notifier = done.notifier().create().unwrap();

    let mut child = Command::new(c_publisher())
        .args([domain.as_str(), "c-to-rust", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C publisher");
    let lines = collect_lines(&mut child);
    for i in 1..=3u64 {
        let sample = subscriber
            .receive_timeout(Duration::from_secs(10))
            .expect("a sample from the C publisher");
        let text: Vec<u8> = sample.iter().copied().take_while(|&b| b != 0).collect();
        assert_eq!(sample.len(), 32, "the C publisher loans 32 bytes");
        assert_eq!(String::from_utf8(text).unwrap(), format!("sample {i}"));
        assert_eq!(sample.sequence(), i);
    }
    notifier.notify(1usize).unwrap();
    let status = wait_with_limit(&mut child, LIMIT);
    let lines = lines.join().unwrap();
    assert!(status.success(), "C publisher failed ({status}): {lines:?}");
    assert!(
        lines.contains(&"sent sample 1 to 1 subscriber(s)".to_owned()),
        "{lines:?}"
    );
    drop((notifier, done, subscriber, service, node));
    assert_clean(&domain);
}

#[test]
fn rust_publisher_c_subscriber_with_poll() {
    let domain = unique_domain("rust2c");
    let node = Node::builder()
        .name("rust-publisher")
        .domain(&domain)
        .create()
        .unwrap();
    let service = node
        .service("rust-to-c")
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .unwrap();
    let done = node
        .service("rust-to-c.done")
        .event()
        .open_or_create()
        .unwrap();
    let listener = done.listener().create().unwrap();

    let mut child = Command::new(c_subscriber())
        .args([domain.as_str(), "rust-to-c", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C subscriber");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "the C subscriber's first line");

    let publisher = service.publisher().create().unwrap();
    for i in 1..=3 {
        let reached = publisher
            .send_slice_copy(format!("rust {i}").as_bytes())
            .unwrap();
        assert_eq!(reached, 1);
    }
    let ids = listener.wait_timeout(Duration::from_secs(10));
    assert!(ids.contains(1usize), "the C subscriber reports done");
    let status = wait_with_limit(&mut child, LIMIT);
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    assert!(
        status.success(),
        "C subscriber failed ({status}): {lines:?}"
    );
    assert_eq!(
        lines,
        [
            "received 1 rust 1",
            "received 2 rust 2",
            "received 3 rust 3"
        ]
    );
    drop((publisher, listener, done, service, node));
    assert_clean(&domain);
}

#[test]
fn c_server_answers_a_rust_client_with_streams() {
    let domain = unique_domain("cserver");
    let mut child = Command::new(c_reqres())
        .args(["server", domain.as_str(), "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C server");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let node = Node::builder()
        .name("rust-client")
        .domain(&domain)
        .create()
        .unwrap();
    let service = node
        .service("c/upper")
        .request_response::<[u8], [u8]>()
        .open_or_create()
        .unwrap();
    let client = service.client().create().unwrap();
    let start = Instant::now();
    while client.servers() == 0 && start.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    for word in ["abc", "hello world"] {
        let pending = client.send_slice_copy(word.as_bytes()).unwrap();
        let mut got = Vec::new();
        loop {
            match pending.receive_timeout(Duration::from_secs(10)) {
                Ok(r) => got.push(String::from_utf8(r.to_vec()).unwrap()),
                Err(conduit::reqres::ResponseError::EndOfStream) => break,
                Err(e) => panic!("{word}: {e}"),
            }
        }
        assert_eq!(got, [word.to_uppercase(), word.len().to_string()]);
    }
    // The third request wants no response: the C server's respond gets
    // DISCONNECTED, which it checks.
    client
        .loan_slice_uninit(5)
        .unwrap()
        .write_from_slice(b"quiet")
        .send_no_response()
        .unwrap();
    let status = wait_with_limit(&mut child, LIMIT);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "C server failed ({status}): {rest}");
    assert_eq!(rest.trim(), "served 3");
    drop((client, service, node));
    assert_clean(&domain);
}

#[test]
fn c_client_gets_the_streamed_responses_of_a_rust_server() {
    let domain = unique_domain("cclient");
    let node = Node::builder()
        .name("rust-server")
        .domain(&domain)
        .create()
        .unwrap();
    let service = node
        .service("c/upper")
        .request_response::<[u8], [u8]>()
        .open_or_create()
        .unwrap();
    let server = service.server().create().unwrap();
    let mut child = Command::new(c_reqres())
        .args(["client", domain.as_str()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C client");
    let lines = collect_lines(&mut child);
    // "fire" (no response wanted), then "hello" (answered).
    for _ in 0..2 {
        let request = server.receive_timeout(LIMIT).expect("a request from C");
        if request.wants_response() {
            request
                .send_slice_copy(&request.to_ascii_uppercase())
                .unwrap();
            request
                .send_slice_copy(request.len().to_string().as_bytes())
                .unwrap();
        } else {
            assert_eq!(&*request, b"fire");
        }
    }
    let status = wait_with_limit(&mut child, LIMIT);
    let lines = lines.join().unwrap();
    assert!(status.success(), "C client failed ({status}): {lines:?}");
    assert_eq!(lines, ["client ok"]);
    drop((server, service, node));
    assert_clean(&domain);
}

/// The Rust type that `struct pose` of `tests/c/typed.c` meets.
#[derive(conduit::ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    seq: u64,
}

/// Runs `tests/c/typed.c` with `args`, stdin and stdout piped.
fn spawn_typed(args: &[&str]) -> Child {
    Command::new(c_typed())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C typed test")
}

/// The next line the child prints.
fn next_line(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    lines.next().expect("a line from the child").expect("read")
}

#[test]
fn c_struct_meets_a_rust_type_both_ways() {
    // The C side's constant is the Rust type's fingerprint.
    let out = Command::new(c_typed()).arg("fingerprint").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("{:016x}", <Pose as conduit::ShmSafe>::LAYOUT.fingerprint),
        "POSE_FINGERPRINT in tests/c/typed.c is not Pose::LAYOUT.fingerprint"
    );
    let domain = unique_domain("typed");
    let node = Node::builder()
        .name("rust-typed")
        .domain(&domain)
        .create()
        .unwrap();

    // A C publisher, a Rust typed subscriber.
    let c_to_rust = node
        .service("pose/c-to-rust")
        .publish_subscribe::<Pose>()
        .subscriber_buffer(8)
        .open_or_create()
        .unwrap();
    let subscriber = c_to_rust.subscriber().create().unwrap();
    let mut child = spawn_typed(&["pub", &domain, "pose/c-to-rust", "5"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines), "sent");
    for i in 1..=6u64 {
        let sample = subscriber.receive_timeout(Duration::from_secs(10)).unwrap();
        let expected = Pose {
            x: i as f64,
            y: -(i as f64),
            seq: i,
        };
        assert_eq!(*sample, expected);
    }
    drop(child.stdin.take());
    let status = wait_with_limit(&mut child, LIMIT);
    assert!(status.success(), "C publisher failed ({status})");

    // A Rust typed publisher, a C subscriber.
    let rust_to_c = node
        .service("pose/rust-to-c")
        .publish_subscribe::<Pose>()
        .subscriber_buffer(8)
        .open_or_create()
        .unwrap();
    let publisher = rust_to_c.publisher().create().unwrap();
    let mut child = spawn_typed(&["sub", &domain, "pose/rust-to-c", "5"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines), "ready");
    for i in 1..=5u64 {
        let pose = Pose {
            x: i as f64,
            y: -(i as f64),
            seq: i,
        };
        assert_eq!(publisher.send_copy(pose).unwrap(), 1);
    }
    assert_eq!(next_line(&mut lines), "received 5");
    let status = wait_with_limit(&mut child, LIMIT);
    assert!(status.success(), "C subscriber failed ({status})");
    drop((publisher, subscriber, c_to_rust, rust_to_c, node));
    assert_clean(&domain);
}

#[test]
fn c_type_mismatches_are_refused() {
    let domain = unique_domain("mismatch");
    let node = Node::builder()
        .name("rust-typed")
        .domain(&domain)
        .create()
        .unwrap();
    let service = node
        .service("pose")
        .publish_subscribe::<Pose>()
        .open_or_create()
        .unwrap();
    let u64_fingerprint = format!("{:x}", <u64 as conduit::ShmSafe>::LAYOUT.fingerprint);
    let mut child = spawn_typed(&["mismatch", &domain, "pose", &u64_fingerprint]);
    let lines = collect_lines(&mut child);
    drop(child.stdin.take());
    let status = wait_with_limit(&mut child, LIMIT);
    let lines = lines.join().unwrap();
    assert!(status.success(), "C test failed ({status}): {lines:?}");
    assert_eq!(lines, ["mismatches refused"]);
    drop((service, node));
    assert_clean(&domain);
}
