//! `#[derive(ShmSafe)]`: the layouts it computes, and (through trybuild)
//! the definitions it accepts and the ones it refuses at compile time.

use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::AtomicU32;

use conduit::ShmSafe;
use conduit::shm::{RelPtr, TypeLayout, fingerprint};

#[derive(ShmSafe)]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    seq: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Pair(u8, u64);

#[derive(ShmSafe)]
#[repr(C)]
struct Marker;

#[derive(ShmSafe)]
#[repr(C, align(64))]
struct CacheLine {
    counter: AtomicU32,
}

#[derive(ShmSafe)]
#[repr(transparent)]
struct Meters(f64);

#[derive(ShmSafe)]
#[repr(C)]
struct Sample<T, const N: usize> {
    values: [T; N],
    len: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Typed<T> {
    raw: u64,
    _type: PhantomData<T>,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Node {
    next: RelPtr<Node>,
    pose: Pose,
}

/// The fingerprint the derive documents, recomputed by hand.
fn expected(name: &str, size: usize, align: usize, fields: &[(&str, usize, u64)]) -> u64 {
    let mut h = fingerprint::start();
    h = fingerprint::bytes(h, name.as_bytes());
    h = fingerprint::word(h, size as u64);
    h = fingerprint::word(h, align as u64);
    h = fingerprint::word(h, fields.len() as u64);
    for &(field, offset, inner) in fields {
        h = fingerprint::bytes(h, field.as_bytes());
        h = fingerprint::word(h, offset as u64);
        h = fingerprint::word(h, inner);
    }
    h
}

#[test]
fn layout_of_a_named_struct() {
    let layout: TypeLayout = Pose::LAYOUT;
    assert_eq!(layout.name, "Pose");
    assert_eq!(layout.size, size_of::<Pose>());
    assert_eq!(layout.align, align_of::<Pose>());
    assert_eq!(
        layout.fingerprint,
        expected(
            "Pose",
            size_of::<Pose>(),
            align_of::<Pose>(),
            &[
                ("x", offset_of!(Pose, x), f64::LAYOUT.fingerprint),
                ("y", offset_of!(Pose, y), f64::LAYOUT.fingerprint),
                ("seq", offset_of!(Pose, seq), u32::LAYOUT.fingerprint),
            ],
        )
    );
}

#[test]
fn layout_of_tuple_unit_transparent_and_aligned_structs() {
    assert_eq!(Pair::LAYOUT.name, "Pair");
    assert_eq!(Pair::LAYOUT.size, 16);
    assert_eq!(
        Pair::LAYOUT.fingerprint,
        expected(
            "Pair",
            16,
            8,
            &[
                ("0", 0, u8::LAYOUT.fingerprint),
                ("1", 8, u64::LAYOUT.fingerprint),
            ],
        )
    );

    assert_eq!(Marker::LAYOUT.size, 0);
    assert_eq!(Marker::LAYOUT.align, 1);
    assert_eq!(Marker::LAYOUT.fingerprint, expected("Marker", 0, 1, &[]));

    assert_eq!(Meters::LAYOUT.size, 8);
    assert_eq!(Meters::LAYOUT.align, align_of::<f64>());

    assert_eq!(CacheLine::LAYOUT.size, 64);
    assert_eq!(CacheLine::LAYOUT.align, 64);
}

#[test]
fn generic_structs_fold_in_their_arguments() {
    assert_eq!(Sample::<u16, 4>::LAYOUT.size, 12);
    assert_eq!(Sample::<u16, 4>::LAYOUT.name, "Sample");
    assert_ne!(
        Sample::<u16, 4>::LAYOUT.fingerprint,
        Sample::<u16, 5>::LAYOUT.fingerprint
    );
    assert_ne!(
        Sample::<u16, 4>::LAYOUT.fingerprint,
        Sample::<i16, 4>::LAYOUT.fingerprint
    );
    assert_ne!(
        Typed::<u32>::LAYOUT.fingerprint,
        Typed::<f32>::LAYOUT.fingerprint
    );
    assert_eq!(Typed::<Pose>::LAYOUT.size, 8);
}

#[test]
fn nested_and_self_referential_structs() {
    assert_eq!(Node::LAYOUT.size, size_of::<Node>());
    assert_eq!(
        Node::LAYOUT.fingerprint,
        expected(
            "Node",
            size_of::<Node>(),
            8,
            &[
                ("next", 0, RelPtr::<Node>::LAYOUT.fingerprint),
                ("pose", 8, Pose::LAYOUT.fingerprint),
            ],
        )
    );
}

#[test]
fn layout_is_usable_in_const_context() {
    const POSE: TypeLayout = Pose::LAYOUT;
    const FINGERPRINT: u64 = Sample::<Pose, 2>::LAYOUT.fingerprint;
    assert_eq!(POSE, Pose::LAYOUT);
    assert_eq!(FINGERPRINT, Sample::<Pose, 2>::LAYOUT.fingerprint);
}

/// Versions of one struct, as two programs built at different times
/// might define it. Each module defines `Message`; only the body differs.
mod versions {
    use conduit::ShmSafe;

    macro_rules! version {
        ($module:ident { $($body:tt)* }) => {
            pub mod $module {
                use conduit::ShmSafe;
                #[derive(ShmSafe)]
                #[repr(C)]
                pub struct Message { $($body)* }
            }
        };
    }

    version!(original { pub id: u32, pub value: u32 });
    version!(same_again { pub id: u32, pub value: u32 });
    version!(field_type { pub id: u32, pub value: i32 });
    version!(field_name { pub id: u32, pub amount: u32 });
    version!(field_order { pub value: u32, pub id: u32 });
    version!(field_added { pub id: u32, pub value: u32, pub extra: u32 });
    version!(field_widened { pub id: u32, pub value: u64 });

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Renamed {
        pub id: u32,
        pub value: u32,
    }

    pub fn fingerprints() -> [(&'static str, u64); 7] {
        [
            ("field_type", field_type::Message::LAYOUT.fingerprint),
            ("field_name", field_name::Message::LAYOUT.fingerprint),
            ("field_order", field_order::Message::LAYOUT.fingerprint),
            ("field_added", field_added::Message::LAYOUT.fingerprint),
            ("field_widened", field_widened::Message::LAYOUT.fingerprint),
            ("renamed", Renamed::LAYOUT.fingerprint),
            ("original", original::Message::LAYOUT.fingerprint),
        ]
    }
}

#[test]
fn same_definition_gives_same_fingerprint() {
    assert_eq!(
        versions::original::Message::LAYOUT,
        versions::same_again::Message::LAYOUT
    );
}

#[test]
fn every_change_changes_the_fingerprint() {
    let all = versions::fingerprints();
    for (i, (name_a, a)) in all.iter().enumerate() {
        for (name_b, b) in &all[i + 1..] {
            assert_ne!(a, b, "{name_a} and {name_b} have the same fingerprint");
        }
    }
}

#[test]
fn ui() {
    // One TestCases: trybuild builds the dependencies once for all files.
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass_*.rs");
    cases.compile_fail("tests/ui/fail_*.rs");
}
