//! The static configuration of a service: written once by the creator
//! before the segment becomes ready, never changed, read and validated by
//! every opener (another process may have written anything).
//!
//! It starts at offset 64 of the data area, as `u64` words. The first 34
//! words are the same for every pattern:
//!
//! | word | meaning |
//! |---|---|
//! | 0 | the pattern's format number (a reader refuses one it does not know) |
//! | 1 | bytes of the service name |
//! | 2..34 | the service name, UTF-8, little-endian in 32 words |
//!
//! The pattern owns the words after them (types, QoS, limits): see
//! `pubsub::layout` and `event::layout`. A type is recorded by
//! [`TypeDesc::write`] as `name length, name words, size, align,
//! fingerprint`.

// Plain std atomics: written once before the segment is ready, read after.
use std::sync::atomic::{AtomicU64, Ordering};

use super::ServiceError;
use super::registry::LINE;
use crate::shm::words::{load_str, store_str};
use crate::shm::{Region, TypeLayout};

/// Offset of the configuration in the data area.
pub(crate) const CONFIG_OFFSET: usize = LINE;
/// Word of the format number.
pub(crate) const W_FORMAT: usize = 0;
/// Word of the name length; the name follows in [`NAME_WORDS`] words.
const W_NAME_LEN: usize = 1;
/// Words of the name.
const NAME_WORDS: usize = 32;
/// The first word a pattern may use.
pub(crate) const W_PATTERN: usize = 2 + NAME_WORDS;

/// The `n` configuration words of the segment data area `region`.
pub(crate) fn config_words(region: &Region, n: usize) -> Option<&[AtomicU64]> {
    let p = region.resolve_slice::<AtomicU64>(CONFIG_OFFSET, n).ok()?;
    // SAFETY: in bounds and aligned (resolve_slice); atomics only; the
    // slice lives no longer than the caller's borrow of the region's
    // segment.
    Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), n) })
}

/// Zeroes the configuration words, then writes the format and the name.
pub(crate) fn write_head(words: &[AtomicU64], format: u64, name: &str) {
    words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
    words[W_FORMAT].store(format, Ordering::Relaxed);
    store_str(&words[2..W_PATTERN], &words[W_NAME_LEN], name);
}

/// Checks the format word and returns the service name.
pub(crate) fn read_head(words: &[AtomicU64], format: u64) -> Result<String, String> {
    let found = words[W_FORMAT].load(Ordering::Relaxed);
    if found != format {
        return Err(format!("unknown service format {found:#x}"));
    }
    Ok(load_str(&words[2..W_PATTERN], &words[W_NAME_LEN]))
}

/// Writes a static configuration word by word: the head (format, name),
/// then each of the pattern's values at the next word. The order of the
/// calls *is* the pattern's layout (listed, word by word, in its layout
/// module's docs, its `W_*` constants, and checked against them by a
/// `debug_assert` on [`position`](Self::position) after the last value).
pub(crate) struct ConfigWriter<'a> {
    words: &'a [AtomicU64],
    next: usize,
}

impl<'a> ConfigWriter<'a> {
    /// Zeroes the `n` configuration words of `region`, writes the head
    /// and stands at [`W_PATTERN`].
    pub(crate) fn new(
        region: &'a Region,
        n: usize,
        format: u64,
        name: &str,
    ) -> Result<ConfigWriter<'a>, String> {
        let words = config_words(region, n).ok_or("segment too small for its configuration")?;
        write_head(words, format, name);
        Ok(ConfigWriter {
            words,
            next: W_PATTERN,
        })
    }

    /// The next word is `v`.
    pub(crate) fn word(&mut self, v: u64) -> &mut Self {
        self.words[self.next].store(v, Ordering::Relaxed);
        self.next += 1;
        self
    }

    /// The next word is the count `v`.
    pub(crate) fn count(&mut self, v: usize) -> &mut Self {
        self.word(v as u64)
    }

    /// The next [`TypeDesc::words`]`(name_words)` words describe `t`.
    pub(crate) fn type_desc(&mut self, t: &TypeDesc, name_words: usize) -> &mut Self {
        let end = self.next + TypeDesc::words(name_words);
        t.write(&self.words[self.next..end], name_words);
        self.next = end;
        self
    }

    /// The word the next value goes to (for the patterns' checks that
    /// the calls match their documented word indices).
    pub(crate) fn position(&self) -> usize {
        self.next
    }
}

/// Reads a static configuration written by [`ConfigWriter`], in the same
/// order; every value read from another process's words is checked.
pub(crate) struct ConfigReader<'a> {
    words: &'a [AtomicU64],
    next: usize,
}

impl<'a> ConfigReader<'a> {
    /// Checks the format of the `n` configuration words of `region` and
    /// reads the name; the reader stands at [`W_PATTERN`].
    pub(crate) fn new(
        region: &'a Region,
        n: usize,
        format: u64,
    ) -> Result<(ConfigReader<'a>, String), String> {
        let words = config_words(region, n).ok_or("segment too small for its configuration")?;
        let name = read_head(words, format)?;
        let reader = ConfigReader {
            words,
            next: W_PATTERN,
        };
        Ok((reader, name))
    }

    /// The next word.
    pub(crate) fn word(&mut self) -> u64 {
        let v = self.words[self.next].load(Ordering::Relaxed);
        self.next += 1;
        v
    }

    /// The next word, a count of at most `max`.
    pub(crate) fn count(&mut self, max: usize) -> Result<usize, String> {
        let i = self.next;
        let v = self.word();
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or(format!("config word {i} out of range: {v}"))
    }

    /// The next type descriptor ([`TypeDesc::read`]).
    pub(crate) fn type_desc(&mut self, name_words: usize, what: &str) -> Result<TypeDesc, String> {
        let end = self.next + TypeDesc::words(name_words);
        let t = TypeDesc::read(&self.words[self.next..end], name_words, what);
        self.next = end;
        t
    }

    /// The word the next value comes from.
    pub(crate) fn position(&self) -> usize {
        self.next
    }
}

/// A type as recorded in a static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeDesc {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) fingerprint: u64,
}

impl std::fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (size {}, align {}, fingerprint {:016x})",
            self.name, self.size, self.align, self.fingerprint
        )
    }
}

impl TypeDesc {
    /// The descriptor of a Rust type.
    pub(crate) fn of(layout: &TypeLayout) -> TypeDesc {
        TypeDesc {
            name: layout.name.to_owned(),
            size: layout.size as u64,
            align: layout.align as u64,
            fingerprint: layout.fingerprint,
        }
    }

    /// Words a descriptor with `name_words` words of name takes.
    pub(crate) const fn words(name_words: usize) -> usize {
        name_words + 4
    }

    /// Writes the descriptor into `w` (`TypeDesc::words(name_words)`
    /// words; a longer name is truncated).
    pub(crate) fn write(&self, w: &[AtomicU64], name_words: usize) {
        store_str(&w[1..1 + name_words], &w[0], &self.name);
        w[1 + name_words].store(self.size, Ordering::Relaxed);
        w[2 + name_words].store(self.align, Ordering::Relaxed);
        w[3 + name_words].store(self.fingerprint, Ordering::Relaxed);
    }

    /// Reads a descriptor written by [`write`](Self::write) and checks
    /// its alignment; `what` names it in the error.
    pub(crate) fn read(w: &[AtomicU64], name_words: usize, what: &str) -> Result<TypeDesc, String> {
        let t = TypeDesc {
            name: load_str(&w[1..1 + name_words], &w[0]),
            size: w[1 + name_words].load(Ordering::Relaxed),
            align: w[2 + name_words].load(Ordering::Relaxed),
            fingerprint: w[3 + name_words].load(Ordering::Relaxed),
        };
        if t.align == 0 || !t.align.is_power_of_two() || t.align > 4096 {
            return Err(format!("{what} alignment {} is invalid", t.align));
        }
        Ok(t)
    }

    /// The public view, for tools.
    pub(crate) fn info(&self) -> TypeLayoutInfo {
        TypeLayoutInfo {
            name: self.name.clone(),
            size: self.size,
            align: self.align,
            fingerprint: self.fingerprint,
        }
    }
}

/// A type's layout as recorded in a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeLayoutInfo {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its alignment.
    pub align: u64,
    /// Its layout fingerprint.
    pub fingerprint: u64,
}

impl TypeLayoutInfo {
    /// The length `n` if this is the layout of `[u8; n]` (by its
    /// fingerprint): tools show and take such values as bytes.
    pub fn byte_array_len(&self) -> Option<usize> {
        let n = usize::try_from(self.size).ok()?;
        let u8_fingerprint = <u8 as crate::shm::ShmSafe>::LAYOUT.fingerprint;
        (self.name == "array"
            && self.align == 1
            && self.fingerprint == crate::shm::shm_safe::array_fingerprint(u8_fingerprint, n))
        .then_some(n)
    }
}

/// The configuration values an opener set explicitly, by the name of the
/// builder method that set them: only those are checked against an
/// existing service ([`Compat`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Requested {
    all: bool,
    names: Vec<&'static str>,
}

impl Requested {
    /// The opener set value `name`.
    pub(crate) fn insert(&mut self, name: &'static str) {
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    /// Whether the opener set value `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.all || self.names.contains(&name)
    }

    /// Every value requested (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn all() -> Requested {
        Requested {
            all: true,
            names: Vec::new(),
        }
    }
}

/// The check of an existing service's configuration against an opener's
/// (`PatternConfig::check_compatible`), written once for every pattern:
/// the types must be equal; each value the opener asked for must be
/// offered ([`Compat::at_least`], [`Compat::equal`]); every shortfall is
/// named in one [`ServiceError::IncompatibleConfig`].
pub(crate) struct Compat<'a> {
    name: &'a str,
    requested: &'a Requested,
    bad: Vec<(String, String)>,
}

impl<'a> Compat<'a> {
    /// Starts the check of service `name` (a pattern with one type or
    /// none).
    pub(crate) fn new(name: &'a str, requested: &'a Requested) -> Compat<'a> {
        Compat {
            name,
            requested,
            bad: Vec::new(),
        }
    }

    /// Starts the check of service `name`, whose types are those the
    /// opener asked for if `same`; if not, [`ServiceError::IncompatibleType`]
    /// with both sides' types as `kinds` gives them (for example
    /// "payload u64 with user header NoHeader").
    pub(crate) fn types(
        name: &'a str,
        requested: &'a Requested,
        same: bool,
        kinds: impl FnOnce() -> (String, String),
    ) -> Result<Compat<'a>, ServiceError> {
        if !same {
            let (existing, requested) = kinds();
            return Err(ServiceError::IncompatibleType {
                name: name.to_owned(),
                existing,
                requested,
            });
        }
        Ok(Compat::new(name, requested))
    }

    /// If the opener set `what`: the service must offer `have ≥ want`.
    pub(crate) fn at_least(&mut self, what: &str, have: usize, want: usize) {
        if self.requested.has(what) && have < want {
            self.bad
                .push((format!("{what} {have}"), format!("{what} >= {want}")));
        }
    }

    /// If the opener set `what`: the service's must be `want`.
    pub(crate) fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, have: T, want: T) {
        if self.requested.has(what) && have != want {
            self.bad
                .push((format!("{what} {have:?}"), format!("{what} {want:?}")));
        }
    }

    /// Records a shortfall the two methods above do not express.
    pub(crate) fn mismatch(&mut self, existing: String, requested: String) {
        self.bad.push((existing, requested));
    }

    /// `Ok` if nothing was short, else every shortfall in one error.
    pub(crate) fn finish(self) -> Result<(), ServiceError> {
        if self.bad.is_empty() {
            return Ok(());
        }
        let (existing, requested): (Vec<_>, Vec<_>) = self.bad.into_iter().unzip();
        Err(ServiceError::IncompatibleConfig {
            name: self.name.to_owned(),
            existing: existing.join(", "),
            requested: requested.join(", "),
        })
    }
}
