//! Publish/subscribe services whose payload type is given at run time
//! ([`RawType`], [`RawPayload`]): for the C and Python bindings, whose
//! structs have no Rust `ShmSafe::LAYOUT`, and for tools.
//!
//! A raw service is stored exactly as the typed one: a
//! `publish_subscribe_raw(RawType::of::<Pose>())` port writes and checks
//! the same static configuration as `publish_subscribe::<Pose>()` (name,
//! size, alignment, fingerprint, "typed"), so the two meet on one service,
//! and any difference is the usual [`ServiceError::IncompatibleType`]
//! naming both sides. Ports see the payload as bytes: a loan is
//! `len × size` bytes aligned to `max(align, 8)`, a sample a read-only
//! `&[u8]` of the same length.
//!
//! Only creating a port reads the run-time type (the chunk geometry, the
//! subscriber's check of a publisher's data segment); a raw port's send
//! and receive do what a typed port's do, plus one multiplication for the
//! sample's byte length. Typed ports are unchanged (`Payload::RAW` is a
//! constant).

use std::marker::PhantomData;

use super::{NoHeader, PubSubBuilder, Qos};
use crate::service::{Payload, Requested, ServiceBuilder, TypeDesc};
use crate::shm::{ShmSafe, TypeLayout, fingerprint};

/// The payload of a service whose type is a [`RawType`]: the type
/// parameter of [`Publisher`](super::Publisher),
/// [`Subscriber`](super::Subscriber) and their samples for a service
/// opened with [`ServiceBuilder::publish_subscribe_raw`] or
/// [`ServiceBuilder::publish_subscribe_raw_slice`]. It has no values.
#[derive(Debug)]
pub enum RawPayload {}

impl Payload for RawPayload {
    /// Only a placeholder: the element's layout is the service's
    /// [`RawType`], which the ports read from the service.
    type Element = u8;
    const IS_SLICE: bool = false;
    const RAW: bool = true;
}

/// Longest type name a service records, in bytes (16 words of the static
/// configuration).
pub const MAX_TYPE_NAME_LEN: usize = 128;

/// Largest alignment a service accepts (a page).
pub const MAX_TYPE_ALIGN: usize = 4096;

/// A payload type described at run time: what
/// [`ShmSafe::LAYOUT`](crate::ShmSafe::LAYOUT) says of a Rust type, for a
/// C struct or a Python `ctypes.Structure`.
///
/// Two ports meet on a service only if all four fields are equal. For a
/// Rust type `T`, [`RawType::of::<T>()`](RawType::of) is its layout;
/// the fingerprint of a `#[derive(ShmSafe)]` struct folds in every
/// field (name, offset, type), so another language takes it from the Rust
/// side (print `T::LAYOUT.fingerprint`, or read it from `conduit info`),
/// or both sides use a leaf fingerprint ([`RawType::leaf`]) and the Rust
/// type implements `ShmSafe` by hand with
/// [`TypeLayout::leaf`](crate::shm::TypeLayout::leaf).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawType {
    /// The type's name (at most [`MAX_TYPE_NAME_LEN`] bytes): a Rust
    /// type's is its name as written in its definition (`Pose`).
    pub name: String,
    /// Its size in bytes: a multiple of `align` (as every C and Rust
    /// type's size is).
    pub size: usize,
    /// Its alignment: a power of two, at most [`MAX_TYPE_ALIGN`].
    pub align: usize,
    /// Its layout fingerprint.
    pub fingerprint: u64,
}

impl RawType {
    /// The layout of the Rust type `T` (`T::LAYOUT`).
    pub fn of<T: ShmSafe>() -> RawType {
        RawType::from(&T::LAYOUT)
    }

    /// A type with the fingerprint
    /// [`TypeLayout::leaf`](crate::shm::TypeLayout::leaf) gives a Rust
    /// type of this name, size and alignment (the fingerprint of
    /// integers and floats, and of hand-written `ShmSafe` impls that use
    /// `TypeLayout::leaf`).
    pub fn leaf(name: impl Into<String>, size: usize, align: usize) -> RawType {
        let name = name.into();
        RawType {
            fingerprint: leaf_fingerprint(&name, size, align),
            name,
            size,
            align,
        }
    }

    /// Why this type cannot be a payload, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.len() > MAX_TYPE_NAME_LEN {
            return Err(format!(
                "payload type name {:?} is {} bytes long; at most {MAX_TYPE_NAME_LEN}",
                self.name,
                self.name.len()
            ));
        }
        if !self.align.is_power_of_two() || self.align > MAX_TYPE_ALIGN {
            return Err(format!(
                "payload type {:?}: alignment {} is not a power of two up to {MAX_TYPE_ALIGN}",
                self.name, self.align
            ));
        }
        if self.size % self.align != 0 {
            return Err(format!(
                "payload type {:?}: size {} is not a multiple of its alignment {}",
                self.name, self.size, self.align
            ));
        }
        Ok(())
    }

    /// The descriptor a service records.
    pub(crate) fn desc(&self) -> TypeDesc {
        TypeDesc {
            name: self.name.clone(),
            size: self.size as u64,
            align: self.align as u64,
            fingerprint: self.fingerprint,
        }
    }
}

impl From<&TypeLayout> for RawType {
    fn from(layout: &TypeLayout) -> RawType {
        RawType {
            name: layout.name.to_owned(),
            size: layout.size,
            align: layout.align,
            fingerprint: layout.fingerprint,
        }
    }
}

/// The fingerprint [`TypeLayout::leaf`](crate::shm::TypeLayout::leaf)
/// computes for a leaf type of this name, size and alignment (FNV-1a over
/// the name's bytes and length, then size and alignment as 64-bit
/// little-endian words).
pub fn leaf_fingerprint(name: &str, size: usize, align: usize) -> u64 {
    let mut h = fingerprint::start();
    h = fingerprint::bytes(h, name.as_bytes());
    h = fingerprint::word(h, size as u64);
    fingerprint::word(h, align as u64)
}

/// The element layout the ports of a service with payload `P` use: `P`'s
/// own, or for [`RawPayload`] the service's recorded one (the name is
/// left out: the geometry uses size and alignment only).
pub(crate) fn element_layout<P: Payload + ?Sized>(payload: &TypeDesc) -> TypeLayout {
    if P::RAW {
        TypeLayout {
            name: "",
            // The service accepted it (`RawType::check`, or the checks of
            // `TypeDesc::read` when opened): it fits a usize.
            size: usize::try_from(payload.size).unwrap_or(usize::MAX),
            align: usize::try_from(payload.align).unwrap_or(usize::MAX),
            fingerprint: payload.fingerprint,
        }
    } else {
        <P::Element as ShmSafe>::LAYOUT
    }
}

/// The user header layout the ports of a service with payload `P` and
/// header `H` use: `H`'s own, or for [`RawPayload`] the service's recorded
/// one (equal to `H::LAYOUT` unless the header was given at run time with
/// [`PubSubBuilder::user_header_raw`]).
pub(crate) fn header_layout<P: Payload + ?Sized, H: ShmSafe>(header: &TypeDesc) -> TypeLayout {
    if P::RAW {
        TypeLayout {
            name: "",
            // Checked as for the payload (`element_layout`).
            size: usize::try_from(header.size).unwrap_or(usize::MAX),
            align: usize::try_from(header.align).unwrap_or(usize::MAX),
            fingerprint: header.fingerprint,
        }
    } else {
        H::LAYOUT
    }
}

impl PubSubBuilder<RawPayload, NoHeader> {
    /// A user header of the run-time type `header` on every sample: the
    /// service [`user_header::<H>()`](PubSubBuilder::user_header) opens
    /// for a Rust type `H` of that layout. Ports read and write it as
    /// bytes (`Sample::header_bytes`, `SampleUninit::header_bytes_mut`);
    /// `header()` of such a port is the empty [`NoHeader`]. An invalid
    /// type fails `create`/`open` with
    /// [`ServiceError::InvalidConfig`](crate::service::ServiceError::InvalidConfig).
    pub fn user_header_raw(mut self, header: RawType) -> Self {
        if self.invalid.is_none() {
            self.invalid = header.check().err();
        }
        self.raw_header = Some(header.desc());
        self
    }
}

impl ServiceBuilder {
    /// A publish/subscribe service whose payload is one value of the
    /// run-time type `payload`: the service
    /// [`publish_subscribe::<T>()`](ServiceBuilder::publish_subscribe)
    /// opens for a Rust type `T` of that layout. Ports loan and receive
    /// the value's bytes ([`RawPayload`]). An invalid type (see
    /// [`RawType`]'s fields) fails `create`/`open` with
    /// [`ServiceError::InvalidConfig`](crate::service::ServiceError::InvalidConfig).
    pub fn publish_subscribe_raw(self, payload: RawType) -> PubSubBuilder<RawPayload, NoHeader> {
        raw_builder(self, payload, false)
    }

    /// A publish/subscribe service whose payload is a slice of elements of
    /// the run-time type `element`: the service
    /// `publish_subscribe::<[T]>()` opens for a Rust type `T` of that
    /// layout (`RawType::of::<u8>()`: byte slices).
    pub fn publish_subscribe_raw_slice(
        self,
        element: RawType,
    ) -> PubSubBuilder<RawPayload, NoHeader> {
        raw_builder(self, element, true)
    }
}

fn raw_builder(
    builder: ServiceBuilder,
    payload: RawType,
    slice: bool,
) -> PubSubBuilder<RawPayload, NoHeader> {
    PubSubBuilder {
        builder,
        qos: Qos::default(),
        requested: Requested::default(),
        payload: payload.desc(),
        slice,
        invalid: payload.check().err(),
        raw_header: None,
        _types: PhantomData,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn leaf_fingerprints_agree_with_the_rust_ones() {
        assert_eq!(RawType::leaf("u32", 4, 4), RawType::of::<u32>());
        assert_eq!(RawType::leaf("f64", 8, 8), RawType::of::<f64>());
        assert_ne!(
            RawType::leaf("u32", 4, 8).fingerprint,
            RawType::of::<u32>().fingerprint
        );
    }

    #[test]
    fn invalid_types_are_refused() {
        assert!(RawType::leaf("x", 12, 4).check().is_ok());
        assert!(RawType::leaf("x", 0, 1).check().is_ok());
        assert!(RawType::leaf("x", 12, 8).check().is_err());
        assert!(RawType::leaf("x", 12, 3).check().is_err());
        assert!(RawType::leaf("x", 8192, 8192).check().is_err());
        assert!(RawType::leaf("x".repeat(129), 1, 1).check().is_err());
    }
}
