//! Nodes (a process's identity and liveness in a domain) and domain
//! cleanup.

use std::ffi::c_char;

use conduit::node::{Node, NodeCreateError};

use crate::error::{Error, conduit_error_t, guard};
use crate::handle::{Object, handle_type, insert};
use crate::{need, str_arg, write_opt, write_out};

/// A node: this process's identity in a domain, the factory of
/// services. Made by [`conduit_node_create`], freed by
/// [`conduit_node_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_node_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_node_t, Node, "node");

fn node_error(e: &NodeCreateError) -> Error {
    let code = match e {
        NodeCreateError::InvalidDomain(_) | NodeCreateError::NameTooLong { .. } => {
            conduit_error_t::CONDUIT_ERROR_INVALID_ARGUMENT
        }
        _ => conduit_error_t::CONDUIT_ERROR_OS,
    };
    Error::from_std(code, e)
}

/// Creates a node named `name` in `domain` (`NULL`: the default domain,
/// `$CONDUIT_DOMAIN` or `default`) and writes its handle to `node_out`.
///
/// The node holds a lock for its lifetime: when this process dies, other
/// processes reclaim its ports. Destroy it with [`conduit_node_destroy`].
///
/// # Safety
///
/// `name` and `domain` are `NULL` or NUL-terminated strings; `node_out`
/// is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_node_create(
    name: *const c_char,
    domain: *const c_char,
    node_out: *mut conduit_node_t,
) -> conduit_error_t {
    guard(|| {
        need(node_out, "node_out")?;
        // SAFETY: NULL or NUL-terminated (contract).
        let name = unsafe { str_arg(name, "name") }?;
        let mut builder = Node::builder().name(name);
        if !domain.is_null() {
            // SAFETY: NUL-terminated (contract).
            builder = builder.domain(unsafe { str_arg(domain, "domain") }?);
        }
        let node = builder.create().map_err(|e| node_error(&e))?;
        let id = insert(Object::Node(node));
        // SAFETY: checked non-NULL above; writable (contract).
        unsafe { write_out(node_out, conduit_node_t { id }, "node_out") }
    })
}

/// Destroys a node handle. Services and ports made from it keep working
/// (they hold the node internally); the node's lock goes with the last
/// of them.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_node_destroy(node: conduit_node_t) -> conduit_error_t {
    guard(|| node.take().map(drop))
}

/// Writes the node's id (unique in its domain) to `id_out`.
///
/// # Safety
///
/// `id_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_node_id(
    node: conduit_node_t,
    id_out: *mut u64,
) -> conduit_error_t {
    guard(|| {
        let object = node.object()?;
        let Object::Node(n) = &*object else {
            unreachable!("checked by the handle type")
        };
        // SAFETY: NULL or writable (contract).
        unsafe { write_out(id_out, n.id().0, "id_out") }
    })
}

/// Removes what dead processes left in `domain`: their nodes, ports,
/// loans and segments, and services nobody uses any more. Writes the
/// number of dead nodes removed to `removed_out` (may be `NULL`).
///
/// # Safety
///
/// `domain` is `NULL` or a NUL-terminated string; `removed_out` is `NULL`
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_domain_cleanup(
    domain: *const c_char,
    removed_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        // SAFETY: NULL or NUL-terminated (contract).
        let domain = unsafe { str_arg(domain, "domain") }?;
        let removed = Node::cleanup(domain).map_err(|e| {
            let code = match e {
                conduit::node::CleanupError::InvalidDomain(_) => {
                    conduit_error_t::CONDUIT_ERROR_INVALID_ARGUMENT
                }
                _ => conduit_error_t::CONDUIT_ERROR_OS,
            };
            Error::from_std(code, &e)
        })?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_opt(removed_out, removed.len()) };
        Ok(())
    })
}
