//! The bridge: its builder, its thread and the forwarding loop.
//!
//! One thread owns every conduit object (ports are not `Send`); Zenoh's
//! callbacks only push messages into a channel and wake that thread
//! through a [`WakeUp`]. Each turn of the loop attaches the domain watch,
//! the wake-up, the forwarding subscribers and listeners to a fresh
//! [`WaitSet`], waits, then drains all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conduit::event::{EventService, Listener, Notifier};
use conduit::node::Node;
use conduit::pubsub::{Publisher, RawPayload, Subscriber};
use conduit::waitset::{WaitSet, WakeUp};
use zenoh::Wait;

use crate::BridgeError;
use crate::wire::{
    ANNOUNCEMENT_VERSION, Announcement, EventMessage, QosAnnouncement, SampleMessage,
    ServiceAnnouncement, TypeAnnouncement,
};

/// Where a running bridge reports what goes wrong while it runs (refused
/// services, malformed messages, ports it cannot open) and what it
/// starts forwarding. The default writes `conduit-bridge: …` lines to
/// standard error.
pub type Log = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// How important a [`Log`] line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something was refused or failed; the message is a [`BridgeError`].
    Error,
    /// What the bridge does (forwarding starts or stops).
    Info,
}

/// Configures a [`Bridge`]; made by [`Bridge::builder`].
pub struct BridgeBuilder {
    domain: Option<String>,
    key_prefix: Option<String>,
    zenoh: Option<zenoh::Config>,
    listen: Vec<String>,
    connect: Vec<String>,
    multicast_scouting: Option<bool>,
    announce_period: Duration,
    log: Log,
}

impl std::fmt::Debug for BridgeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("domain", &self.domain)
            .field("key_prefix", &self.key_prefix)
            .field("listen", &self.listen)
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

/// A running bridge: its thread forwards until [`stop`](Bridge::stop) or
/// drop.
#[derive(Debug)]
pub struct Bridge {
    id: u64,
    stop: Arc<AtomicBool>,
    wake: Arc<WakeUp>,
    thread: Option<JoinHandle<Result<(), BridgeError>>>,
}

impl Bridge {
    /// Starts configuring a bridge.
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder {
            domain: None,
            key_prefix: None,
            zenoh: None,
            listen: Vec::new(),
            connect: Vec::new(),
            multicast_scouting: None,
            announce_period: Duration::from_secs(1),
            log: Arc::new(|level, line| match level {
                LogLevel::Error => eprintln!("conduit-bridge: error: {line}"),
                LogLevel::Info => eprintln!("conduit-bridge: {line}"),
            }),
        }
    }

    /// This bridge's id, as in its announcements and envelopes.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the bridge's thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the bridge: its local ports are closed, its Zenoh session
    /// too. Returns the error that ended the thread early, if one did.
    pub fn stop(mut self) -> Result<(), BridgeError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), BridgeError> {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.wake();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| BridgeError::Thread("panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

impl BridgeBuilder {
    /// The conduit domain to bridge (default: conduit's default domain,
    /// `CONDUIT_DOMAIN` or `default`).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// The Zenoh key prefix the bridges of one system share (default
    /// `conduit/<domain>`): bridges meet by prefix, so two hosts whose
    /// conduit domains have different names can still be bridged.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = Some(prefix.trim_end_matches('/').to_owned());
        self
    }

    /// The Zenoh configuration (endpoints, TLS, access control), passed
    /// through; default: Zenoh's default configuration (peer mode).
    pub fn zenoh_config(mut self, config: zenoh::Config) -> Self {
        self.zenoh = Some(config);
        self
    }

    /// Adds a Zenoh endpoint to listen on (`tcp/127.0.0.1:7447`).
    pub fn listen(mut self, endpoint: &str) -> Self {
        self.listen.push(endpoint.to_owned());
        self
    }

    /// Adds a Zenoh endpoint to connect to.
    pub fn connect(mut self, endpoint: &str) -> Self {
        self.connect.push(endpoint.to_owned());
        self
    }

    /// Turns Zenoh's multicast scouting on or off (off for tests and
    /// networks where only the given endpoints may be used).
    pub fn multicast_scouting(mut self, on: bool) -> Self {
        self.multicast_scouting = Some(on);
        self
    }

    /// How often the bridge announces its services and looks for changes
    /// in ports (default 1 s); a remote bridge silent for three periods is
    /// taken as gone.
    pub fn announce_period(mut self, period: Duration) -> Self {
        self.announce_period = period.max(Duration::from_millis(10));
        self
    }

    /// Where the running bridge reports (default: standard error).
    pub fn log(mut self, log: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Self {
        self.log = Arc::new(log);
        self
    }

    /// Opens the Zenoh session and starts the bridge's thread.
    pub fn start(self) -> Result<Bridge, BridgeError> {
        let domain = match &self.domain {
            Some(d) => conduit::Domain::new(d),
            None => conduit::Domain::from_env(),
        }
        .map_err(|e| BridgeError::Conduit(e.to_string()))?;
        let prefix = self
            .key_prefix
            .clone()
            .unwrap_or_else(|| format!("conduit/{}", domain.name()));
        zenoh::key_expr::KeyExpr::try_from(format!("{prefix}/announce/x"))
            .map_err(|e| BridgeError::Zenoh(format!("key prefix {prefix:?}: {e}")))?;
        let mut config = self.zenoh.unwrap_or_default();
        let zerr = |e: Box<dyn std::error::Error + Send + Sync>| BridgeError::Zenoh(e.to_string());
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        if !self.listen.is_empty() {
            config
                .insert_json5("listen/endpoints", &json(&self.listen))
                .map_err(zerr)?;
        }
        if !self.connect.is_empty() {
            config
                .insert_json5("connect/endpoints", &json(&self.connect))
                .map_err(zerr)?;
        }
        if let Some(on) = self.multicast_scouting {
            config
                .insert_json5(
                    "scouting/multicast/enabled",
                    if on { "true" } else { "false" },
                )
                .map_err(zerr)?;
        }
        let session = zenoh::open(config).wait().map_err(zerr)?;
        let node = Node::builder()
            .name("conduit-bridge")
            .domain(domain.name())
            .create()
            .map_err(|e| BridgeError::Conduit(e.to_string()))?;
        let watch = domain
            .watch()
            .map_err(|e| BridgeError::Conduit(format!("watching the domain: {e}")))?;
        let wake = Arc::new(WakeUp::new().map_err(|e| BridgeError::Conduit(e.to_string()))?);
        let id = bridge_id();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        // One subscriber for everything under the prefix, declared before
        // the loop starts: remote samples need no per-service declaration
        // to propagate first.
        let sub_wake = wake.clone();
        let subscriber = session
            .declare_subscriber(format!("{prefix}/**"))
            .callback(move |sample: zenoh::sample::Sample| {
                let key = sample.key_expr().as_str().to_owned();
                let bytes = sample.payload().to_bytes().into_owned();
                if tx.send((key, bytes)).is_ok() {
                    let _ = sub_wake.wake();
                }
            })
            .wait()
            .map_err(zerr)?;
        let mut state = State {
            id,
            node,
            domain: domain.clone(),
            prefix,
            session,
            log: self.log,
            period: self.announce_period,
            local_pubsub: BTreeMap::new(),
            local_events: BTreeMap::new(),
            forward_pubsub: BTreeMap::new(),
            forward_events: BTreeMap::new(),
            remotes: BTreeMap::new(),
            refused: BTreeSet::new(),
            failed: BTreeMap::new(),
            announced: None,
        };
        let thread_stop = stop.clone();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name(format!("conduit-bridge-{id:x}"))
            .spawn(move || {
                let result = state.run(&watch, &thread_wake, &rx, &thread_stop);
                drop(subscriber);
                let _ = state.session.close().wait();
                result
            })
            .map_err(|e| BridgeError::Thread(e.to_string()))?;
        Ok(Bridge {
            id,
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

/// How long a forwarding port that could not be opened is left alone
/// before the bridge tries again (and logs again if it fails).
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// A random id for this bridge process (std's hasher keys are random per
/// process; the pid and the time make two bridges of one process differ).
fn bridge_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() | 1
}

/// A local publish/subscribe service the bridge forwards out.
struct LocalPubSub {
    subscriber: Subscriber<RawPayload>,
}

/// A local event service the bridge forwards out.
struct LocalEvent {
    listener: Listener,
}

/// A local publisher republishing a remote service's samples.
struct ForwardPubSub {
    publisher: Publisher<RawPayload>,
    /// Remote bridges that announce publishers of it.
    sources: BTreeSet<u64>,
}

/// A local notifier republishing a remote event service's ids.
struct ForwardEvent {
    _service: EventService,
    notifier: Notifier,
    sources: BTreeSet<u64>,
    /// Ids this notifier sent that the bridge's own listener has not seen
    /// yet: they are not sent back out (the echo rule for events).
    echo: BTreeSet<usize>,
}

/// What the bridge knows of a remote bridge.
struct Remote {
    last_seen: Instant,
    services: BTreeMap<String, ServiceAnnouncement>,
}

/// A local publish/subscribe service's type, as compared across hosts.
#[derive(PartialEq, Eq)]
struct PubSubType {
    slice: bool,
    payload: TypeAnnouncement,
    header: TypeAnnouncement,
}

impl std::fmt::Display for PubSubType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "payload {}{} with header {}",
            if self.slice { "slice of " } else { "" },
            self.payload,
            self.header
        )
    }
}

struct State {
    id: u64,
    node: Node,
    domain: conduit::Domain,
    prefix: String,
    session: zenoh::Session,
    log: Log,
    period: Duration,
    local_pubsub: BTreeMap<String, LocalPubSub>,
    local_events: BTreeMap<String, LocalEvent>,
    forward_pubsub: BTreeMap<String, ForwardPubSub>,
    forward_events: BTreeMap<String, ForwardEvent>,
    remotes: BTreeMap<u64, Remote>,
    /// (remote bridge, service) pairs refused for their type.
    refused: BTreeSet<(u64, String)>,
    /// Forwarding ports that could not be opened, by key, and when: not
    /// tried again before [`RETRY_AFTER`].
    failed: BTreeMap<String, Instant>,
    /// The last announcement sent (to send a changed one at once).
    announced: Option<Vec<ServiceAnnouncement>>,
}

impl State {
    fn error(&self, e: &BridgeError) {
        (self.log)(LogLevel::Error, &e.to_string());
    }

    fn info(&self, line: &str) {
        (self.log)(LogLevel::Info, line);
    }

    fn run(
        &mut self,
        watch: &conduit::discovery::ServiceWatch,
        wake: &WakeUp,
        rx: &mpsc::Receiver<(String, Vec<u8>)>,
        stop: &AtomicBool,
    ) -> Result<(), BridgeError> {
        let mut next_tick = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let now = Instant::now();
            // Every period: forget silent bridges, look at the ports again
            // and announce (the announcement is also the liveness signal).
            let tick = now >= next_tick;
            if tick {
                next_tick = now + self.period;
                self.expire_remotes(now);
            }
            let changed = watch.try_events().is_ok_and(|events| !events.is_empty());
            if tick || changed {
                self.refresh_local();
                self.announce(tick);
            }
            let more = self.drain_local();
            while let Ok((key, bytes)) = rx.try_recv() {
                self.incoming(&key, &bytes);
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            if !more {
                let timeout = next_tick.saturating_duration_since(Instant::now());
                self.wait(watch, wake, timeout);
            }
        }
        Ok(())
    }

    /// Blocks until a local port, the watch or Zenoh has something, or
    /// `timeout`.
    fn wait(&self, watch: &conduit::discovery::ServiceWatch, wake: &WakeUp, timeout: Duration) {
        let Ok(set) = WaitSet::new() else {
            std::thread::sleep(Duration::from_millis(1));
            return;
        };
        let mut ok = set.attach(watch).map(|g| g.keep()).is_ok();
        ok &= set.attach(wake).map(|g| g.keep()).is_ok();
        for local in self.local_pubsub.values() {
            ok &= set.attach(&local.subscriber).map(|g| g.keep()).is_ok();
        }
        for local in self.local_events.values() {
            ok &= set.attach(&local.listener).map(|g| g.keep()).is_ok();
        }
        if !ok {
            // Out of descriptors: fall back to a short sleep, still correct.
            std::thread::sleep(Duration::from_millis(1));
            return;
        }
        let _ = set.wait_timeout(timeout);
    }

    fn pubsub_key(&self, name: &str) -> String {
        format!("{}/pubsub/{name}", self.prefix)
    }

    fn event_key(&self, name: &str) -> String {
        format!("{}/event/{name}", self.prefix)
    }

    fn valid_key(&self, name: &str) -> bool {
        !name.starts_with('/') && !name.ends_with('/') && !name.contains("//")
    }

    /// Lists the domain's services: opens forwarding subscribers and
    /// listeners on services with publishers (notifiers) other than the
    /// bridge's, closes those whose have none left.
    fn refresh_local(&mut self) {
        let Ok(services) = conduit::pubsub::list(&self.domain) else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for s in &services {
            let own = usize::from(self.forward_pubsub.contains_key(&s.name));
            if s.publishers > own && self.valid_key(&s.name) {
                wanted.insert(s.name.clone());
            }
        }
        let names: BTreeSet<String> = services.iter().map(|s| s.name.clone()).collect();
        let now = Instant::now();
        // Keys with a `:` are the other ports' (service names have none);
        // a local subscriber's failure is also forgotten with its service.
        self.failed.retain(|key, at| {
            now.duration_since(*at) < RETRY_AFTER && (key.contains(':') || names.contains(key))
        });
        self.local_pubsub.retain(|name, _| wanted.contains(name));
        for s in &services {
            if !wanted.contains(&s.name)
                || self.local_pubsub.contains_key(&s.name)
                || self.failed.contains_key(&s.name)
            {
                continue;
            }
            match self.open_subscriber(s) {
                Ok(subscriber) => {
                    self.info(&format!("forwarding local service {:?} out", s.name));
                    self.local_pubsub
                        .insert(s.name.clone(), LocalPubSub { subscriber });
                }
                Err(e) => {
                    self.error(&e);
                    self.failed.insert(s.name.clone(), Instant::now());
                }
            }
        }

        let Ok(events) = conduit::event::list(&self.domain) else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for e in &events {
            let own = usize::from(self.forward_events.contains_key(&e.name));
            if e.notifiers > own && self.valid_key(&e.name) {
                wanted.insert(e.name.clone());
            }
        }
        self.local_events.retain(|name, _| wanted.contains(name));
        for e in &events {
            if !wanted.contains(&e.name) || self.local_events.contains_key(&e.name) {
                continue;
            }
            let key = format!("event:{}", e.name);
            if self.failed.contains_key(&key) {
                continue;
            }
            let opened = self
                .node
                .service(&e.name)
                .event()
                .open()
                .map_err(|err| err.to_string())
                .and_then(|svc| svc.listener().create().map_err(|err| err.to_string()));
            match opened {
                Ok(listener) => {
                    let _ = listener.wake_fd();
                    self.info(&format!("forwarding local event service {:?} out", e.name));
                    self.local_events
                        .insert(e.name.clone(), LocalEvent { listener });
                }
                Err(reason) => {
                    self.error(&BridgeError::Port {
                        service: e.name.clone(),
                        reason,
                    });
                    self.failed.insert(key, Instant::now());
                }
            }
        }
    }

    fn open_subscriber(
        &self,
        s: &conduit::pubsub::ServiceInfo,
    ) -> Result<Subscriber<RawPayload>, BridgeError> {
        let port = |reason: String| BridgeError::Port {
            service: s.name.clone(),
            reason,
        };
        let payload = TypeAnnouncement::from(&s.payload)
            .raw_type()
            .map_err(port)?;
        let header = TypeAnnouncement::from(&s.header).raw_type().map_err(port)?;
        let builder = self.node.service(&s.name);
        let builder = if s.kind == "slice" {
            builder.publish_subscribe_raw_slice(payload)
        } else {
            builder.publish_subscribe_raw(payload)
        };
        let service = builder
            .user_header_raw(header)
            .open()
            .map_err(|e| port(e.to_string()))?;
        let subscriber = service
            .subscriber()
            .create()
            .map_err(|e| port(e.to_string()))?;
        subscriber.wake_fd().map_err(|e| port(e.to_string()))?;
        Ok(subscriber)
    }

    /// The local services, as announced.
    fn local_announcement(&self) -> Vec<ServiceAnnouncement> {
        let mut out = Vec::new();
        if let Ok(services) = conduit::pubsub::list(&self.domain) {
            for s in services {
                let own = usize::from(self.forward_pubsub.contains_key(&s.name));
                out.push(ServiceAnnouncement::PublishSubscribe {
                    publishers: s.publishers.saturating_sub(own),
                    slice: s.kind == "slice",
                    payload: TypeAnnouncement::from(&s.payload),
                    header: TypeAnnouncement::from(&s.header),
                    qos: QosAnnouncement::from(s.qos),
                    name: s.name,
                });
            }
        }
        if let Ok(events) = conduit::event::list(&self.domain) {
            for e in events {
                let own = usize::from(self.forward_events.contains_key(&e.name));
                out.push(ServiceAnnouncement::Event {
                    notifiers: e.notifiers.saturating_sub(own),
                    max_event_id: e.max_event_id.value(),
                    name: e.name,
                });
            }
        }
        out
    }

    /// Announces the local services: always when `force`, otherwise only
    /// if they changed since the last announcement.
    fn announce(&mut self, force: bool) {
        let services = self.local_announcement();
        if !force && self.announced.as_ref() == Some(&services) {
            return;
        }
        let message = Announcement {
            version: ANNOUNCEMENT_VERSION,
            bridge: self.id,
            domain: self.domain.name().to_owned(),
            services: services.clone(),
        };
        let key = format!("{}/announce/{:x}", self.prefix, self.id);
        if let Err(e) = self.session.put(key, message.encode()).wait() {
            self.error(&BridgeError::Zenoh(e.to_string()));
        }
        self.announced = Some(services);
    }

    /// Sends out what the local forwarding ports received; `true` if a
    /// subscriber may hold more.
    fn drain_local(&mut self) -> bool {
        let mut more = false;
        let names: Vec<String> = self.local_pubsub.keys().cloned().collect();
        for name in names {
            more |= self.drain_pubsub(&name);
        }
        let names: Vec<String> = self.local_events.keys().cloned().collect();
        for name in names {
            let ids = self.local_events[&name].listener.try_wait();
            if ids.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            for id in ids.iter() {
                let echo = self
                    .forward_events
                    .get_mut(&name)
                    .is_some_and(|f| f.echo.remove(&id.value()));
                if !echo {
                    out.push(id.value());
                }
            }
            if out.is_empty() {
                continue;
            }
            let message = EventMessage {
                bridge: self.id,
                ids: out,
            }
            .encode();
            if let Err(e) = self.session.put(self.event_key(&name), message).wait() {
                self.error(&BridgeError::Zenoh(e.to_string()));
            }
        }
        more
    }

    /// Sends out the samples the forwarding subscriber of `name` holds
    /// (a bounded batch, so one busy service cannot starve the others).
    fn drain_pubsub(&self, name: &str) -> bool {
        let Some(local) = self.local_pubsub.get(name) else {
            return false;
        };
        let own = self.forward_pubsub.get(name).map(|f| f.publisher.id());
        let key = self.pubsub_key(name);
        for _ in 0..1024 {
            let sample = match local.subscriber.try_receive() {
                Ok(Some(sample)) => sample,
                Ok(None) => return false,
                Err(e) => {
                    self.error(&BridgeError::Port {
                        service: name.to_owned(),
                        reason: e.to_string(),
                    });
                    return false;
                }
            };
            // The loop rule: never send out what our own publisher
            // republished here.
            if Some(sample.publisher_id()) == own {
                continue;
            }
            let message = SampleMessage {
                bridge: self.id,
                sequence: sample.sequence(),
                header: sample.header_bytes(),
                payload: &sample,
            }
            .encode();
            drop(sample);
            if let Err(e) = self.session.put(key.as_str(), message).wait() {
                self.error(&BridgeError::Zenoh(e.to_string()));
            }
        }
        // The batch is full: its descriptor is not re-armed until
        // `try_receive` returns `None`, so the loop must not sleep.
        true
    }

    /// A Zenoh message under the prefix.
    fn incoming(&mut self, key: &str, bytes: &[u8]) {
        let Some(rest) = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|k| k.strip_prefix('/'))
        else {
            return;
        };
        if let Some(_bridge) = rest.strip_prefix("announce/") {
            match Announcement::decode(bytes) {
                Ok(a) if a.bridge == self.id => {}
                Ok(a) => self.remote_announcement(a),
                Err(e) => self.error(&e),
            }
        } else if let Some(name) = rest.strip_prefix("pubsub/") {
            match SampleMessage::decode(bytes) {
                Ok(m) if m.bridge == self.id => {}
                Ok(m) => self.remote_sample(name, &m),
                Err(e) => self.error(&e),
            }
        } else if let Some(name) = rest.strip_prefix("event/") {
            match EventMessage::decode(bytes) {
                Ok(m) if m.bridge == self.id => {}
                Ok(m) => self.remote_event(name, &m),
                Err(e) => self.error(&e),
            }
        }
    }

    fn remote_announcement(&mut self, a: Announcement) {
        let services: BTreeMap<String, ServiceAnnouncement> = a
            .services
            .into_iter()
            .map(|s| (s.name().to_owned(), s))
            .collect();
        let local: BTreeMap<String, PubSubType> = conduit::pubsub::list(&self.domain)
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    PubSubType {
                        slice: s.kind == "slice",
                        payload: TypeAnnouncement::from(&s.payload),
                        header: TypeAnnouncement::from(&s.header),
                    },
                )
            })
            .collect();
        for s in services.values() {
            match s {
                ServiceAnnouncement::PublishSubscribe {
                    name,
                    slice,
                    payload,
                    header,
                    qos,
                    publishers,
                } => {
                    let remote = PubSubType {
                        slice: *slice,
                        payload: payload.clone(),
                        header: header.clone(),
                    };
                    if let Some(here) = local.get(name)
                        && *here != remote
                    {
                        if self.refused.insert((a.bridge, name.clone())) {
                            self.error(&BridgeError::TypeMismatch {
                                service: name.clone(),
                                remote_bridge: a.bridge,
                                remote: remote.to_string(),
                                local: here.to_string(),
                            });
                        }
                        self.drop_pubsub_source(name, a.bridge);
                        continue;
                    }
                    if self.refused.contains(&(a.bridge, name.clone())) {
                        continue;
                    }
                    if *publishers > 0 && self.valid_key(name) {
                        self.add_pubsub_source(name, &remote, qos, a.bridge);
                    } else {
                        self.drop_pubsub_source(name, a.bridge);
                    }
                }
                ServiceAnnouncement::Event {
                    name,
                    max_event_id,
                    notifiers,
                } => {
                    if *notifiers > 0 && self.valid_key(name) {
                        self.add_event_source(name, *max_event_id, a.bridge);
                    } else {
                        self.drop_event_source(name, a.bridge);
                    }
                }
            }
        }
        // Services the remote no longer announces.
        let gone: Vec<String> = self
            .forward_pubsub
            .iter()
            .filter(|(n, f)| f.sources.contains(&a.bridge) && !services.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.drop_pubsub_source(&name, a.bridge);
        }
        let gone: Vec<String> = self
            .forward_events
            .iter()
            .filter(|(n, f)| f.sources.contains(&a.bridge) && !services.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.drop_event_source(&name, a.bridge);
        }
        // Refusals are forgotten when the remote stops announcing the
        // service (a new one of the same name may have another type).
        self.refused
            .retain(|(b, n)| *b != a.bridge || services.contains_key(n));
        self.remotes.insert(
            a.bridge,
            Remote {
                last_seen: Instant::now(),
                services,
            },
        );
    }

    fn add_pubsub_source(&mut self, name: &str, ty: &PubSubType, qos: &QosAnnouncement, from: u64) {
        if let Some(f) = self.forward_pubsub.get_mut(name) {
            f.sources.insert(from);
            return;
        }
        let key = format!("forward:{name}");
        if self.failed.contains_key(&key) {
            return;
        }
        match self.open_publisher(name, ty, qos) {
            Ok(publisher) => {
                self.info(&format!(
                    "forwarding remote service {name:?} of bridge {from:#x} in"
                ));
                self.forward_pubsub.insert(
                    name.to_owned(),
                    ForwardPubSub {
                        publisher,
                        sources: BTreeSet::from([from]),
                    },
                );
            }
            Err(e) => {
                self.error(&e);
                self.failed.insert(key, Instant::now());
            }
        }
    }

    fn open_publisher(
        &self,
        name: &str,
        ty: &PubSubType,
        qos: &QosAnnouncement,
    ) -> Result<Publisher<RawPayload>, BridgeError> {
        let port = |reason: String| BridgeError::Port {
            service: name.to_owned(),
            reason,
        };
        let payload = ty.payload.raw_type().map_err(port)?;
        let header = ty.header.raw_type().map_err(port)?;
        let builder = || {
            let b = self.node.service(name);
            let b = if ty.slice {
                b.publish_subscribe_raw_slice(payload.clone())
            } else {
                b.publish_subscribe_raw(payload.clone())
            };
            b.user_header_raw(header.clone())
        };
        use conduit::service::ServiceError;
        let service = match builder().open() {
            Ok(s) => Ok(s),
            Err(ServiceError::NotFound(_)) => builder()
                .max_publishers(qos.max_publishers)
                .max_subscribers(qos.max_subscribers)
                .subscriber_buffer(qos.subscriber_buffer)
                .history(qos.history)
                .max_loans(qos.max_loans)
                .max_borrowed(qos.max_borrowed)
                .overflow(qos.overflow())
                .create()
                .or_else(|_| builder().open()),
            Err(e) => Err(e),
        };
        let service = match service {
            Ok(s) => s,
            Err(ServiceError::IncompatibleType { .. }) => {
                return Err(BridgeError::TypeMismatch {
                    service: name.to_owned(),
                    remote_bridge: 0,
                    remote: ty.to_string(),
                    local: "another type (it appeared meanwhile)".into(),
                });
            }
            Err(e) => return Err(port(e.to_string())),
        };
        let max_bytes = usize::try_from(ty.payload.size).unwrap_or(0);
        // A subscriber that never takes its samples (`Overflow::Block`)
        // holds the bridge up for at most this long per sample.
        let mut publisher = service.publisher().block_timeout(Duration::from_secs(1));
        if ty.slice {
            // Remote slices may be as long as the publisher allowed there;
            // the bridge takes up to 1 MiB by default (longer ones are
            // logged and skipped).
            publisher = publisher.max_slice_len((1 << 20) / max_bytes.max(1));
        }
        publisher.create().map_err(|e| port(e.to_string()))
    }

    fn drop_pubsub_source(&mut self, name: &str, from: u64) {
        if let Some(f) = self.forward_pubsub.get_mut(name) {
            f.sources.remove(&from);
            if f.sources.is_empty() {
                self.forward_pubsub.remove(name);
                self.info(&format!("stopped forwarding remote service {name:?} in"));
            }
        }
    }

    fn add_event_source(&mut self, name: &str, max_event_id: usize, from: u64) {
        if let Some(f) = self.forward_events.get_mut(name) {
            f.sources.insert(from);
            return;
        }
        let key = format!("forward-event:{name}");
        if self.failed.contains_key(&key) {
            return;
        }
        let opened = self
            .node
            .service(name)
            .event()
            .max_event_id(max_event_id)
            .open_or_create()
            .map_err(|e| e.to_string())
            .and_then(|svc| {
                svc.notifier()
                    .create()
                    .map(|n| (svc, n))
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok((service, notifier)) => {
                self.info(&format!(
                    "forwarding remote event service {name:?} of bridge {from:#x} in"
                ));
                self.forward_events.insert(
                    name.to_owned(),
                    ForwardEvent {
                        _service: service,
                        notifier,
                        sources: BTreeSet::from([from]),
                        echo: BTreeSet::new(),
                    },
                );
            }
            Err(reason) => {
                self.error(&BridgeError::Port {
                    service: name.to_owned(),
                    reason,
                });
                self.failed.insert(key, Instant::now());
            }
        }
    }

    fn drop_event_source(&mut self, name: &str, from: u64) {
        if let Some(f) = self.forward_events.get_mut(name) {
            f.sources.remove(&from);
            if f.sources.is_empty() {
                self.forward_events.remove(name);
                self.info(&format!(
                    "stopped forwarding remote event service {name:?} in"
                ));
            }
        }
    }

    /// Forgets bridges silent for three periods: their forwarded services
    /// lose them as a source.
    fn expire_remotes(&mut self, now: Instant) {
        let limit = self.period * 3;
        let gone: Vec<u64> = self
            .remotes
            .iter()
            .filter(|(_, r)| now.duration_since(r.last_seen) > limit)
            .map(|(b, _)| *b)
            .collect();
        for bridge in gone {
            self.info(&format!("bridge {bridge:#x} is gone"));
            self.remotes.remove(&bridge);
            self.refused.retain(|(b, _)| *b != bridge);
            let names: Vec<String> = self.forward_pubsub.keys().cloned().collect();
            for name in names {
                self.drop_pubsub_source(&name, bridge);
            }
            let names: Vec<String> = self.forward_events.keys().cloned().collect();
            for name in names {
                self.drop_event_source(&name, bridge);
            }
        }
    }

    /// Whether `bridge` announced `name` and it was accepted here.
    fn accepted(&self, bridge: u64, name: &str) -> bool {
        !self.refused.contains(&(bridge, name.to_owned()))
            && self
                .remotes
                .get(&bridge)
                .is_some_and(|r| r.services.contains_key(name))
    }

    fn remote_sample(&mut self, name: &str, m: &SampleMessage<'_>) {
        if !self.accepted(m.bridge, name) {
            return;
        }
        // Our own subscriber of this service receives what we republish:
        // empty its queue first, so that a service with `Overflow::Block`
        // cannot make the bridge wait on itself.
        let _ = self.drain_pubsub(name);
        let Some(f) = self.forward_pubsub.get(name) else {
            return;
        };
        let result = f
            .publisher
            .loan_uninit(m.payload.len())
            .map_err(|e| e.to_string())
            .and_then(|mut loan| {
                let header = loan.header_bytes_mut();
                if header.len() != m.header.len() {
                    return Err(format!(
                        "remote header of {} bytes, {} here",
                        m.header.len(),
                        header.len()
                    ));
                }
                header.copy_from_slice(m.header);
                for (slot, b) in loan.payload_mut().iter_mut().zip(m.payload) {
                    slot.write(*b);
                }
                // SAFETY: the loan is exactly `m.payload.len()` bytes
                // (`loan_uninit` checked the length) and every one was
                // written above.
                let sample = unsafe { loan.assume_init() };
                sample.send().map_err(|e| e.to_string())
            });
        if let Err(reason) = result {
            self.error(&BridgeError::Malformed(format!(
                "sample {} of service {name:?} from bridge {:#x}: {reason}",
                m.sequence, m.bridge
            )));
        }
    }

    fn remote_event(&mut self, name: &str, m: &EventMessage) {
        if !self.accepted(m.bridge, name) {
            return;
        }
        let Some(f) = self.forward_events.get_mut(name) else {
            return;
        };
        let mut failed = None;
        for id in &m.ids {
            match f.notifier.notify(*id) {
                Ok(_) => {
                    f.echo.insert(*id);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if let Some(reason) = failed {
            self.error(&BridgeError::Malformed(format!(
                "event of service {name:?} from bridge {:#x}: {reason}",
                m.bridge
            )));
        }
    }
}
