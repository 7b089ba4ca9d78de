//! The admission of a snapshot whose observations arrive in pieces: the node's
//! `PublishSnapshot` stream (batches, before signing) and the hub's `SubmitSnapshot` (chunks of
//! a signed manifest). Both walk the pieces with one [`ChunkedAdmission`], so the rules and
//! their order live here; the caller owns only the staging (a scratch file whose key index
//! finds keys repeated across pieces) and the view the actions are judged against.

use super::AdmissionContext;
use super::actions::{self, MAX_ACTION_VIOLATIONS};
use crate::rejection::Violation;
use crate::validate::{Findings, ObservationRows};

/// One snapshot's admission, piece by piece. For each piece, in this order:
/// 1. the row rules of the whole-snapshot check ([`ChunkedAdmission::rows`]: the staging's key
///    index names each row's earlier twin and hands the row to [`ObservationRows::check`]);
/// 2. the action rules against the caller's view, at most [`MAX_ACTION_VIOLATIONS`] in all
///    ([`ChunkedAdmission::action_room`], then [`ChunkedAdmission::add_actions`] with what the
///    view found, named for the whole snapshot);
/// 3. [`ChunkedAdmission::advance`] past the piece.
///
/// [`ChunkedAdmission::finish`] gives what the whole-snapshot check would have given.
///
/// Where the two paths differ, and why: the node checks the actions of every piece, so that
/// its one report before signing lists them with the row problems; the hub checks them only
/// while the rows pass, because a refused snapshot is never stored and only the sequencer
/// uses the hub's action result (a snapshot with row errors is refused for those).
pub struct ChunkedAdmission<'a> {
    rows: ObservationRows<'a>,
    /// Observations of the pieces before the current one.
    seen: usize,
    /// Action violations the view returned (its limit counts them all).
    actions_returned: usize,
    /// Those violations named for the whole snapshot, repeated keys' second touches left out.
    actions: Vec<Violation>,
}

/// What a chunked admission found once the last piece was in.
pub struct ChunkedFindings {
    /// The statement and catalogue rules' findings over every row.
    pub findings: Findings,
    /// The action violations, in document order.
    pub action_violations: Vec<Violation>,
    /// Whether the action check stopped at its limit (so there may be more).
    pub actions_at_least: bool,
}

impl<'a> ChunkedAdmission<'a> {
    /// The admission of `indicator`'s observations under `cx` (its catalogue judges them).
    pub fn start(indicator: &str, cx: &AdmissionContext<'a>) -> Self {
        ChunkedAdmission {
            rows: ObservationRows::new(indicator, cx.validation(), cx.catalogue),
            seen: 0,
            actions_returned: 0,
            actions: Vec::new(),
        }
    }

    /// The key defaults of the indicator: what a row that leaves them out means.
    pub fn key_defaults(&self) -> &[(String, String)] {
        self.rows.key_defaults()
    }

    /// Step 1: the row rules, and the position of the current piece's first observation in
    /// the whole snapshot, for the staging's key index.
    pub fn rows(&mut self) -> (&mut ObservationRows<'a>, usize) {
        (&mut self.rows, self.seen)
    }

    /// Step 2: how many more action violations the view may return (0: the check is done).
    pub fn action_room(&self) -> usize {
        MAX_ACTION_VIOLATIONS.saturating_sub(self.actions_returned)
    }

    /// Step 2: what the view found in the current piece (positions within the piece);
    /// `repeats` says which of its rows repeat an earlier key. None when a violation names no
    /// observation (the view is corrupt).
    pub fn add_actions(&mut self, found: Vec<Violation>, repeats: &[Option<u64>]) -> Option<()> {
        self.actions_returned += found.len();
        let named = actions::in_whole_snapshot(found, self.seen, repeats)?;
        self.actions.extend(named);
        Some(())
    }

    /// Step 3: the current piece had `count` observations.
    pub fn advance(&mut self, count: usize) {
        self.seen += count;
    }

    /// Observations admitted so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Whether a row rule has refused an observation.
    pub fn has_errors(&self) -> bool {
        self.rows.has_errors()
    }

    /// Whether the action check has found a violation.
    pub fn found_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The findings over every piece.
    pub fn finish(self) -> ChunkedFindings {
        ChunkedFindings {
            findings: self.rows.finish(),
            actions_at_least: self.actions_returned >= MAX_ACTION_VIOLATIONS,
            action_violations: self.actions,
        }
    }
}
