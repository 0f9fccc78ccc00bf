//! The request/response service: its builder, the open service (the
//! factory of clients and servers), what it tells the service core about
//! itself, and its listing for tools.

use crate::service::NoHeader;
use std::marker::PhantomData;
use std::sync::Arc;

use super::layout::{CLIENTS, SERVERS, SERVICE_FINGERPRINT, ServiceLayout, StaticConfig};
use super::{ClientBuilder, Qos, ServerBuilder};
use crate::domain::{Domain, ServiceKind};
use crate::service::Payload;
use crate::service::core::{self, Mode, Pattern, ServiceCore, ServiceRef};
use crate::service::registry::PortSlot;
use crate::service::{
    PortId, PortInfo, Requested, ServiceBuilder, ServiceError, TypeDesc, TypeLayoutInfo,
};
use crate::shm::ShmSafe;

/// The request/response pattern, as the service core sees it.
#[derive(Debug)]
pub(crate) struct ReqRes;

impl Pattern for ReqRes {
    const KIND: ServiceKind = ServiceKind::RequestResponse;
    const FINGERPRINT: u64 = SERVICE_FINGERPRINT;
    const PORT_KINDS: &'static [&'static str] = &["clients", "servers"];

    type Config = StaticConfig;
    type Layout = ServiceLayout;

    /// A dead server: wake every client (a pending response may end with
    /// `ServerGone`). A dead client: wake every server (its requests are
    /// disconnected).
    fn port_reclaimed(service: &ServiceRef<'_, Self>, kind: usize, _slot: &PortSlot) {
        let other = if kind == SERVERS { CLIENTS } else { SERVERS };
        for slot in service.slots(other).iter() {
            super::wake(service.domain, slot);
        }
    }

    const POOLS: Option<(crate::pool::PoolKind, &'static [usize])> =
        Some((super::POOL, &[CLIENTS, SERVERS]));
}

/// An open request/response service, shared by its ports.
pub(crate) type ServiceInner = ServiceCore<ReqRes>;

impl ServiceBuilder {
    /// A request/response service whose clients send `Req` and whose
    /// servers answer with `Resp` (both `ShmSafe`, or slices `[T]` of
    /// them), without user headers (add them with
    /// [`ReqResBuilder::request_header`] and
    /// [`ReqResBuilder::response_header`]).
    pub fn request_response<Req: Payload + ?Sized, Resp: Payload + ?Sized>(
        self,
    ) -> ReqResBuilder<Req, Resp> {
        ReqResBuilder {
            builder: self,
            qos: Qos::default(),
            requested: Requested::default(),
            _types: PhantomData,
        }
    }
}

/// Configures a request/response service; made by
/// [`ServiceBuilder::request_response`].
pub struct ReqResBuilder<
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    builder: ServiceBuilder,
    qos: Qos,
    requested: Requested,
    _types: super::Types<Req, Resp, ReqH, RespH>,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for ReqResBuilder<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqResBuilder")
            .field("name", &self.builder.name)
            .field("qos", &self.qos)
            .finish()
    }
}

macro_rules! qos_setter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, value: usize) -> Self {
            self.qos.$name = value;
            self.requested.insert(stringify!($name));
            self
        }
    };
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    ReqResBuilder<Req, Resp, ReqH, RespH>
{
    qos_setter!(
        /// Most clients at once (1..=64; default 4). When opening: at least this many.
        max_clients
    );
    qos_setter!(
        /// Most servers at once (1..=64; default 2). When opening: at least this many.
        max_servers
    );
    qos_setter!(
        /// Requests one client may have in flight (1..=1024; default 4).
        /// When opening: at least this many.
        active_requests
    );
    qos_setter!(
        /// Responses per active request a server may have at a client
        /// that the client has not dropped yet (1..=1024; default 4). When
        /// opening: at least this many.
        response_buffer
    );
    qos_setter!(
        /// Requests a client, or responses a server, may have loaned at
        /// once (1..=65 536; default 2). When opening: at least this many.
        max_loans
    );

    /// What a client's loan does when `active_requests` requests are in
    /// flight: [`Overflow::Fail`](super::Overflow::Fail) (the default) or `Block`
    /// (see [`Qos::request_overflow`]). When opening: must match the
    /// service's.
    pub fn request_overflow(mut self, policy: super::Overflow) -> Self {
        self.qos.request_overflow = policy;
        self.requested.insert("request_overflow");
        self
    }

    /// What a server's send does when the client holds its whole
    /// response buffer: [`Overflow::Fail`](super::Overflow::Fail) (the
    /// default), `Block` or `DropOldest` (see [`Qos::response_overflow`]).
    /// When opening: must match the service's.
    pub fn response_overflow(mut self, policy: super::Overflow) -> Self {
        self.qos.response_overflow = policy;
        self.requested.insert("response_overflow");
        self
    }

    /// Every request carries a user header of type `H` next to its
    /// payload (zeroed at the loan; the client writes it with
    /// `header_mut()`, the server reads it with
    /// [`ActiveRequest::header`](super::ActiveRequest::header)). Part of
    /// the service's type: openers must name the same one.
    pub fn request_header<H: ShmSafe>(self) -> ReqResBuilder<Req, Resp, H, RespH> {
        ReqResBuilder {
            builder: self.builder,
            qos: self.qos,
            requested: self.requested,
            _types: PhantomData,
        }
    }

    /// Every response carries a user header of type `H` next to its
    /// payload (zeroed at the loan; the server writes it with
    /// `header_mut()`, the client reads it with
    /// [`Response::header`](super::Response::header)). Part of the
    /// service's type: openers must name the same one.
    pub fn response_header<H: ShmSafe>(self) -> ReqResBuilder<Req, Resp, ReqH, H> {
        ReqResBuilder {
            builder: self.builder,
            qos: self.qos,
            requested: self.requested,
            _types: PhantomData,
        }
    }

    /// Creates the service; [`ServiceError::AlreadyExists`] if it exists.
    pub fn create(self) -> Result<ReqResService<Req, Resp, ReqH, RespH>, ServiceError> {
        self.build(Mode::Create)
    }

    /// Opens the existing service, checking both types and the QoS.
    pub fn open(self) -> Result<ReqResService<Req, Resp, ReqH, RespH>, ServiceError> {
        self.build(Mode::Open)
    }

    /// Opens the service, creating it if it does not exist. Race-free
    /// between processes.
    pub fn open_or_create(self) -> Result<ReqResService<Req, Resp, ReqH, RespH>, ServiceError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<ReqResService<Req, Resp, ReqH, RespH>, ServiceError> {
        let config = StaticConfig {
            name: self.builder.name,
            request: TypeDesc::of(&Req::Element::LAYOUT),
            request_slice: Req::IS_SLICE,
            response: TypeDesc::of(&Resp::Element::LAYOUT),
            response_slice: Resp::IS_SLICE,
            request_header: TypeDesc::of(&ReqH::LAYOUT),
            response_header: TypeDesc::of(&RespH::LAYOUT),
            qos: self.qos,
        };
        let inner = core::open::<ReqRes>(&self.builder.node, &config, &self.requested, mode)?;
        Ok(ReqResService {
            inner: Arc::new(inner),
            _types: PhantomData,
        })
    }
}

/// An open request/response service: the factory of clients and servers.
pub struct ReqResService<
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    inner: Arc<ServiceInner>,
    _types: super::Types<Req, Resp, ReqH, RespH>,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for ReqResService<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqResService")
            .field("name", &self.inner.config.name)
            .finish()
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    ReqResService<Req, Resp, ReqH, RespH>
{
    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The QoS in force.
    pub fn qos(&self) -> Qos {
        self.inner.config.qos
    }

    /// Starts configuring a client.
    pub fn client(&self) -> ClientBuilder<Req, Resp, ReqH, RespH> {
        ClientBuilder::new(self.inner.clone())
    }

    /// Starts configuring a server.
    pub fn server(&self) -> ServerBuilder<Req, Resp, ReqH, RespH> {
        ServerBuilder::new(self.inner.clone())
    }

    /// Frees the ports of dead nodes in this service now (also done when
    /// the service is opened, when a slot or chunk runs out, and while a
    /// client waits for a response).
    pub fn cleanup_dead_ports(&self) {
        self.inner.cleanup_dead_ports();
    }

    /// Its ports now, as [`details`] gives them, read through this open
    /// service (so also a service of another user shared with this node's
    /// group, which [`details`] cannot map).
    pub fn details(&self) -> ServiceDetails {
        let segment = ServiceKind::RequestResponse.segment_name(self.name());
        details_of(&segment, self.inner.view())
    }
}

/// A request/response service's ports, as seen by [`details`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceDetails {
    /// What [`list`] shows of it.
    pub info: ServiceInfo,
    /// Its clients, each with the requests whose responses it awaits now.
    pub clients: Vec<ClientInfo>,
    /// Its servers.
    pub servers: Vec<PortInfo>,
}

/// A client as seen by [`details`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client's id and node.
    pub port: PortInfo,
    /// Requests whose responses it awaits now (its pending responses
    /// alive; requests sent wanting no response are not counted).
    pub awaiting: usize,
}

/// The clients and servers of service `name` of `domain` now (`None` if
/// it does not exist), for tools; a snapshot read without taking part in
/// any protocol. Maps the segment with this user's permissions, as
/// [`list`] does.
pub fn details(domain: &Domain, name: &str) -> Result<Option<ServiceDetails>, ServiceError> {
    core::inspect_service::<ReqRes, _>(domain, name, details_of)
}

fn details_of(segment: &str, view: ServiceRef<'_, ReqRes>) -> ServiceDetails {
    let shm = view.port_view();
    let port = |id, node| PortInfo {
        id: PortId(id),
        node,
    };
    let clients = view
        .ports(CLIENTS)
        .into_iter()
        .map(|(c, id, node)| ClientInfo {
            port: port(id, node),
            awaiting: shm
                .pending(c)
                .iter()
                .filter(|w| w.load(std::sync::atomic::Ordering::Acquire) != 0)
                .count(),
        })
        .collect();
    let servers = view
        .ports(SERVERS)
        .into_iter()
        .map(|(_, id, node)| port(id, node))
        .collect();
    ServiceDetails {
        info: ServiceInfo::of(segment, view),
        clients,
        servers,
    }
}

/// A request/response service as seen by [`list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// The segment holding it (inside the domain).
    pub segment: String,
    /// The request type (the element type of a slice request).
    pub request: TypeLayoutInfo,
    /// Requests are slices `[T]` of `request`.
    pub request_is_slice: bool,
    /// The response type (the element type of a slice response).
    pub response: TypeLayoutInfo,
    /// Responses are slices `[T]` of `response`.
    pub response_is_slice: bool,
    /// The requests' user header type (`NoHeader`, size 0, when none).
    pub request_header: TypeLayoutInfo,
    /// The responses' user header type.
    pub response_header: TypeLayoutInfo,
    /// Its QoS.
    pub qos: Qos,
    /// Clients registered now.
    pub clients: usize,
    /// Servers registered now.
    pub servers: usize,
}

impl ServiceInfo {
    fn of(segment: &str, view: ServiceRef<'_, ReqRes>) -> ServiceInfo {
        let count = |kind| view.slots(kind).iter().filter(|s| s.port() != 0).count();
        ServiceInfo {
            name: view.config.name.clone(),
            segment: segment.to_owned(),
            request: view.config.request.info(),
            request_is_slice: view.config.request_slice,
            response: view.config.response.info(),
            response_is_slice: view.config.response_slice,
            request_header: view.config.request_header.info(),
            response_header: view.config.response_header.info(),
            qos: view.config.qos,
            clients: count(CLIENTS),
            servers: count(SERVERS),
        }
    }
}

/// Lists the request/response services of `domain` (mapped read-only,
/// whoever owns them; a snapshot).
pub fn list(domain: &Domain) -> std::io::Result<Vec<ServiceInfo>> {
    let mut out = Vec::new();
    core::for_each_service::<ReqRes>(domain, |segment, view| {
        out.push(ServiceInfo::of(segment, view));
    })?;
    Ok(out)
}
