//! Progress through the steps of a long job (a test network coming up,
//! the demo's staging): on a terminal, a spinner naming the current step
//! and how long it has taken, finished steps printed above it; anywhere
//! else (a log, a test), one plain line per step.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The steps of one job, shown as they come.
pub struct Steps {
    prefix: &'static str,
    /// The spinner, on a terminal only.
    bar: Option<ProgressBar>,
    /// The step under way (printed above the spinner once the next one
    /// starts).
    current: Mutex<Option<String>>,
}

impl Steps {
    /// Steps whose lines start with `prefix`.
    pub fn new(prefix: &'static str) -> Steps {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(prefix);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Steps {
            prefix,
            bar,
            current: Mutex::new(None),
        }
    }

    /// A new step begins; the one before it is done.
    pub fn step(&self, msg: &str) {
        let Some(bar) = &self.bar else {
            eprintln!("{} {msg}", self.prefix);
            return;
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = current.replace(msg.to_owned()) {
            bar.println(format!("  {} {done}", self.prefix));
        }
        bar.reset_elapsed();
        bar.set_message(msg.to_owned());
    }

    /// The job is over: the last step is printed and the spinner goes.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(done) = current.take() {
                bar.println(format!("  {} {done}", self.prefix));
            }
            bar.finish_and_clear();
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.finish();
    }
}
