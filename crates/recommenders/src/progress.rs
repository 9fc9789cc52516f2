//! One progress-bar style for every training loop, so `cargo xtask train <model>` looks the same
//! whichever backbone runs.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `epochs` epochs; hidden when `visible` is false (tests, `--json` runs) or when
/// stderr is not a terminal (indicatif's own check).
pub fn epoch_bar(epochs: usize, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64);
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] epoch {pos}/{len} {elapsed_precise} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar
}
