//! The progress bars every phase shows while it runs (or, without a terminal, one line on stderr when it
//! ends).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar for a phase of `len` steps (or milliseconds, for timed phases).
pub fn bar(name: &str, len: u64, timed: bool) -> ProgressBar {
    let template = if timed {
        "{prefix:>16} [{bar:40.cyan/blue}] {elapsed:>4} / {msg}"
    } else {
        "{prefix:>16} [{bar:40.cyan/blue}] {pos:>6}/{len:<6} {elapsed:>4} {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let b = ProgressBar::new(len)
        .with_style(style)
        .with_prefix(name.to_owned());
    if timed {
        b.set_message(format!("{:.0}s", len as f64 / 1000.0));
    }
    b
}

/// Ends a phase's bar; without a terminal (bars hidden) says the same on stderr.
pub fn done(b: &ProgressBar, msg: String) {
    if b.is_hidden() {
        eprintln!(
            "{}: done in {:.1}s {msg}",
            b.prefix(),
            b.elapsed().as_secs_f64()
        );
    }
    b.finish_with_message(msg);
}
