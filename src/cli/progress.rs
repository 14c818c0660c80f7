//! Progress of a long client operation (an export): an indicatif bar when
//! stderr is a terminal, otherwise a plain line every few seconds and one at
//! the end, so logs of scripted runs show it too.
//!
//! Invariant: progress goes to stderr only, and the reported position never
//! exceeds the total.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// See the module documentation.
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

/// `1.5 GiB`, `512 MiB`, `4.0 KiB`, `17 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Progress {
    /// Progress of `what` over `total` bytes.
    pub fn new(what: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        });
        Progress {
            what: what.to_string(),
            total,
            done: 0,
            bar,
            last_line: Instant::now(),
        }
    }

    /// `n` more bytes are done.
    pub fn advance(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    fn line(&self) -> String {
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        format!(
            "{}: {} of {} ({pct}%)",
            self.what,
            human_bytes(self.done),
            human_bytes(self.total)
        )
    }

    /// The operation completed: the bar goes, a plain run gets its last line.
    pub fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}", self.line()),
        }
    }

    /// The operation failed: the bar goes, and nothing more is printed (the
    /// error is the last word).
    pub fn abandon(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_positions() {
        assert_eq!(human_bytes(17), "17 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        let mut p = Progress::new("export", 100);
        p.advance(60);
        p.advance(60);
        assert_eq!(p.done, 100);
        assert!(p.line().ends_with("(100%)"), "{}", p.line());
        p.finish();
    }
}
