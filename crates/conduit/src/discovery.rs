//! Service discovery: watch a domain's services appear and disappear,
//! with no polling loop in user code.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use conduit::discovery::ServiceEvent;
//! let domain = conduit::Domain::new("robot").expect("a valid domain name");
//! let mut watch = domain.watch()?;           // the services that exist now come first
//! loop {
//!     for event in watch.wait(None)? {
//!         match event {
//!             ServiceEvent::Appeared(s) => println!("+ {:?} {}", s.kind, s.name),
//!             ServiceEvent::Disappeared(s) => println!("- {:?} {}", s.kind, s.name),
//!             _ => {}
//!         }
//!     }
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! A [`ServiceWatch`] holds an inotify descriptor on `/dev/shm`: the
//! kernel makes it readable when a file is created in, removed from or
//! moved into or out of the directory. When it reports a file of the
//! domain whose name is a service segment's (`svc.`, `evt.`, `bb.`,
//! `req.`: the `domain` module's naming table), the watch lists the
//! domain's services of every pattern again (each list reads the
//! service's name from its configuration, since segment names are
//! hashes) and reports the difference from the last list. Other files
//! (nodes, data segments) are ignored, so ports joining and leaving cost
//! the watch nothing.
//!
//! A segment is created before its configuration is written, so a list
//! made right after the creation event may not see the service yet. The
//! watch then looks again, a few times over up to 50 ms
//! ([`NOT_READY_PATIENCE`]); a segment still not readable after that (its
//! creator died mid-creation, another user's segment this user may not
//! read, garbage) is left out until it is removed or replaced.
//!
//! It is pattern-neutral in what it reports ([`ServiceId`]: a
//! [`ServiceKind`] and a name) and sits above the patterns, like the
//! domain's maintenance: it uses each pattern's `list`.
//!
//! # Waiting
//!
//! [`ServiceWatch::wait`] blocks (`poll` on the descriptor);
//! [`ServiceWatch::try_events`] never does. The watch is
//! [`Attachable`](crate::waitset::Attachable): attach it to a WaitSet
//! (or any epoll loop through [`ServiceWatch::fd`]) and call `try_events`
//! when it reports; it drains the descriptor. Any file of `/dev/shm`
//! makes the descriptor readable (the kernel cannot filter by name), so
//! a report may be followed by a `try_events` that finds no change. With
//! feature `tokio`, [`ServiceWatch::wait_async`].
//!
//! # What it does not report
//!
//! A service that appears and disappears between two looks may go
//! unreported: the watch learns a service's name from its configuration,
//! which is gone with its segment (segment names are hashes). Every
//! service that exists at a look is reported, and every one that was
//! reported and then went is reported gone.
//!
//! Changes inside a service (ports joining, QoS) are not events:
//! read them with each pattern's `details`. Nothing is reported for other
//! domains; `conduit.` objects of other users are reported when this user
//! may read them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::domain::{Domain, ServiceKind};
use crate::sys;

/// How long a watch keeps looking for the configuration of a service
/// segment that exists but cannot be read yet.
pub const NOT_READY_PATIENCE: Duration = Duration::from_millis(50);

/// A service of a domain: its pattern and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceId {
    /// The messaging pattern.
    pub kind: ServiceKind,
    /// The service's name.
    pub name: String,
}

/// What a [`ServiceWatch`] saw happen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// The service exists now (or existed when the watch began).
    Appeared(ServiceId),
    /// The service is gone (its segment was removed).
    Disappeared(ServiceId),
}

/// Watches a domain's services appear and disappear; made by
/// [`Domain::watch`]. See the [module docs](self).
#[derive(Debug)]
pub struct ServiceWatch {
    domain: Domain,
    inotify: OwnedFd,
    /// What the last look found (interior mutability: a watch attached to
    /// a WaitSet is borrowed shared while the loop runs).
    state: RefCell<State>,
    #[cfg(feature = "tokio")]
    async_fd: std::sync::OnceLock<tokio::io::unix::AsyncFd<OwnedFd>>,
}

#[derive(Debug, Default)]
struct State {
    /// Every service as of the last list, by segment file name (inside
    /// the domain).
    known: BTreeMap<String, ServiceId>,
    /// Service segments that could not be read within the patience, left
    /// out until they are removed or created anew.
    unreadable: BTreeSet<String>,
    /// Whether the services that existed at creation were reported.
    primed: bool,
}

impl Domain {
    /// Starts watching this domain's services: the first
    /// [`ServiceWatch::try_events`] or [`ServiceWatch::wait`] reports every
    /// service that exists as [`ServiceEvent::Appeared`], later calls what
    /// changed. Fails if inotify is unavailable (out of descriptors or
    /// watches: `/proc/sys/fs/inotify/max_user_instances`).
    pub fn watch(&self) -> std::io::Result<ServiceWatch> {
        let inotify = sys::inotify::watch_dir("/dev/shm")?;
        Ok(ServiceWatch {
            domain: self.clone(),
            inotify,
            state: RefCell::new(State::default()),
            #[cfg(feature = "tokio")]
            async_fd: std::sync::OnceLock::new(),
        })
    }
}

/// The kind of service whose segment (a name inside the domain) this is.
fn service_kind(segment: &str) -> Option<ServiceKind> {
    ServiceKind::ALL
        .into_iter()
        .find(|k| segment.starts_with(k.prefix()))
}

impl ServiceWatch {
    /// The domain watched.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The services as of the last look (sorted by segment name).
    pub fn services(&self) -> Vec<ServiceId> {
        self.state.borrow().known.values().cloned().collect()
    }

    /// The inotify descriptor: readable when something may have changed
    /// (then call [`try_events`](Self::try_events)).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// What changed since the last call (everything that exists, on the
    /// first call), without blocking; empty if nothing did.
    pub fn try_events(&self) -> std::io::Result<Vec<ServiceEvent>> {
        let prefix = format!("conduit.{}.", self.domain.name());
        let mut state = self.state.borrow_mut();
        // Look again on the first call, after a queue overflow, or when a
        // service segment of this domain came or went.
        let mut look = !state.primed;
        let mut touched = Vec::new();
        sys::inotify::drain(&self.inotify, |file| {
            let Some(file) = file else {
                look = true;
                return;
            };
            if let Some(inner) = file
                .strip_prefix(prefix.as_bytes())
                .and_then(|f| std::str::from_utf8(f).ok())
                .filter(|f| service_kind(f).is_some())
            {
                look = true;
                touched.push(inner.to_owned());
            }
        })?;
        if !look {
            return Ok(Vec::new());
        }
        // A name that came or went (or was replaced) gets another chance.
        for name in &touched {
            state.unreadable.remove(name);
        }
        state.primed = true;
        self.relist(&mut state)
    }

    /// Waits up to `timeout` (`None`: forever) until something changed,
    /// and returns what (the first call returns at once with every
    /// service, if there is any). `EINTR` is retried.
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<Vec<ServiceEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let events = self.try_events()?;
            if !events.is_empty() {
                return Ok(events);
            }
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(events);
                    }
                    Some(left)
                }
                None => None,
            };
            sys::signal::poll_readable(&[self.inotify.as_fd()], left)?;
        }
    }

    /// Lists every pattern's services and reports the difference from
    /// what was known, giving segments that exist but are not readable
    /// yet up to [`NOT_READY_PATIENCE`].
    fn relist(&self, state: &mut State) -> std::io::Result<Vec<ServiceEvent>> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let (now, unready) = self.list(state)?;
            if unready.is_empty() || start.elapsed() >= NOT_READY_PATIENCE {
                state.unreadable.extend(unready);
                return Ok(state.update(now));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// The domain's services by segment, and the service segments that
    /// exist but could not be read (not known as unreadable already).
    #[allow(clippy::type_complexity)]
    fn list(&self, state: &State) -> std::io::Result<(BTreeMap<String, ServiceId>, Vec<String>)> {
        let d = &self.domain;
        let mut now = BTreeMap::new();
        let mut add = |kind, name: String, segment: String| {
            now.insert(segment, ServiceId { kind, name });
        };
        for s in crate::pubsub::list(d)? {
            add(ServiceKind::PublishSubscribe, s.name, s.segment);
        }
        for s in crate::event::list(d)? {
            add(ServiceKind::Event, s.name, s.segment);
        }
        for s in crate::blackboard::list(d)? {
            add(ServiceKind::Blackboard, s.name, s.segment);
        }
        for s in crate::reqres::list(d)? {
            add(ServiceKind::RequestResponse, s.name, s.segment);
        }
        let prefix = format!("conduit.{}.", d.name());
        let files = sys::shm::list(&prefix)?;
        let unready = files
            .iter()
            .filter_map(|f| f.strip_prefix(prefix.as_str()))
            .filter(|f| service_kind(f).is_some())
            .map(str::to_owned)
            .filter(|f| !now.contains_key(f) && !state.unreadable.contains(f))
            .collect();
        Ok((now, unready))
    }

    /// Waits (without blocking the runtime) until something changed and
    /// returns what, as [`wait`](Self::wait) does. Needs a tokio runtime
    /// with I/O enabled; the descriptor is registered on first use.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) -> std::io::Result<Vec<ServiceEvent>> {
        loop {
            let events = self.try_events()?;
            if !events.is_empty() {
                return Ok(events);
            }
            if self.async_fd.get().is_none() {
                let fd = sys::fd::duplicate(&self.inotify)?;
                // SAFETY: the AsyncFd owns `fd` (an OwnedFd duplicate of the
                // inotify descriptor): it stays open and names the same
                // inotify instance until the AsyncFd is dropped, which
                // deregisters it first.
                let afd = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd,
                        tokio::io::Interest::READABLE,
                    )
                }?;
                let _ = self.async_fd.set(afd);
            }
            let afd = self.async_fd.get().expect("set above");
            let mut guard = afd.readable().await?;
            // `try_events` drains the descriptor; tokio learns it is empty
            // from the next readiness check.
            guard.clear_ready();
        }
    }
}

impl State {
    /// Replaces the known services by `now` and returns the difference.
    fn update(&mut self, now: BTreeMap<String, ServiceId>) -> Vec<ServiceEvent> {
        let mut events = Vec::new();
        for (segment, id) in &self.known {
            if now.get(segment) != Some(id) {
                events.push(ServiceEvent::Disappeared(id.clone()));
            }
        }
        for (segment, id) in &now {
            if self.known.get(segment) != Some(id) {
                events.push(ServiceEvent::Appeared(id.clone()));
            }
        }
        self.unreadable.retain(|s| !now.contains_key(s));
        self.known = now;
        events
    }
}

impl crate::waitset::Attachable for ServiceWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}
