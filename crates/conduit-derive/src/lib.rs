//! Derive macros for conduit. Use them through `conduit::ShmSafe`.

use proc_macro::TokenStream;

/// Derives `conduit::ShmSafe` (placeholder: rejects everything until the
/// real derive lands).
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(_input: TokenStream) -> TokenStream {
    quote::quote!(compile_error!("ShmSafe derive not implemented yet");).into()
}
