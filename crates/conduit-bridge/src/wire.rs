//! The announcement and the two envelopes the bridges exchange over Zenoh,
//! and the key layout. This is the only format conduit-bridge defines;
//! everything else (transport, routing, reliability) is Zenoh's.
//!
//! Keys, under a prefix (`conduit/<domain>` by default):
//!
//! | key | value |
//! |---|---|
//! | `<prefix>/announce/<bridge id>` | [`Announcement`], JSON |
//! | `<prefix>/pubsub/<service name>` | a sample envelope ([`SampleMessage`]) |
//! | `<prefix>/event/<service name>` | an event envelope ([`EventMessage`]) |
//!
//! Envelopes are little-endian and start with a 4-byte magic so that a
//! message of another version is refused, not misread.

use serde::{Deserialize, Serialize};

use crate::BridgeError;

/// Version of the announcement format.
pub const ANNOUNCEMENT_VERSION: u32 = 1;

/// Magic of a sample envelope.
pub const SAMPLE_MAGIC: [u8; 4] = *b"CDS1";

/// Magic of an event envelope.
pub const EVENT_MAGIC: [u8; 4] = *b"CDE1";

/// Most event ids one event envelope may carry (a malformed message
/// cannot make the receiver allocate more).
pub const MAX_EVENT_IDS: usize = 4096;

/// What a bridge tells the others about its host: published on
/// `<prefix>/announce/<bridge id>` when its services change and every
/// announce period (a bridge that stays silent for three periods is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// [`ANNOUNCEMENT_VERSION`].
    pub version: u32,
    /// The announcing bridge's id (random, per bridge process), as in the
    /// envelopes.
    pub bridge: u64,
    /// The conduit domain it bridges (for humans: bridges meet by prefix).
    pub domain: String,
    /// Its local services.
    pub services: Vec<ServiceAnnouncement>,
}

/// One announced service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceAnnouncement {
    /// A publish/subscribe service.
    PublishSubscribe {
        /// Its name.
        name: String,
        /// Whether samples are slices of the payload type.
        slice: bool,
        /// The payload (element) type.
        payload: TypeAnnouncement,
        /// The user header type (`NoHeader`, size 0, when none).
        header: TypeAnnouncement,
        /// Its QoS: the other side creates the service with it.
        qos: QosAnnouncement,
        /// Publishers on this host, the bridge's own left out: the other
        /// side forwards only services that have some.
        publishers: usize,
    },
    /// An event service.
    Event {
        /// Its name.
        name: String,
        /// Its largest event id.
        max_event_id: usize,
        /// Notifiers on this host, the bridge's own left out.
        notifiers: usize,
    },
}

impl ServiceAnnouncement {
    /// The service's name.
    pub fn name(&self) -> &str {
        match self {
            ServiceAnnouncement::PublishSubscribe { name, .. }
            | ServiceAnnouncement::Event { name, .. } => name,
        }
    }
}

/// A payload or header type as a service records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeAnnouncement {
    /// The type's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its alignment.
    pub align: u64,
    /// Its layout fingerprint.
    pub fingerprint: u64,
}

impl std::fmt::Display for TypeAnnouncement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (size {}, align {}, fingerprint {:#018x})",
            self.name, self.size, self.align, self.fingerprint
        )
    }
}

impl From<&conduit::service::TypeLayoutInfo> for TypeAnnouncement {
    fn from(t: &conduit::service::TypeLayoutInfo) -> Self {
        TypeAnnouncement {
            name: t.name.clone(),
            size: t.size,
            align: t.align,
            fingerprint: t.fingerprint,
        }
    }
}

impl TypeAnnouncement {
    /// The run-time type to open the service with.
    pub fn raw_type(&self) -> Result<conduit::pubsub::RawType, String> {
        let size = usize::try_from(self.size).map_err(|e| e.to_string())?;
        let align = usize::try_from(self.align).map_err(|e| e.to_string())?;
        Ok(conduit::pubsub::RawType {
            name: self.name.clone(),
            size,
            align,
            fingerprint: self.fingerprint,
        })
    }
}

/// The QoS of a publish/subscribe service ([`conduit::pubsub::Qos`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosAnnouncement {
    /// Most publishers at once.
    pub max_publishers: usize,
    /// Most subscribers at once.
    pub max_subscribers: usize,
    /// Samples a subscriber's queue holds per publisher.
    pub subscriber_buffer: usize,
    /// Samples kept for late joiners.
    pub history: usize,
    /// Samples a publisher may have loaned at once.
    pub max_loans: usize,
    /// Samples a subscriber may hold at once.
    pub max_borrowed: usize,
    /// `"drop_oldest"`, `"block"` or `"fail"`.
    pub overflow: String,
}

impl From<conduit::pubsub::Qos> for QosAnnouncement {
    fn from(q: conduit::pubsub::Qos) -> Self {
        use conduit::pubsub::Overflow;
        QosAnnouncement {
            max_publishers: q.max_publishers,
            max_subscribers: q.max_subscribers,
            subscriber_buffer: q.subscriber_buffer,
            history: q.history,
            max_loans: q.max_loans,
            max_borrowed: q.max_borrowed,
            overflow: match q.overflow {
                Overflow::Block => "block",
                Overflow::Fail => "fail",
                _ => "drop_oldest",
            }
            .to_owned(),
        }
    }
}

impl QosAnnouncement {
    /// The overflow policy (an unknown name: the default, drop oldest).
    pub fn overflow(&self) -> conduit::pubsub::Overflow {
        use conduit::pubsub::Overflow;
        match self.overflow.as_str() {
            "block" => Overflow::Block,
            "fail" => Overflow::Fail,
            _ => Overflow::DropOldest,
        }
    }
}

impl Announcement {
    /// The announcement as JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an announcement; a malformed one or one of another version is
    /// an error ([`BridgeError::Malformed`]), never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Announcement, BridgeError> {
        let a: Announcement = serde_json::from_slice(bytes)
            .map_err(|e| BridgeError::Malformed(format!("announcement: {e}")))?;
        if a.version != ANNOUNCEMENT_VERSION {
            return Err(BridgeError::Malformed(format!(
                "announcement version {} (this bridge speaks {ANNOUNCEMENT_VERSION})",
                a.version
            )));
        }
        Ok(a)
    }
}

/// A sample on `<prefix>/pubsub/<name>`: `"CDS1"`, bridge id (u64),
/// the publisher's sequence number (u64), header length (u32), the user
/// header's bytes, then the payload's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleMessage<'a> {
    /// The sending bridge.
    pub bridge: u64,
    /// The sequence number the original publisher gave the sample.
    pub sequence: u64,
    /// The user header's bytes.
    pub header: &'a [u8],
    /// The payload's bytes.
    pub payload: &'a [u8],
}

const SAMPLE_FIXED: usize = 4 + 8 + 8 + 4;

impl<'a> SampleMessage<'a> {
    /// The envelope's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SAMPLE_FIXED + self.header.len() + self.payload.len());
        out.extend_from_slice(&SAMPLE_MAGIC);
        out.extend_from_slice(&self.bridge.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        // Headers are small types; a longer one cannot be a conduit header.
        out.extend_from_slice(
            &u32::try_from(self.header.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(self.header);
        out.extend_from_slice(self.payload);
        out
    }

    /// Reads an envelope, checking every length.
    pub fn decode(bytes: &'a [u8]) -> Result<SampleMessage<'a>, BridgeError> {
        let bad = |why: &str| BridgeError::Malformed(format!("sample: {why}"));
        if bytes.len() < SAMPLE_FIXED {
            return Err(bad("shorter than its fixed part"));
        }
        if bytes[..4] != SAMPLE_MAGIC {
            return Err(bad("wrong magic"));
        }
        let bridge = u64::from_le_bytes(bytes[4..12].try_into().map_err(|_| bad("bridge"))?);
        let sequence = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| bad("sequence"))?);
        let header_len =
            u32::from_le_bytes(bytes[20..24].try_into().map_err(|_| bad("header length"))?)
                as usize;
        let rest = &bytes[SAMPLE_FIXED..];
        if header_len > rest.len() {
            return Err(bad("header longer than the message"));
        }
        let (header, payload) = rest.split_at(header_len);
        Ok(SampleMessage {
            bridge,
            sequence,
            header,
            payload,
        })
    }
}

/// Notifications on `<prefix>/event/<name>`: `"CDE1"`, bridge id (u64),
/// count (u32), then that many event ids (u64 each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    /// The sending bridge.
    pub bridge: u64,
    /// The ids notified.
    pub ids: Vec<usize>,
}

impl EventMessage {
    /// The envelope's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * self.ids.len());
        out.extend_from_slice(&EVENT_MAGIC);
        out.extend_from_slice(&self.bridge.to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(&(*id as u64).to_le_bytes());
        }
        out
    }

    /// Reads an envelope, checking every length.
    pub fn decode(bytes: &[u8]) -> Result<EventMessage, BridgeError> {
        let bad = |why: &str| BridgeError::Malformed(format!("event: {why}"));
        if bytes.len() < 16 || bytes[..4] != EVENT_MAGIC {
            return Err(bad("too short or wrong magic"));
        }
        let bridge = u64::from_le_bytes(bytes[4..12].try_into().map_err(|_| bad("bridge"))?);
        let count =
            u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| bad("count"))?) as usize;
        if count > MAX_EVENT_IDS || bytes.len() != 16 + 8 * count {
            return Err(bad("count does not match the length"));
        }
        let ids = bytes[16..]
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                usize::try_from(u64::from_le_bytes(w)).unwrap_or(usize::MAX)
            })
            .collect();
        Ok(EventMessage { bridge, ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_refuse_garbage() {
        let m = SampleMessage {
            bridge: 7,
            sequence: 9,
            header: &[1, 2, 3],
            payload: &[4, 5],
        };
        let bytes = m.encode();
        assert_eq!(SampleMessage::decode(&bytes).unwrap(), m);
        for cut in 0..bytes.len() - 2 {
            let _ = SampleMessage::decode(&bytes[..cut]);
        }
        assert!(SampleMessage::decode(&bytes[..10]).is_err());
        let mut long = bytes.clone();
        long[20] = 200;
        assert!(SampleMessage::decode(&long).is_err());

        let e = EventMessage {
            bridge: 1,
            ids: vec![3, 5],
        };
        let bytes = e.encode();
        assert_eq!(EventMessage::decode(&bytes).unwrap(), e);
        assert!(EventMessage::decode(&bytes[..20]).is_err());
        assert!(Announcement::decode(b"{not json").is_err());
        assert!(
            Announcement::decode(br#"{"version":99,"bridge":1,"domain":"d","services":[]}"#)
                .is_err()
        );
    }
}
