//! The action rule of observations: APPEND needs no value in force for its key, REPLACE and
//! DELETE need one. The stores only read what is in force and call [`check`]; their apply step
//! calls [`step`], so a check that passes predicts an apply that succeeds. The node (before
//! signing) and the hub (in its sequencer) judge with the same function and the same words.

use crate::obskey;
use crate::rejection::{ProblemCount, Rejection, Violation, reasons};
use crate::statement::{Observation, ObservationAction};
use std::collections::{BTreeSet, HashMap};

/// Most action violations listed in one refusal.
pub const MAX_ACTION_VIOLATIONS: usize = 100;

/// An observation key within one (node, indicator): (REF_AREA, TIME_PERIOD, dimension key as
/// [`obskey::dimension_key`] writes it).
pub type ObservationKey = (String, String, String);

/// What a key has in force for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InForce {
    /// Never published.
    Nothing,
    /// Deleted: a tombstone is in force.
    Tombstone,
    /// A value is in force.
    Value,
}

impl InForce {
    /// The state left by the version in force, given its action (None: no version).
    pub fn after(latest: Option<ObservationAction>) -> Self {
        match latest {
            None => InForce::Nothing,
            Some(ObservationAction::Delete) => InForce::Tombstone,
            Some(ObservationAction::Append | ObservationAction::Replace) => InForce::Value,
        }
    }
}

/// The state after `action`, or the reason it is refused.
pub fn step(state: InForce, action: ObservationAction) -> Result<InForce, &'static str> {
    match (action, state) {
        (ObservationAction::Append, InForce::Nothing | InForce::Tombstone) => Ok(InForce::Value),
        (ObservationAction::Append, InForce::Value) => Err(reasons::OBSERVATION_EXISTS),
        (ObservationAction::Replace, InForce::Value) => Ok(InForce::Value),
        (ObservationAction::Delete, InForce::Value) => Ok(InForce::Tombstone),
        (ObservationAction::Replace | ObservationAction::Delete, _) => {
            Err(reasons::OBSERVATION_NOT_FOUND)
        }
    }
}

/// The key in words, e.g. `REMIT_INFLOW LKA 2023 (SEX=_T)`.
fn key_words(indicator: &str, o: &Observation, dims: &str) -> String {
    if dims.is_empty() {
        format!("{indicator} {} {}", o.ref_area, o.time_period)
    } else {
        format!(
            "{indicator} {} {} ({})",
            o.ref_area,
            o.time_period,
            dims.replace(';', ", ")
        )
    }
}

/// Why `o` (keyed with dimension key `dims`) is refused when its key has `state`, in plain
/// words.
pub fn refusal_words(
    node_id: &str,
    indicator: &str,
    o: &Observation,
    dims: &str,
    state: InForce,
) -> String {
    let key = key_words(indicator, o, dims);
    match (o.action, state) {
        (ObservationAction::Append, _) => format!(
            "appends {key}, but node {node_id} already has a value in force for it; use \
             REPLACE to revise it or DELETE to withdraw it"
        ),
        (ObservationAction::Replace, InForce::Tombstone) => {
            format!("replaces {key}, but node {node_id} deleted it; use APPEND to publish it again")
        }
        (ObservationAction::Replace, _) => {
            format!("replaces {key}, but node {node_id} has no value for it; use APPEND to add it")
        }
        (ObservationAction::Delete, InForce::Tombstone) => {
            format!("deletes {key}, but node {node_id} already deleted it")
        }
        (ObservationAction::Delete, _) => {
            format!("deletes {key}, but node {node_id} has no value for it")
        }
    }
}

/// Whose observations are checked, and how the store is read.
#[derive(Clone, Copy, Debug)]
pub struct ActionScope<'a> {
    /// The publishing node.
    pub node_id: &'a str,
    /// The snapshot's indicator.
    pub indicator: &'a str,
    /// The indicator's key defaults under the catalogue the entry will be applied with.
    pub defaults: &'a [(String, String)],
    /// Most violations returned; the check stops there.
    pub limit: usize,
    /// Observations whose keys are read from the store at once (1: one probe per key).
    pub batch: usize,
}

/// Checks `observations` against what `scope.node_id` has in force, in position order: a key
/// touched earlier in the same snapshot is judged by its state after that touch.
/// `in_force(keys)` reads the states of keys not seen yet (each once, in the order given) and
/// returns them in that order. Violations name `indicator_snapshot.observations[{position}]`
/// and say the key in words; at most `scope.limit`.
pub fn check<E>(
    scope: &ActionScope<'_>,
    observations: &[Observation],
    mut in_force: impl FnMut(&[&ObservationKey]) -> Result<Vec<InForce>, E>,
) -> Result<Vec<Violation>, E> {
    let mut out = Vec::new();
    if scope.limit == 0 || observations.is_empty() {
        return Ok(out);
    }
    let mut touched: HashMap<ObservationKey, InForce> = HashMap::new();
    for (batch_no, batch) in observations.chunks(scope.batch.max(1)).enumerate() {
        let keys: Vec<ObservationKey> = batch
            .iter()
            .map(|o| {
                let dims = obskey::dimension_key(&o.dimensions, scope.defaults).0;
                (o.ref_area.clone(), o.time_period.clone(), dims)
            })
            .collect();
        let stored: HashMap<&ObservationKey, InForce> = {
            let mut seen = BTreeSet::new();
            let unseen: Vec<&ObservationKey> = keys
                .iter()
                .filter(|k| !touched.contains_key(*k) && seen.insert(*k))
                .collect();
            if unseen.is_empty() {
                HashMap::new()
            } else {
                let states = in_force(&unseen)?;
                unseen.into_iter().zip(states).collect()
            }
        };
        for (i, (o, key)) in batch.iter().zip(&keys).enumerate() {
            let state = touched
                .get(key)
                .or_else(|| stored.get(key))
                .copied()
                .unwrap_or(InForce::Nothing);
            match step(state, o.action) {
                Ok(next) => {
                    touched.insert(key.clone(), next);
                }
                Err(reason) => {
                    let position = batch_no * scope.batch.max(1) + i;
                    out.push(Violation::new(
                        format!("indicator_snapshot.observations[{position}]"),
                        reason,
                        refusal_words(scope.node_id, scope.indicator, o, &key.2, state),
                    ));
                    if out.len() >= scope.limit {
                        return Ok(out);
                    }
                    touched.insert(key.clone(), state);
                }
            }
        }
    }
    Ok(out)
}

/// The refusal of a snapshot whose actions do not fit the observations in force, from what
/// [`check`] found with `limit`; None when it found nothing. The hub and the node refuse with
/// the same words.
pub fn refusal(violations: Vec<Violation>, limit: usize) -> Option<Rejection> {
    let count = if violations.len() >= limit {
        ProblemCount::AtLeast(violations.len())
    } else {
        ProblemCount::Exactly(violations.len())
    };
    Rejection::from_violations(violations, count)
}

/// The observation a violation of [`check`] names: `k` of `indicator_snapshot.observations[k]`.
pub fn observation_position(field: &str) -> Option<usize> {
    field
        .strip_prefix("indicator_snapshot.observations[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The violations [`check`] found in a part of a snapshot that starts at observation `offset`,
/// named for the whole snapshot. Those of an observation that repeats an earlier key
/// (`repeats[k]` set, for the part's observation `k`) are left out: that observation is
/// refused as DUPLICATE_KEY, and its second touch is no action error. None if a violation
/// names no observation.
pub fn in_whole_snapshot(
    found: Vec<Violation>,
    offset: usize,
    repeats: &[Option<u64>],
) -> Option<Vec<Violation>> {
    let mut out = Vec::with_capacity(found.len());
    for v in found {
        let k = observation_position(&v.field)?;
        if repeats.get(k).is_some_and(Option::is_some) {
            continue;
        }
        out.push(Violation::new(
            format!("indicator_snapshot.observations[{}]", offset + k),
            v.reason,
            v.description,
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(action: ObservationAction, area: &str) -> Observation {
        Observation {
            action,
            ref_area: area.into(),
            time_period: "2020".into(),
            dimensions: Vec::new(),
            obs_value: (action != ObservationAction::Delete).then_some(1.0),
            obs_status: String::new(),
            unit_measure: "PS".into(),
            unit_mult: 0,
            conf_status: String::new(),
            footnote: String::new(),
            source: String::new(),
        }
    }

    #[test]
    fn a_key_touched_twice_is_judged_by_its_state_after_the_first_touch() {
        let scope = ActionScope {
            node_id: "node-a",
            indicator: "IND",
            defaults: &[],
            limit: 10,
            batch: 1,
        };
        let observations = [
            obs(ObservationAction::Append, "LKA"),
            obs(ObservationAction::Replace, "LKA"),
            obs(ObservationAction::Append, "LKA"),
            obs(ObservationAction::Delete, "PHL"),
        ];
        let mut probes = Vec::new();
        let found = check(&scope, &observations, |keys| {
            probes.extend(keys.iter().map(|k| k.0.clone()));
            Ok::<_, ()>(vec![InForce::Nothing; keys.len()])
        })
        .expect("the probe does not fail");
        assert_eq!(probes, ["LKA", "PHL"], "each key read once");
        let fields: Vec<(&str, &str)> =
            found.iter().map(|v| (v.field.as_str(), v.reason)).collect();
        assert_eq!(
            fields,
            [
                (
                    "indicator_snapshot.observations[2]",
                    reasons::OBSERVATION_EXISTS
                ),
                (
                    "indicator_snapshot.observations[3]",
                    reasons::OBSERVATION_NOT_FOUND
                ),
            ]
        );
        assert_eq!(
            found[1].description,
            "deletes IND PHL 2020, but node node-a has no value for it"
        );
    }

    #[test]
    fn the_check_stops_at_its_limit_and_the_refusal_says_at_least() {
        let scope = ActionScope {
            node_id: "node-a",
            indicator: "IND",
            defaults: &[],
            limit: 2,
            batch: 2_000,
        };
        let observations: Vec<Observation> = ["LKA", "PHL", "NPL"]
            .iter()
            .map(|a| obs(ObservationAction::Replace, a))
            .collect();
        let found = check(&scope, &observations, |keys| {
            Ok::<_, ()>(vec![InForce::Tombstone; keys.len()])
        })
        .expect("the probe does not fail");
        assert_eq!(found.len(), 2);
        assert!(
            found[0]
                .description
                .ends_with("deleted it; use APPEND to publish it again")
        );
        let rejection = refusal(found, 2).map(|r| r.message).unwrap_or_default();
        assert!(rejection.contains("at least"), "{rejection}");
    }
}
