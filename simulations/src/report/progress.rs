//! Progress of a run: its phases (start nodes, bootstrap, workload, final check...), timed
//! for the report, and drawn on stderr as one bar per phase, ticked by the tasks doing the
//! work.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::PhaseTiming;

/// Redraws per second at most: enough to look live, cheap even when thousands of tasks tick.
const REFRESH_HZ: u8 = 10;
/// Keeps the elapsed time moving while a phase waits without ticking.
const STEADY_TICK: Duration = Duration::from_millis(200);
const BAR_TEMPLATE: &str =
    "{prefix:>12} [{elapsed_precise}] [{bar:40}] {pos}/{len} (eta {eta}) {msg}";
const SPINNER_TEMPLATE: &str = "{prefix:>12} [{elapsed_precise}] {spinner} {pos} {msg}";

/// A run's progress, cheap to clone and shareable between tasks. Phases are timed whether
/// or not the display is enabled; a disabled display draws nothing.
#[derive(Clone, Default)]
pub struct Progress {
    /// `None` when disabled; otherwise the current phase's bar, if a phase started.
    inner: Option<Arc<Mutex<Option<ProgressBar>>>>,
    /// New bars draw nowhere: lets tests run the enabled path silently.
    hidden_target: bool,
    timings: Arc<Mutex<PhaseLog>>,
}

/// The phases so far. Bounded by the run's code: a run has a handful of phases.
#[derive(Default)]
struct PhaseLog {
    /// The phase running: its name and when it started on both clocks.
    open: Option<(String, std::time::Instant, tokio::time::Instant)>,
    done: Vec<PhaseTiming>,
}

impl PhaseLog {
    fn close(&mut self) {
        if let Some((name, wall, simulated)) = self.open.take() {
            self.done.push(PhaseTiming {
                name,
                wall_secs: wall.elapsed().as_secs_f64(),
                simulated_secs: simulated.elapsed().as_secs_f64(),
            });
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Progress {
    /// A display on stderr when `enabled`, otherwise one that never writes anything.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            inner: enabled.then(|| Arc::new(Mutex::new(None))),
            hidden_target: false,
            timings: Arc::default(),
        }
    }

    /// Enabled only when stderr is a terminal: bars in a log file or a pipe are noise.
    pub fn auto() -> Progress {
        Progress::new(std::io::stderr().is_terminal())
    }

    /// Whether anything may be drawn.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Ends the current phase's bar (left on screen as it stands, so the real count shows)
    /// and starts a new one named `name`. `total` 0 means the length is unknown: a spinner
    /// with the count.
    pub fn phase(&self, name: &str, total: u64) {
        {
            let mut timings = crate::lock(&self.timings);
            timings.close();
            timings.open = Some((
                name.to_owned(),
                std::time::Instant::now(),
                tokio::time::Instant::now(),
            ));
        }
        let Some(inner) = &self.inner else {
            return;
        };
        let target = if self.hidden_target {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(REFRESH_HZ)
        };
        let (length, template) = if total == 0 {
            (None, SPINNER_TEMPLATE)
        } else {
            (Some(total), BAR_TEMPLATE)
        };
        // Plain ASCII bar and spinner: the default glyphs show as garbage on some consoles.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
            .tick_chars("-\\|/ ");
        let bar = ProgressBar::with_draw_target(length, target)
            .with_style(style)
            .with_prefix(name.to_string());
        if !self.hidden_target {
            bar.enable_steady_tick(STEADY_TICK);
        }
        let previous = crate::lock(inner).replace(bar);
        if let Some(previous) = previous {
            previous.abandon();
        }
    }

    /// Advances the current phase by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = self.current() {
            bar.inc(n);
        }
    }

    /// Replaces the text after the bar, e.g. live nodes and success so far.
    pub fn set_message(&self, msg: String) {
        if let Some(bar) = self.current() {
            bar.set_message(msg);
        }
    }

    /// Ends the current phase, leaving its last state on screen.
    pub fn finish(&self) {
        crate::lock(&self.timings).close();
        let Some(inner) = &self.inner else {
            return;
        };
        let bar = crate::lock(inner).take();
        if let Some(bar) = bar {
            bar.abandon();
        }
    }

    /// The phases ended so far, in order, with how long each took.
    pub fn timings(&self) -> Vec<PhaseTiming> {
        crate::lock(&self.timings).done.clone()
    }

    /// The current bar, cloned out so that drawing happens outside the lock.
    fn current(&self) -> Option<ProgressBar> {
        self.inner
            .as_ref()
            .and_then(|inner| crate::lock(inner).clone())
    }

    /// An enabled display that draws nowhere, to exercise the bars in tests.
    #[cfg(test)]
    pub(crate) fn hidden() -> Progress {
        Progress {
            hidden_target: true,
            ..Progress::new(true)
        }
    }

    /// The current phase's position, for tests.
    #[cfg(test)]
    pub(crate) fn position(&self) -> Option<u64> {
        self.current().map(|bar| bar.position())
    }
}
