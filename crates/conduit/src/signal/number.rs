//! Signal numbers and their names.

use crate::sys::signal as sys;

/// A signal number that applications may use: a standard signal (1–31) or a
/// real-time signal between `SIGRTMIN` and `SIGRTMAX`.
///
/// Parse one from a name with [`str::parse`]: `"TERM"`, `"SIGTERM"`,
/// `"sigterm"`, `"15"`, `"RTMIN"`, `"SIGRTMIN+3"`, `"RTMAX-1"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

const NAMES: [(&str, i32); 31] = [
    ("HUP", sys::SIGHUP),
    ("INT", sys::SIGINT),
    ("QUIT", sys::SIGQUIT),
    ("ILL", sys::SIGILL),
    ("TRAP", sys::SIGTRAP),
    ("ABRT", sys::SIGABRT),
    ("BUS", sys::SIGBUS),
    ("FPE", sys::SIGFPE),
    ("KILL", sys::SIGKILL),
    ("USR1", sys::SIGUSR1),
    ("SEGV", sys::SIGSEGV),
    ("USR2", sys::SIGUSR2),
    ("PIPE", sys::SIGPIPE),
    ("ALRM", sys::SIGALRM),
    ("TERM", sys::SIGTERM),
    ("STKFLT", sys::SIGSTKFLT),
    ("CHLD", sys::SIGCHLD),
    ("CONT", sys::SIGCONT),
    ("STOP", sys::SIGSTOP),
    ("TSTP", sys::SIGTSTP),
    ("TTIN", sys::SIGTTIN),
    ("TTOU", sys::SIGTTOU),
    ("URG", sys::SIGURG),
    ("XCPU", sys::SIGXCPU),
    ("XFSZ", sys::SIGXFSZ),
    ("VTALRM", sys::SIGVTALRM),
    ("PROF", sys::SIGPROF),
    ("WINCH", sys::SIGWINCH),
    ("IO", sys::SIGIO),
    ("PWR", sys::SIGPWR),
    ("SYS", sys::SIGSYS),
];

impl Signal {
    /// `SIGHUP`: the terminal hung up; daemons reload configuration.
    pub const HUP: Signal = Signal(sys::SIGHUP);
    /// `SIGINT`: Ctrl-C.
    pub const INT: Signal = Signal(sys::SIGINT);
    /// `SIGQUIT`: Ctrl-\ (terminate with a core dump).
    pub const QUIT: Signal = Signal(sys::SIGQUIT);
    /// `SIGABRT`: `abort()`.
    pub const ABRT: Signal = Signal(sys::SIGABRT);
    /// `SIGKILL`: cannot be caught, blocked or ignored.
    pub const KILL: Signal = Signal(sys::SIGKILL);
    /// `SIGUSR1`: application-defined.
    pub const USR1: Signal = Signal(sys::SIGUSR1);
    /// `SIGUSR2`: application-defined.
    pub const USR2: Signal = Signal(sys::SIGUSR2);
    /// `SIGPIPE`: write to a pipe with no reader (ignored by Rust programs).
    pub const PIPE: Signal = Signal(sys::SIGPIPE);
    /// `SIGALRM`: `alarm()` expired.
    pub const ALRM: Signal = Signal(sys::SIGALRM);
    /// `SIGTERM`: polite request to terminate.
    pub const TERM: Signal = Signal(sys::SIGTERM);
    /// `SIGCHLD`: a child stopped or exited (coalesces: one for many).
    pub const CHLD: Signal = Signal(sys::SIGCHLD);
    /// `SIGCONT`: continue if stopped.
    pub const CONT: Signal = Signal(sys::SIGCONT);
    /// `SIGSTOP`: stop; cannot be caught, blocked or ignored.
    pub const STOP: Signal = Signal(sys::SIGSTOP);
    /// `SIGTSTP`: Ctrl-Z.
    pub const TSTP: Signal = Signal(sys::SIGTSTP);
    /// `SIGWINCH`: the terminal changed size.
    pub const WINCH: Signal = Signal(sys::SIGWINCH);

    /// The signal with number `raw`, if applications may use it (see
    /// `sys::signal::is_valid`).
    pub fn from_raw(raw: i32) -> Option<Signal> {
        sys::is_valid(raw).then_some(Signal(raw))
    }

    /// The real-time signal `SIGRTMIN + n`, if it exists (`n` ≤
    /// `SIGRTMAX - SIGRTMIN`, 30 with glibc).
    pub fn realtime(n: u32) -> Option<Signal> {
        let n = i32::try_from(n).ok()?;
        Signal::from_raw(sys::rt_min().checked_add(n)?)
    }

    /// The signal number.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// Whether this is a real-time signal (queued, ordered, carries a value).
    pub fn is_realtime(self) -> bool {
        self.0 >= sys::rt_min()
    }

    /// Whether a handler or signalfd can receive it (all but `SIGKILL` and
    /// `SIGSTOP`).
    pub fn can_be_caught(self) -> bool {
        self.0 != sys::SIGKILL && self.0 != sys::SIGSTOP
    }

    /// The conventional name: `"SIGTERM"`, `"SIGRTMIN+3"`.
    pub fn name(self) -> String {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            format!("SIG{name}")
        } else if self.0 == sys::rt_min() {
            "SIGRTMIN".to_owned()
        } else {
            format!("SIGRTMIN+{}", self.0 - sys::rt_min())
        }
    }
}

impl core::fmt::Display for Signal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name())
    }
}

impl core::fmt::Debug for Signal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// A string that names no usable signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown signal {0:?}: use a name such as TERM, SIGUSR1, RTMIN+2, or a number 1-31 or SIGRTMIN..=SIGRTMAX"
)]
pub struct ParseSignalError(pub String);

impl core::str::FromStr for Signal {
    type Err = ParseSignalError;

    fn from_str(text: &str) -> Result<Signal, ParseSignalError> {
        let err = || ParseSignalError(text.to_owned());
        let trimmed = text.trim();
        if let Ok(n) = trimmed.parse::<i32>() {
            return Signal::from_raw(n).ok_or_else(err);
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().find(|(s, _)| *s == name) {
            return Ok(Signal(*n));
        }
        let rt = |base: i32, rest: &str| -> Option<Signal> {
            let offset: i32 = if rest.is_empty() {
                0
            } else if let Some(d) = rest.strip_prefix('+') {
                d.parse().ok()?
            } else if let Some(d) = rest.strip_prefix('-') {
                -d.parse::<i32>().ok()?
            } else {
                return None;
            };
            let n = base.checked_add(offset)?;
            (sys::rt_min()..=sys::rt_max())
                .contains(&n)
                .then_some(Signal(n))
        };
        let found = if let Some(rest) = name.strip_prefix("RTMIN") {
            rt(sys::rt_min(), rest)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            rt(sys::rt_max(), rest)
        } else {
            None
        };
        found.ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_realtime() {
        assert_eq!("TERM".parse(), Ok(Signal::TERM));
        assert_eq!("sigusr1".parse(), Ok(Signal::USR1));
        assert_eq!(" 15 ".parse(), Ok(Signal::TERM));
        let rt2: Signal = "SIGRTMIN+2".parse().unwrap();
        assert_eq!(rt2, Signal::realtime(2).unwrap());
        assert_eq!(rt2.name(), "SIGRTMIN+2");
        let max: Signal = "RTMAX".parse().unwrap();
        assert_eq!(max.as_raw(), sys::rt_max());
        assert!("RTMAX+1".parse::<Signal>().is_err());
        assert!("SIGFOO".parse::<Signal>().is_err());
        assert!("0".parse::<Signal>().is_err());
        assert!("32".parse::<Signal>().is_err(), "glibc-reserved");
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
        assert!(!Signal::KILL.can_be_caught());
        assert!(rt2.is_realtime() && !Signal::USR1.is_realtime());
    }
}
