//! Early stopping on a validation metric, shared by every backbone's training loop.

/// What the training loop should do after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New best value: keep (snapshot) these parameters.
    Improved,
    /// Not better than the best, patience left.
    Continue,
    /// `patience` evaluations in a row without improvement: stop and restore the best.
    Stop,
}

/// Tracks the best validation value (higher is better) and how long since it improved.
///
/// Patience counts evaluations, not epochs, so it means the same whatever the evaluation
/// interval.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    patience: usize,
    best: Option<(usize, f64)>,
    since_best: usize,
}

impl EarlyStopping {
    /// `patience` = 0 never stops (only tracks the best).
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best: None,
            since_best: 0,
        }
    }

    /// Records `value` measured after `epoch`. A NaN never counts as an improvement, so a
    /// diverged model cannot become "best".
    pub fn observe(&mut self, epoch: usize, value: f64) -> Verdict {
        let improved = match self.best {
            None => !value.is_nan(),
            Some((_, best)) => value > best,
        };
        if improved {
            self.best = Some((epoch, value));
            self.since_best = 0;
            return Verdict::Improved;
        }
        self.since_best += 1;
        if self.patience > 0 && self.since_best >= self.patience {
            Verdict::Stop
        } else {
            Verdict::Continue
        }
    }

    /// `(epoch, value)` of the best evaluation so far.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_evaluations_without_improvement() {
        let mut es = EarlyStopping::new(2);
        assert_eq!(es.observe(1, 0.1), Verdict::Improved);
        assert_eq!(es.observe(2, 0.3), Verdict::Improved);
        assert_eq!(
            es.observe(3, 0.3),
            Verdict::Continue,
            "ties are not improvements"
        );
        assert_eq!(es.observe(4, 0.2), Verdict::Stop);
        assert_eq!(es.best(), Some((2, 0.3)));
    }

    #[test]
    fn nan_is_never_best_and_zero_patience_never_stops() {
        let mut es = EarlyStopping::new(0);
        assert_eq!(es.observe(1, f64::NAN), Verdict::Continue);
        assert_eq!(es.best(), None);
        for e in 2..100 {
            assert_ne!(es.observe(e, 0.0), Verdict::Stop);
        }
        assert_eq!(es.best(), Some((2, 0.0)));
    }
}
