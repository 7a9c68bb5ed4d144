//! Progress of the long commands on a terminal (SPEC §16): done/total, rate
//! and time left on stderr. Not on a terminal nothing is drawn, so a script
//! or a log gets the command's summary alone.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new() -> Bar {
        // stderr's draw target hides itself when stderr is not a terminal.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} {eta} left")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Bar { bar }
    }

    /// `done` of `total` in the step named `pass`.
    pub fn show(&self, pass: &'static str, done: u64, total: u64) {
        if self.bar.message() != pass {
            self.bar.set_message(pass);
            self.bar.reset();
        }
        self.bar.set_length(total);
        self.bar.set_position(done);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs `work` with a bar it reports to; the bar is gone before `work`'s
/// outcome is printed.
pub fn shown<T>(work: impl FnOnce(vpsd::service::backups::Progress<'_>) -> T) -> T {
    let bar = Bar::new();
    let outcome = work(&|step, done, total| bar.show(step, done, total));
    bar.finish();
    outcome
}
