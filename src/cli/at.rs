//! `--at` as people type it: `now`, a seq (`1234`), a time (RFC 3339 or
//! relative: `2026-11-02T09:41:00Z`, `-15m`, `2h ago`) or a bookmark label
//! (`before-upgrade`). A prefix settles any doubt: `seq:`, `time:`,
//! `label:` (`label:2026-release`).
//!
//! Invariant: text written like a time is sent as a time, never as a label,
//! so a mistyped time is reported as a malformed time by the service.

use crate::service::appliance::points::AtSpec;
use crate::service::time_spec::looks_like_time;

/// The point request for `--at text`.
pub fn parse_at(text: &str) -> Result<AtSpec, String> {
    let t = text.trim();
    let spec = |seq, time, label| AtSpec {
        seq,
        time,
        time_ns: None,
        label,
    };
    if t.is_empty() {
        return Err("--at: give a seq, a time (RFC 3339, -15m, 2h ago) or a label".into());
    }
    if let Some(rest) = t.strip_prefix("seq:") {
        let seq = rest
            .trim()
            .parse()
            .map_err(|_| format!("--at {text:?}: seq: takes a whole number"))?;
        return Ok(spec(Some(seq), None, None));
    }
    if let Some(rest) = t.strip_prefix("time:") {
        return Ok(spec(None, Some(rest.trim().to_string()), None));
    }
    if let Some(rest) = t.strip_prefix("label:") {
        return Ok(spec(None, None, Some(rest.to_string())));
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(AtSpec::default());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let seq = t
            .parse()
            .map_err(|_| format!("--at {text:?}: seq too large"))?;
        return Ok(spec(Some(seq), None, None));
    }
    if looks_like_time(t) {
        return Ok(spec(None, Some(t.to_string()), None));
    }
    Ok(spec(None, None, Some(t.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_times_labels_and_prefixes() {
        assert_eq!(parse_at("42").unwrap().seq, Some(42));
        assert_eq!(parse_at("seq:7").unwrap().seq, Some(7));
        assert_eq!(parse_at("now").unwrap(), AtSpec::default());
        for t in [
            "-15m",
            "2h ago",
            "2026-11-02T09:41:00Z",
            "2026-13-99T00:00:00Z",
        ] {
            assert_eq!(parse_at(t).unwrap().time.as_deref(), Some(t), "{t}");
        }
        assert_eq!(
            parse_at("before-upgrade").unwrap().label.as_deref(),
            Some("before-upgrade")
        );
        assert_eq!(
            parse_at("label:2026-01").unwrap().label.as_deref(),
            Some("2026-01")
        );
        assert_eq!(parse_at("label:123").unwrap().label.as_deref(), Some("123"));
        assert_eq!(parse_at("time:now").unwrap().time.as_deref(), Some("now"));
        assert!(parse_at("").is_err());
        assert!(parse_at("seq:x").is_err());
        assert!(parse_at("99999999999999999999999").is_err());
    }
}
