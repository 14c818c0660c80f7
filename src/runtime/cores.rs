//! Core lists and pinning: what `--cores` means and how a thread is tied to
//! one core.
//!
//! A core list is written as numbers (`0,1`), ranges (`0-3`, mixable with
//! numbers: `0,2-3`) or a hex mask (`0x3`, as SPDK's `-m`). Parsing is pure
//! ([`parse_core_list`]); [`resolve_cores`] also checks every core against the
//! set this process may run on (`sched_getaffinity`).
//!
//! Invariant kept: a list returned by either function is non-empty, holds no
//! core twice and no core at or above [`MAX_CORES`]; after [`resolve_cores`]
//! every core is one the process may be pinned to.

use std::io;

/// Cores a list may name: the size of the kernel's `cpu_set_t` (`CPU_SETSIZE`).
pub const MAX_CORES: usize = libc::CPU_SETSIZE as usize;

/// Why a core list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreListError {
    #[error("the core list is empty")]
    Empty,
    #[error("`{item}` is not a core number, a range like 0-3 or a hex mask like 0x3")]
    Syntax { item: String },
    #[error("core range `{item}` runs backwards")]
    BackwardRange { item: String },
    #[error("core {core} is listed twice")]
    Duplicate { core: usize },
    #[error("core {core} is beyond the largest core number this build supports ({max})")]
    TooLarge { core: usize, max: usize },
    #[error("core {core} is not available to this process (available: {available:?})")]
    Unavailable { core: usize, available: Vec<usize> },
    #[error("cannot read this process's CPU affinity: {message}")]
    Affinity { message: String },
}

/// Parses a core list (see the module documentation) without checking that
/// the cores exist. Order is kept as written (ranges ascend; a mask lists its
/// bits from the lowest).
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, CoreListError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CoreListError::Empty);
    }
    let mut cores = Vec::new();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        parse_mask(text, hex, &mut cores)?;
    } else {
        for item in text.split(',') {
            parse_item(item.trim(), &mut cores)?;
        }
    }
    if cores.is_empty() {
        return Err(CoreListError::Empty);
    }
    let mut seen = vec![false; MAX_CORES];
    for &core in &cores {
        assert!(core < MAX_CORES, "parse_item/parse_mask bound every core");
        if std::mem::replace(&mut seen[core], true) {
            return Err(CoreListError::Duplicate { core });
        }
    }
    Ok(cores)
}

fn parse_core(item: &str, text: &str) -> Result<usize, CoreListError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CoreListError::Syntax {
            item: item.to_string(),
        });
    }
    let core: usize = text.parse().map_err(|_| CoreListError::TooLarge {
        core: usize::MAX,
        max: MAX_CORES - 1,
    })?;
    if core >= MAX_CORES {
        return Err(CoreListError::TooLarge {
            core,
            max: MAX_CORES - 1,
        });
    }
    Ok(core)
}

fn parse_item(item: &str, cores: &mut Vec<usize>) -> Result<(), CoreListError> {
    match item.split_once('-') {
        None => cores.push(parse_core(item, item)?),
        Some((low, high)) => {
            let low = parse_core(item, low.trim())?;
            let high = parse_core(item, high.trim())?;
            if high < low {
                return Err(CoreListError::BackwardRange {
                    item: item.to_string(),
                });
            }
            cores.extend(low..=high);
        }
    }
    Ok(())
}

fn parse_mask(item: &str, hex: &str, cores: &mut Vec<usize>) -> Result<(), CoreListError> {
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CoreListError::Syntax {
            item: item.to_string(),
        });
    }
    // Digits from the lowest: digit i holds cores 4i..4i+3.
    for (digit_index, digit) in hex.bytes().rev().enumerate() {
        let nibble = (digit as char).to_digit(16).unwrap_or(0) as usize;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                let core = digit_index * 4 + bit;
                if core >= MAX_CORES {
                    return Err(CoreListError::TooLarge {
                        core,
                        max: MAX_CORES - 1,
                    });
                }
                cores.push(core);
            }
        }
    }
    Ok(())
}

/// Parses `text` and checks every core against [`available_cores`].
pub fn resolve_cores(text: &str) -> Result<Vec<usize>, CoreListError> {
    let cores = parse_core_list(text)?;
    let available = available_cores().map_err(|e| CoreListError::Affinity {
        message: e.to_string(),
    })?;
    if let Some(&core) = cores.iter().find(|c| !available.contains(c)) {
        return Err(CoreListError::Unavailable { core, available });
    }
    Ok(cores)
}

/// The cores the calling thread may run on (`sched_getaffinity`), ascending.
/// Called from the main thread before any pinning, that is the process's set.
pub fn available_cores() -> io::Result<Vec<usize>> {
    current_thread_affinity()
}

/// The calling thread's CPU affinity, ascending.
pub fn current_thread_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size matches the set passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads a bit of the set filled in above; core < CPU_SETSIZE.
    let cores: Vec<usize> = (0..MAX_CORES)
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect();
    assert!(
        !cores.is_empty(),
        "the kernel never returns an empty affinity"
    );
    Ok(cores)
}

/// Pins the calling thread to `core` alone.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= MAX_CORES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("core {core} is beyond CPU_SETSIZE"),
        ));
    }
    // SAFETY: as in current_thread_affinity; CPU_SET writes one bit below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; the size matches the set passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_masks() {
        assert_eq!(parse_core_list("0,1"), Ok(vec![0, 1]));
        assert_eq!(parse_core_list(" 3 "), Ok(vec![3]));
        assert_eq!(parse_core_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_core_list("5,0-1"), Ok(vec![5, 0, 1]));
        assert_eq!(parse_core_list("0x3"), Ok(vec![0, 1]));
        assert_eq!(parse_core_list("0XA"), Ok(vec![1, 3]));
        assert_eq!(parse_core_list("0x100000000"), Ok(vec![32]));
    }

    #[test]
    fn bad_lists_get_typed_errors() {
        assert_eq!(parse_core_list(""), Err(CoreListError::Empty));
        assert_eq!(parse_core_list("0x0"), Err(CoreListError::Empty));
        for bad in ["a", "1,,2", "-1", "1-", "0x", "0xg", "1.5", "+1", "0-1-2"] {
            assert!(
                matches!(parse_core_list(bad), Err(CoreListError::Syntax { .. })),
                "{bad:?} accepted: {:?}",
                parse_core_list(bad)
            );
        }
        assert!(matches!(
            parse_core_list("3-1"),
            Err(CoreListError::BackwardRange { .. })
        ));
        assert_eq!(
            parse_core_list("0,1,0"),
            Err(CoreListError::Duplicate { core: 0 })
        );
        assert_eq!(
            parse_core_list("0-2,1"),
            Err(CoreListError::Duplicate { core: 1 })
        );
        assert!(matches!(
            parse_core_list("99999999999999999999999"),
            Err(CoreListError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_core_list("1024"),
            Err(CoreListError::TooLarge { core: 1024, .. })
        ));
        let long_mask = format!("0x1{}", "0".repeat(300));
        assert!(matches!(
            parse_core_list(&long_mask),
            Err(CoreListError::TooLarge { .. })
        ));
    }

    #[test]
    fn resolve_checks_the_affinity() {
        let available = available_cores().expect("affinity");
        let first = available[0];
        assert_eq!(resolve_cores(&first.to_string()), Ok(vec![first]));
        let missing = (0..MAX_CORES)
            .find(|c| !available.contains(c))
            .expect("some core is not available");
        assert_eq!(
            resolve_cores(&missing.to_string()),
            Err(CoreListError::Unavailable {
                core: missing,
                available
            })
        );
    }

    #[test]
    fn pinning_a_thread() {
        let available = available_cores().expect("affinity");
        let core = *available.last().expect("one core");
        let seen = std::thread::spawn(move || {
            pin_current_thread(core).expect("pin");
            current_thread_affinity().expect("affinity")
        })
        .join()
        .expect("thread");
        assert_eq!(seen, vec![core]);
        assert!(pin_current_thread(MAX_CORES).is_err());
    }
}
