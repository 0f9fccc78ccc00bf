//! Derive macros for conduit. Use them through `conduit::ShmSafe`.
//!
//! `#[derive(ShmSafe)]` implements `conduit::ShmSafe` for a struct after
//! checking, at compile time, everything the trait's safety contract asks
//! for that can be seen from the definition:
//!
//! * the type is a `struct` (not an `enum` or `union`);
//! * it is `#[repr(C)]` or `#[repr(transparent)]` (`align(N)` may be
//!   added, `packed` is refused);
//! * it has no lifetime parameters;
//! * no field is an obvious address-space-local or invalid-bit-pattern
//!   type (`&T`, `*const T`, `*mut T`, `fn()`, `Box`, `Vec`, `String`,
//!   `bool`, `char`, tuples, ...), with a message that says what to use
//!   instead;
//! * every field type implements `ShmSafe` (checked by the compiler
//!   through a generated assertion, so `Option<u32>`, a user struct that
//!   is not `ShmSafe`, or `Vec<T>` in a generic struct are all caught).
//!
//! The generated `LAYOUT` is computed in a `const` from the struct's
//! name, size, alignment and, per field, its name (index for tuple
//! structs), offset (`core::mem::offset_of!`) and the field type's own
//! fingerprint.
//!
//! # What it accepts and refuses
//!
//! | input | result | why |
//! |---|---|---|
//! | `struct` with `#[repr(C)]` or `#[repr(transparent)]`, optionally plus `align(N)` | accepted | the layout is fixed by the language; `align` only raises the alignment and is part of the fingerprint |
//! | no repr, `repr(align(N))` alone, `repr(Rust)`, any other repr | refused, at the name or the repr | `repr(Rust)` may reorder fields and change padding between compilers or builds |
//! | `repr(C, packed)` / `packed(N)` | refused, at `packed` | packed fields may be misaligned and cannot be borrowed in place; an atomic or futex word in one would not be atomic, and readers of shared memory work by reference. Use `[u8; N]` for unaligned data |
//! | `enum` | refused, at `enum` | `ShmSafe` requires every bit pattern to be valid (another process may store anything); a discriminant matching no variant is instant UB. Store a `u8`/`u32` and convert with a checked `TryFrom` |
//! | `union` | refused, at `union` | which field is valid is not part of the data; a union can still be implemented by hand |
//! | lifetime parameters | refused | data in shared memory must not borrow from one process's memory |
//! | a field `&T`, `*const T`, `*mut T`, `fn(..)`, `dyn Trait`, a tuple, `[T]`, `bool`, `char`, `str`, or `Box`/`Rc`/`Arc`/`Vec`/`VecDeque`/`HashMap`/`BTreeMap`/`HashSet`/`BTreeSet`/`String`/`OsString`/`PathBuf`/`CString`/`NonNull`/`AtomicPtr`/`AtomicBool`, bare or as a `std::`/`alloc::`/`core::` path, also inside arrays | refused, with a message at the field type saying what to use instead | a syntactic check, so the message is clearer |
//! | any other field type | accepted only if it implements `ShmSafe` | one assertion per field, `let _: TypeLayout = <Ty as ShmSafe>::LAYOUT;`, spanned at the field type; the trait's `#[diagnostic::on_unimplemented]` then explains |
//!
//! * The by-name check fires only for bare or std-rooted paths: a user type
//!   really called `Vec` can be used through a path (`mine::Vec`).
//! * The per-field assertion sits inside the impl's `LAYOUT`: field types
//!   may say `Self`; type parameters carry the added `T: ShmSafe` bound (so
//!   `Option<T>` is caught for every `T`); and it is the expression the
//!   fingerprint uses, so rustc reports one error per field.
//! * Every type parameter gets a `T: ShmSafe` bound (which implies
//!   `'static`); the struct's own bounds and where-clauses are kept; const
//!   generics work. Tuple and unit structs work.
//! * Errors are combined (`syn::Error::combine`), so one build shows every
//!   problem; with any error, no impl is emitted.
//!
//! # `LAYOUT` and the fingerprint
//!
//! `LAYOUT = TypeLayout { name, size: size_of::<Self>(), align:
//! align_of::<Self>(), fingerprint }`, all in a `const`. The fingerprint is
//! FNV-1a over the struct name, the size, the alignment, the field count,
//! and for each field in declaration order its name (without `r#`; the
//! index as decimal text in a tuple struct), its `offset_of!` and the field
//! type's own fingerprint. The module path is *not* part of it, so two
//! programs may define the same type in different places; changing a
//! field's type, name or order, widening a field, adding one or renaming
//! the struct changes it.
//!
//! **Pointer cycles.** A list node `struct Node { next: RelPtr<Node>, .. }`
//! would make `Node::LAYOUT` depend on `RelPtr<Node>::LAYOUT`, which
//! depends on `Node::LAYOUT`: a const-evaluation cycle. So the trait has
//! `SHALLOW_FINGERPRINT` (default `LAYOUT.fingerprint`): pointer-like types
//! (`RelPtr<T>`, `Offset<T>`, `PhantomData<T>`) fold `T::SHALLOW_FINGERPRINT`
//! into their `LAYOUT` and have a shallow fingerprint independent of `T`;
//! derived structs, arrays and wrappers build their shallow fingerprint
//! from their fields' shallow fingerprints. A fingerprint therefore covers
//! everything stored by value, recursively, plus one pointer hop.
//! Hand-written generic impls that store `T` by value should override
//! `SHALLOW_FINGERPRINT` the same way.
//!
//! # Pitfalls
//!
//! * **Padding** is allowed (every bit pattern is still valid), but writing
//!   a value with padding into a segment may copy uninitialised bytes: stack
//!   contents leak to the reader (not UB for either side). Use explicit
//!   `_reserved` fields if that matters. The derive sets
//!   `ShmSafe::PADDING_FREE` to `true` only when every field is
//!   padding-free and the field sizes add up to the struct's; the
//!   blackboard, which copies values word by word through atomics,
//!   refuses other types at compile time.
//! * **`u128`/`i128` alignment** changed in Rust 1.77 on x86-64; the
//!   fingerprint includes the alignment, so programs built on either side
//!   of the change refuse each other rather than misread.
//! * **A renamed dependency** (`package = "conduit"` under another name)
//!   does not compile with the derive, which names `::conduit` (conduit
//!   itself has `extern crate self as conduit;` for that reason). There is
//!   no `#[shm(crate = ..)]` attribute yet.
//! * **Not `ShmSafe` on purpose**: `Option<NonZero*>` (sound, but it
//!   invites `NonZero*`, which is not), `Cell`, `MaybeUninit` (reading it
//!   back needs the checks of a byte array), `AtomicBool`, `bool`, `char`.
//! * The compile-fail tests (`crates/conduit/tests/ui`) depend on the rustc
//!   version; re-blessing them is described in
//!   `crates/conduit/tests/README.md`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, Fields, GenericParam, Ident, Index, LitStr, Path, PathArguments, Type,
    parse_macro_input, parse_quote,
};

/// Derives `conduit::ShmSafe` for a `#[repr(C)]` or `#[repr(transparent)]`
/// struct whose fields are all `ShmSafe`.
///
/// ```ignore
/// use conduit::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Pose {
///     x: f64,
///     y: f64,
///     seq: u32,
/// }
/// ```
///
/// Type parameters get a `T: ShmSafe` bound. Enums, unions, `packed`
/// structs, structs without `repr(C)`/`repr(transparent)`, structs with
/// lifetime parameters and fields that are not `ShmSafe` are compile
/// errors pointing at the offending token.
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// Collects several errors so the user sees every problem in one build.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span(),
                "`ShmSafe` cannot be derived for enums: another process may write any \
                 bit pattern into shared memory, and reading an enum whose discriminant is \
                 not one of its variants is undefined behaviour.\n\
                 help: store the discriminant as a `u8`/`u32` field of a `#[repr(C)]` struct \
                 and convert it with a checked `TryFrom`",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span(),
                "`ShmSafe` cannot be derived for unions: which field is valid is not part of \
                 the data, so a reader cannot know how to interpret it safely.\n\
                 help: use a `#[repr(C)]` struct with an explicit tag field and a byte array, \
                 or implement `ShmSafe` by hand (it is an `unsafe trait`) after checking every \
                 field is `ShmSafe` and every bit pattern is valid",
            ));
        }
    };

    let mut errors = Errors::default();
    check_repr(input, &mut errors);
    for param in &input.generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            errors.push(syn::Error::new(
                lifetime.span(),
                "`ShmSafe` types cannot have lifetime parameters: data in shared memory is \
                 `'static` and must not borrow from one process's memory",
            ));
        }
    }
    for field in fields {
        check_field_type(&field.ty, &mut errors);
    }
    errors.finish()?;

    Ok(generate(input, fields))
}

/// Accepts `repr(C)`, `repr(transparent)`, either with `align(N)`;
/// refuses `packed`, `Rust`, integer reprs and a missing repr.
fn check_repr(input: &DeriveInput, errors: &mut Errors) {
    let mut fixed_layout = false;
    let mut rejected = false;
    for attr in &input.attrs {
        if !attr.path().is_ident("repr") {
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path.is_ident("C") || path.is_ident("transparent") {
                fixed_layout = true;
            } else if path.is_ident("align") {
                // `align(N)` only raises the alignment; field offsets stay
                // those of repr(C).
                skip_arguments(&meta)?;
            } else if path.is_ident("packed") {
                skip_arguments(&meta)?;
                rejected = true;
                errors.push(syn::Error::new(
                    path.span(),
                    "`ShmSafe` cannot be derived for `packed` structs: their fields may be \
                     misaligned, so they cannot be borrowed in place (`&value.field` is \
                     refused or undefined behaviour), atomics and futex words in them would \
                     not be atomic, and readers of shared memory work by reference.\n\
                     help: remove `packed` and order the fields from largest to smallest \
                     alignment, or use byte arrays (`[u8; N]`) for unaligned data",
                ));
            } else if path.is_ident("Rust") {
                rejected = true;
                errors.push(syn::Error::new(
                    path.span(),
                    "`ShmSafe` requires `#[repr(C)]` or `#[repr(transparent)]`: the field \
                     order and padding of `repr(Rust)` may change between compiler versions \
                     and builds, so two programs could disagree on the layout",
                ));
            } else {
                skip_arguments(&meta)?;
                rejected = true;
                errors.push(syn::Error::new(
                    path.span(),
                    format!(
                        "`ShmSafe` does not support `repr({})`: use `#[repr(C)]` or \
                         `#[repr(transparent)]`",
                        path.to_token_stream()
                    ),
                ));
            }
            Ok(())
        });
        if let Err(error) = parsed {
            rejected = true;
            errors.push(error);
        }
    }
    if !fixed_layout && !rejected {
        errors.push(syn::Error::new(
            input.ident.span(),
            format!(
                "`ShmSafe` requires `#[repr(C)]` or `#[repr(transparent)]` on `{}`: without \
                 it the compiler may reorder fields and change padding between builds, so two \
                 programs could disagree on the layout.\n\
                 help: add `#[repr(C)]` to the struct",
                input.ident
            ),
        ));
    }
}

/// Consumes the `(..)` after a repr item such as `align(8)`, if any.
fn skip_arguments(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: TokenStream2 = content.parse()?;
    }
    Ok(())
}

/// Syntactic check for field types that are clearly not `ShmSafe`, to
/// give a message that says what to use instead. Everything else is left
/// to the trait-bound assertion.
fn check_field_type(ty: &Type, errors: &mut Errors) {
    let reason: Option<&str> = match ty {
        Type::Reference(_) => Some(
            "references cannot be stored in shared memory: the address means nothing in \
             another process, which maps the segment elsewhere.\n\
             help: use `conduit::shm::RelPtr<T>` or `conduit::shm::Offset<T>`",
        ),
        Type::Ptr(_) => Some(
            "raw pointers cannot be stored in shared memory: the address means nothing in \
             another process, which maps the segment elsewhere.\n\
             help: use `conduit::shm::RelPtr<T>` or `conduit::shm::Offset<T>`",
        ),
        Type::BareFn(_) => Some(
            "function pointers cannot be stored in shared memory: code addresses differ \
             between processes (ASLR), and calling one written by another process is \
             undefined behaviour.\n\
             help: store an index into a table of functions and check it when reading",
        ),
        Type::TraitObject(_) | Type::ImplTrait(_) => Some(
            "trait objects cannot be stored in shared memory: they carry a vtable pointer \
             that means nothing in another process",
        ),
        Type::Tuple(tuple) if !tuple.elems.is_empty() => Some(
            "tuples cannot be stored in shared memory: their layout is `repr(Rust)` and may \
             change between builds.\n\
             help: use a `#[repr(C)]` struct with `#[derive(ShmSafe)]`",
        ),
        Type::Slice(_) => Some(
            "unsized slices cannot be fields of a `ShmSafe` type.\n\
             help: use a fixed-size array `[T; N]`",
        ),
        Type::Array(array) => {
            check_field_type(&array.elem, errors);
            None
        }
        Type::Paren(inner) => {
            check_field_type(&inner.elem, errors);
            None
        }
        Type::Group(inner) => {
            check_field_type(&inner.elem, errors);
            None
        }
        Type::Path(path) if path.qself.is_none() => known_bad_path(&path.path),
        _ => None,
    };
    if let Some(reason) = reason {
        errors.push(syn::Error::new_spanned(ty, reason));
    }
}

/// Standard-library types that are never `ShmSafe`, recognised by name
/// when written bare (`Box<T>`) or through `std`/`alloc`/`core`.
///
/// A user type that happens to be called e.g. `Vec` can still be used by
/// writing it with a module path (`shm::Vec<T>`).
fn known_bad_path(path: &Path) -> Option<&'static str> {
    let segments: Vec<_> = path.segments.iter().collect();
    let last = segments.last()?;
    let std_rooted = segments.len() > 1
        && ["std", "alloc", "core"]
            .iter()
            .any(|root| segments[0].ident == root);
    let bare = segments.len() == 1 && path.leading_colon.is_none();
    if !bare && !std_rooted {
        return None;
    }
    let name = last.ident.to_string();
    let generic = !matches!(last.arguments, PathArguments::None);
    Some(match name.as_str() {
        "bool" if bare && !generic => {
            "`bool` is not `ShmSafe`: only 0 and 1 are valid, and another process may write \
             any byte.\n\
             help: use `u8` and convert with `!= 0`"
        }
        "char" if bare && !generic => {
            "`char` is not `ShmSafe`: surrogates and values above 0x10FFFF are invalid, and \
             another process may write any value.\n\
             help: use `u32` and convert with `char::from_u32`"
        }
        "str" if bare && !generic => {
            "`str` cannot be stored in shared memory.\n\
             help: use a byte array `[u8; N]` with a length field"
        }
        "Box" | "Rc" | "Arc" => {
            "heap pointers (`Box`, `Rc`, `Arc`) cannot be stored in shared memory: they hold \
             an address in this process's heap.\n\
             help: allocate in the segment and refer to the data with \
             `conduit::shm::RelPtr<T>` or `conduit::shm::Offset<T>`"
        }
        "Vec" | "VecDeque" | "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" => {
            "standard collections cannot be stored in shared memory: they hold an address in \
             this process's heap.\n\
             help: use a fixed-size array `[T; N]` with a length field, or a relocatable \
             container from `conduit::shm`"
        }
        "String" | "OsString" | "PathBuf" | "CString" => {
            "`String` and friends cannot be stored in shared memory: they hold an address in \
             this process's heap.\n\
             help: use a byte array `[u8; N]` with a length field, or a relocatable string \
             from `conduit::shm`"
        }
        "NonNull" | "AtomicPtr" => {
            "pointers cannot be stored in shared memory: the address means nothing in another \
             process, which maps the segment elsewhere.\n\
             help: use `conduit::shm::RelPtr<T>` or `conduit::shm::Offset<T>`"
        }
        "AtomicBool" if !generic => {
            "`AtomicBool` is not `ShmSafe`: only 0 and 1 are valid, and another process may \
             write any byte.\n\
             help: use `AtomicU8`"
        }
        _ => return None,
    })
}

fn generate(input: &DeriveInput, fields: &Fields) -> TokenStream2 {
    let name = &input.ident;
    let name_str = LitStr::new(&name.to_string(), name.span());

    // Every type parameter must itself be ShmSafe.
    let mut generics = input.generics.clone();
    for param in &mut generics.params {
        if let GenericParam::Type(param) = param {
            param.bounds.push(parse_quote!(::conduit::ShmSafe));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // One assertion per field that its type is ShmSafe, spanned at the
    // field's type so that "`Foo` cannot be placed in shared memory"
    // points at it. It sits inside the impl (where field types may say
    // `Self`, and type parameters carry their added bounds, so `Vec<T>` is
    // caught for every `T`), and it is the very expression the fingerprint
    // uses, so rustc reports one error per field, not two.
    let assertions = fields.iter().map(|field| {
        let ty = &field.ty;
        quote_spanned! {ty.span()=>
            let _: ::conduit::shm::TypeLayout = <#ty as ::conduit::ShmSafe>::LAYOUT;
        }
    });

    // Fold every field into the fingerprint, once with the fields' full
    // fingerprints (LAYOUT) and once with their shallow ones (for
    // `RelPtr<Self>` and the like, see `ShmSafe::SHALLOW_FINGERPRINT`).
    let full = fold_fields(
        &name_str,
        fields,
        |ty| quote!(<#ty as ::conduit::ShmSafe>::LAYOUT.fingerprint),
    );
    let shallow = fold_fields(
        &name_str,
        fields,
        |ty| quote!(<#ty as ::conduit::ShmSafe>::SHALLOW_FINGERPRINT),
    );

    // Padding-free: every field is, and their sizes add up to the
    // struct's (repr(C) puts padding only between and after fields).
    let field_types: Vec<&Type> = fields.iter().map(|f| &f.ty).collect();
    let padding_free = quote! {
        true #(&& <#field_types as ::conduit::ShmSafe>::PADDING_FREE)*
            && ::core::mem::size_of::<Self>()
                == 0 #(+ ::core::mem::size_of::<#field_types>())*
    };
    quote! {
        // SAFETY: checked by `#[derive(ShmSafe)]`: the struct is repr(C)
        // or repr(transparent) (not packed), every field is ShmSafe (so
        // holds no address and accepts every bit pattern; padding bytes
        // are never read as values), and LAYOUT uses size_of/align_of.
        #[automatically_derived]
        unsafe impl #impl_generics ::conduit::ShmSafe for #name #ty_generics #where_clause {
            const LAYOUT: ::conduit::shm::TypeLayout = {
                #(#assertions)*
                ::conduit::shm::TypeLayout {
                    name: #name_str,
                    size: ::core::mem::size_of::<Self>(),
                    align: ::core::mem::align_of::<Self>(),
                    fingerprint: #full,
                }
            };
            const SHALLOW_FINGERPRINT: u64 = #shallow;
            const PADDING_FREE: bool = #padding_free;
        }
    }
}

/// A const block hashing the struct's name, size, alignment, field count
/// and, per field, its name (index for tuple structs), offset and the
/// fingerprint `inner(field type)` yields.
fn fold_fields(
    name: &LitStr,
    fields: &Fields,
    inner: impl Fn(&Type) -> TokenStream2,
) -> TokenStream2 {
    // A name no user writes: a let binding may not shadow a const
    // parameter, and hygiene (mixed_site) does not hide it from them.
    let hash = Ident::new("__conduit_fingerprint", Span::mixed_site());
    let field_count = fields.len() as u64;
    let folds = fields.iter().enumerate().map(|(index, field)| {
        let (member, label) = match &field.ident {
            Some(ident) => (ident.to_token_stream(), ident_text(ident)),
            None => (
                Index::from(index).to_token_stream(),
                LitStr::new(&index.to_string(), Span::call_site()),
            ),
        };
        let inner = inner(&field.ty);
        quote! {
            #hash = ::conduit::shm::fingerprint::bytes(#hash, #label.as_bytes());
            #hash = ::conduit::shm::fingerprint::word(
                #hash,
                ::core::mem::offset_of!(Self, #member) as u64,
            );
            #hash = ::conduit::shm::fingerprint::word(#hash, #inner);
        }
    });
    quote! {{
        let mut #hash = ::conduit::shm::fingerprint::start();
        #hash = ::conduit::shm::fingerprint::bytes(#hash, #name.as_bytes());
        #hash = ::conduit::shm::fingerprint::word(#hash, ::core::mem::size_of::<Self>() as u64);
        #hash = ::conduit::shm::fingerprint::word(#hash, ::core::mem::align_of::<Self>() as u64);
        #hash = ::conduit::shm::fingerprint::word(#hash, #field_count);
        #(#folds)*
        #hash
    }}
}

/// A field's name as written, without the `r#` of a raw identifier.
fn ident_text(ident: &Ident) -> LitStr {
    let text = ident.to_string();
    let text = text.strip_prefix("r#").unwrap_or(&text);
    LitStr::new(text, ident.span())
}
