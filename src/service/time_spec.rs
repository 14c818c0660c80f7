//! How people write times and durations to the appliance: RFC 3339 times
//! (`2026-11-02T09:41:00Z`, `2026-11-02 09:41:00.5+02:00`), times relative
//! to now (`now`, `-15m`, `2h ago`, `1h30m ago`), and durations (`90s`,
//! `15m`, `7d`, or a plain number of seconds); and how the appliance prints
//! a time (RFC 3339 in UTC, nanoseconds when there are any).
//!
//! Invariant: every accepted text maps to exactly one instant in whole
//! nanoseconds since the Unix epoch (RFC 3339 times outside what a `u64`
//! holds, before 1970 or after 2554, saturate to its ends, so they are
//! refused later as before retention or in the future); anything else is a
//! [`TimeError`] that quotes the text, never a guess and never a panic.

use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why a time or a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("malformed time {text:?}: {why}")]
    Malformed { text: String, why: String },
    #[error("malformed duration {text:?}: {why}")]
    MalformedDuration { text: String, why: String },
    #[error("time {0:?} is before 1970")]
    OutOfRange(String),
}

/// Nanoseconds since the Unix epoch, from the system clock.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// True when `text` is written like a time rather than like a label: an
/// RFC 3339 date (`dddd-`), a relative time (`-15m`, `... ago`) or `now`.
pub fn looks_like_time(text: &str) -> bool {
    let t = text.trim();
    let b = t.as_bytes();
    t.eq_ignore_ascii_case("now")
        || t.starts_with('-')
        || t.to_ascii_lowercase().ends_with(" ago")
        || (b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
}

/// Parses a time: RFC 3339, `now`, or relative to `now_ns` (`-15m`,
/// `2h ago`). Returns nanoseconds since the Unix epoch.
pub fn parse_time(text: &str, now_ns: u64) -> Result<u64, TimeError> {
    let t = text.trim();
    let malformed = |why: &str| TimeError::Malformed {
        text: text.to_string(),
        why: why.to_string(),
    };
    if t.is_empty() {
        return Err(malformed("empty"));
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ns);
    }
    let lower = t.to_ascii_lowercase();
    let relative = if let Some(rest) = lower.strip_suffix(" ago") {
        Some(rest.trim())
    } else {
        lower.strip_prefix('-').map(str::trim)
    };
    if let Some(rest) = relative {
        let back = parse_span(rest).map_err(|why| malformed(&why))?;
        let back =
            u64::try_from(back.as_nanos()).map_err(|_| TimeError::OutOfRange(text.into()))?;
        return now_ns
            .checked_sub(back)
            .ok_or_else(|| TimeError::OutOfRange(text.to_string()));
    }
    // RFC 3339 allows a space between date and time; `time` wants the T.
    let mut normalised = t.to_string();
    if normalised.len() > 10 && normalised.as_bytes()[10] == b' ' {
        normalised.replace_range(10..11, "T");
    }
    let parsed = OffsetDateTime::parse(&normalised, &Rfc3339).map_err(|e| {
        let has_offset = normalised.ends_with(['Z', 'z'])
            || normalised
                .get(19..)
                .is_some_and(|tail| tail.contains(['+', '-']));
        if normalised.contains('T') && !has_offset {
            malformed("add a UTC offset (Z or +02:00) — or use a relative time like -15m")
        } else {
            malformed(&format!(
                "{e} (use RFC 3339 like 2026-11-02T09:41:00Z, or -15m, 2h ago)"
            ))
        }
    })?;
    let ns = parsed.unix_timestamp_nanos();
    Ok(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

/// Parses a duration: `90s`, `15m`, `1h30m`, `7d`, `2 weeks`, `500ms`, or a
/// plain number of seconds (`3600`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, TimeError> {
    let t = text.trim();
    let malformed = |why: String| TimeError::MalformedDuration {
        text: text.to_string(),
        why,
    };
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| malformed("a non-negative number of seconds".into()));
    }
    parse_span(&t.to_ascii_lowercase()).map_err(malformed)
}

/// `1h30m`, `15 min`, `2 hours 5 minutes`: number-unit pairs, summed.
fn parse_span(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("no amount given".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let amount: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..digits]))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let secs_per_unit = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => return Err(format!("a unit after {amount} (s, m, h, d, w)")),
            other => return Err(format!("unknown unit {other:?} (s, m, h, d, w)")),
        };
        let part = Duration::try_from_secs_f64(amount * secs_per_unit)
            .map_err(|_| "too long".to_string())?;
        total = total.checked_add(part).ok_or("too long")?;
        rest = rest[unit_len..].trim_start_matches([' ', ',']);
    }
    Ok(total)
}

/// RFC 3339 in UTC: `2026-11-02T09:41:00Z`, with the fraction when not whole.
pub fn format_time(ns: u64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
    {
        Some(s) => s,
        None => format!("@{ns}ns"),
    }
}

/// A short human duration: `42s`, `3m12s`, `5h4m`, `2d3h`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 if d.subsec_millis() > 0 => format!("{}ms", d.subsec_millis()),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_793_612_460_000_000_000; // 2026-11-02T09:41:00Z

    #[test]
    fn rfc3339_with_offsets_fractions_and_a_space() {
        assert_eq!(parse_time("2026-11-02T09:41:00Z", 0).unwrap(), NOW);
        assert_eq!(parse_time("2026-11-02T11:41:00+02:00", 0).unwrap(), NOW);
        assert_eq!(parse_time("2026-11-02 09:41:00z", 0).unwrap(), NOW);
        assert_eq!(
            parse_time("2026-11-02T09:41:00.000000250Z", 0).unwrap(),
            NOW + 250
        );
        assert_eq!(format_time(NOW), "2026-11-02T09:41:00Z");
        assert_eq!(format_time(NOW + 250), "2026-11-02T09:41:00.00000025Z");
        assert_eq!(parse_time(&format_time(NOW + 1), 0).unwrap(), NOW + 1);
    }

    #[test]
    fn relative_forms() {
        assert_eq!(parse_time("now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("-15m", NOW).unwrap(), NOW - 900 * 1_000_000_000);
        assert_eq!(
            parse_time("2h ago", NOW).unwrap(),
            NOW - 7200 * 1_000_000_000
        );
        assert_eq!(
            parse_time("1h30m ago", NOW).unwrap(),
            NOW - 5400 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2 hours 5 minutes ago", NOW).unwrap(),
            NOW - 7500 * 1_000_000_000
        );
        assert_eq!(parse_time("- 10s", NOW).unwrap(), NOW - 10_000_000_000);
    }

    #[test]
    fn malformed_times_are_refused_with_the_text() {
        for bad in [
            "",
            "yesterday",
            "2026-13-45T09:41:00Z",
            "2026-11-02T09:41:00",
            "-15 parsecs",
            "-m",
            "ago",
            "2026-11-02",
        ] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(matches!(e, TimeError::Malformed { .. }), "{bad:?}: {e}");
            assert!(!e.to_string().contains('\n'));
        }
        let e = parse_time("2026-11-02T09:41:00", NOW).unwrap_err();
        assert!(e.to_string().contains("UTC offset"), "{e}");
        assert_eq!(parse_time("1969-12-31T23:59:59Z", NOW), Ok(0));
        assert_eq!(parse_time("2999-01-01T00:00:00Z", NOW), Ok(u64::MAX));
        assert!(matches!(
            parse_time("-100000w", NOW),
            Err(TimeError::OutOfRange(_))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("2 weeks").unwrap(),
            Duration::from_secs(1_209_600)
        );
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "-5", "5 parsecs", "h", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_secs(90_000)), "1d01h");
    }

    #[test]
    fn what_looks_like_a_time() {
        for t in ["now", "-15m", "2h ago", "2026-11-02T09:41:00Z", "2026-13"] {
            assert!(looks_like_time(t), "{t}");
        }
        for l in ["before-upgrade", "v1", "2026", "nightly-2026"] {
            assert!(!looks_like_time(l), "{l}");
        }
    }
}
