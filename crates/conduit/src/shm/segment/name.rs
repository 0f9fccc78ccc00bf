//! Domains and segment names: what is allowed, and the POSIX object name
//! (`/conduit.<domain>.<name>`) they make.

/// Environment variable that overrides the default domain.
pub const DOMAIN_ENV: &str = "CONDUIT_DOMAIN";
/// Maximum length of a domain.
pub const MAX_DOMAIN_LEN: usize = 64;
/// Maximum length of a segment name inside a domain.
pub const MAX_NAME_LEN: usize = 180;

/// An invalid domain or segment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// "domain" or "segment name".
        what: &'static str,
    },
    /// The name is too long.
    #[error("{what} {name:?} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// "domain" or "segment name".
        what: &'static str,
        /// The offending name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a character outside the allowed set.
    #[error(
        "{what} {name:?} contains {bad:?}; allowed are ASCII letters, digits, '_' and '-'{dot}",
        dot = if *what == "domain" { "" } else { " and '.' (not first)" }
    )]
    InvalidCharacter {
        /// "domain" or "segment name".
        what: &'static str,
        /// The offending name.
        name: String,
        /// The first bad character.
        bad: char,
    },
    /// A name read from the environment is not valid UTF-8 (so it cannot
    /// be a name at all).
    #[error("{what} {value:?} is not valid UTF-8")]
    NotUtf8 {
        /// Where it came from ("$CONDUIT_DOMAIN").
        what: &'static str,
        /// The value as read.
        value: std::ffi::OsString,
    },
}

/// Checks a domain: 1 to 64 bytes of `[A-Za-z0-9_-]`.
pub fn validate_domain(domain: &str) -> Result<(), NameError> {
    validate("domain", domain, MAX_DOMAIN_LEN, false)
}

/// Checks a segment name: 1 to 180 bytes of `[A-Za-z0-9_.-]`, not
/// starting with `.`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    validate("segment name", name, MAX_NAME_LEN, true)
}

fn validate(what: &'static str, s: &str, max: usize, dots: bool) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            what,
            name: s.to_owned(),
            len: s.len(),
            max,
        });
    }
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.' && i > 0);
        if !ok {
            return Err(NameError::InvalidCharacter {
                what,
                name: s.to_owned(),
                bad: c,
            });
        }
    }
    Ok(())
}

/// The domain used when none is given: `$CONDUIT_DOMAIN`, else `default`.
///
/// A value that is not valid UTF-8 is ignored here (`default` is used);
/// [`try_default_domain`] reports it instead, and is what the builders
/// and [`Domain::from_env`](crate::Domain::from_env) use.
pub fn default_domain() -> String {
    try_default_domain().unwrap_or_else(|_| "default".to_owned())
}

/// The domain used when none is given: `$CONDUIT_DOMAIN` if it is set and
/// not empty, else `default`; [`NameError::NotUtf8`] if `$CONDUIT_DOMAIN`
/// is not valid UTF-8.
///
/// The value is not otherwise checked: [`validate_domain`] (or
/// [`Domain::new`](crate::Domain::new)) does that.
pub fn try_default_domain() -> Result<String, NameError> {
    match std::env::var_os(DOMAIN_ENV) {
        None => Ok("default".to_owned()),
        Some(value) if value.is_empty() => Ok("default".to_owned()),
        Some(value) => value.into_string().map_err(|value| NameError::NotUtf8 {
            what: "$CONDUIT_DOMAIN",
            value,
        }),
    }
}

/// The POSIX object name of segment `name` in `domain`:
/// `/conduit.<domain>.<name>`.
pub fn object_name(domain: &str, name: &str) -> Result<String, NameError> {
    validate_domain(domain)?;
    validate_name(name)?;
    Ok(format!("/conduit.{domain}.{name}"))
}
