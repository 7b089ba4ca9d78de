//! The observation key rule: one canonical key per observation.
//!
//! An observation is identified by (publishing node, indicator, REF_AREA, TIME_PERIOD,
//! dimensions). The catalogue says what an optional dimension that an observation leaves out
//! means: its `default` code (usually `_T`, the total). So the **key** of an observation is its
//! dimensions with every optional dimension of its indicator that has a default and that the
//! observation leaves out filled in with that default: `MIG_STOCK LKA 2020` without SEX or AGE
//! and `MIG_STOCK LKA 2020 SEX=_T AGE=_T` are one key. A dimension without a default (such as
//! MIG_STOCK's COUNTERPART_AREA) stays absent, and a required one cannot be left out.
//!
//! Everything that compares keys uses this module, so hub and nodes agree:
//! - the importers and the node fill the defaults in before anything is signed
//!   ([`fill_defaults`]), so a signed statement names every defaulted dimension;
//! - the duplicate-key rule within a snapshot compares keys with the defaults filled in
//!   (`crate::validate::check_statement`), so a snapshot that lists both forms is refused;
//! - the store keys its indicator view with [`dimension_key`] and the [`KeyRule`] of the
//!   catalogue version in force at the entry's feed position, so a statement signed with a
//!   dimension left out (by an older node) is one key with its explicit form, on the hub and
//!   on every mirror alike.

use crate::catalogue::{Catalogue, Indicator, IndicatorDimension, dimensions_of};
use crate::rejection::{RejectClass, Rejection, reasons};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use std::collections::BTreeMap;

/// The defaults of one catalogue version: for each indicator, its optional dimensions that
/// have a default code, as (id, default) sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRule {
    defaults: BTreeMap<String, Vec<(String, String)>>,
}

impl KeyRule {
    /// No defaults at all: keys are the dimensions as given (before any catalogue exists).
    pub fn none() -> KeyRule {
        KeyRule::default()
    }

    /// The rule of `catalogue`.
    pub fn of(catalogue: &Catalogue) -> KeyRule {
        KeyRule::from_indicators(
            catalogue
                .indicators
                .iter()
                .map(|i| (i.code.as_str(), i.key_defaults())),
        )
    }

    /// The rule of a logged catalogue version, from its payload (a serialized
    /// `rcpfed.v1.CatalogueDocument`, verified when it was logged or mirrored). Lenient where
    /// [`Catalogue::from_document`] is strict, so that a version logged under older consistency
    /// rules still keys its entries: only each indicator's dimensions are read, by the same
    /// function that reads them for the strict path, and the defaults are derived by the same
    /// rule as [`Indicator::key_defaults`]. The only refusal is a payload that does not decode
    /// (`CATALOGUE_INVALID`).
    pub fn from_catalogue_payload(payload: &[u8]) -> Result<KeyRule, Rejection> {
        let document = pb::CatalogueDocument::decode(payload).map_err(|e| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::CATALOGUE_INVALID,
                format!("the payload is not a valid rcpfed.v1.CatalogueDocument: {e}"),
            )
        })?;
        Ok(KeyRule::from_indicators(document.indicators.iter().map(
            |i| (i.code.as_str(), defaults_of(&dimensions_of(i))),
        )))
    }

    /// The rule of indicators given as (code, defaults); the first definition of a code
    /// counts, as `Catalogue::indicator` finds it.
    fn from_indicators<'a>(
        indicators: impl Iterator<Item = (&'a str, Vec<(String, String)>)>,
    ) -> KeyRule {
        let mut defaults = BTreeMap::new();
        for (code, pairs) in indicators {
            if !pairs.is_empty() && !defaults.contains_key(code) {
                defaults.insert(code.to_string(), pairs);
            }
        }
        KeyRule { defaults }
    }

    /// The (id, default) pairs of `indicator`, sorted by id; empty for an indicator without
    /// defaults or one the catalogue does not define.
    pub fn defaults(&self, indicator: &str) -> &[(String, String)] {
        self.defaults.get(indicator).map_or(&[], Vec::as_slice)
    }

    /// Whether no indicator has a default.
    pub fn is_empty(&self) -> bool {
        self.defaults.is_empty()
    }
}

impl Indicator {
    /// The optional dimensions with a default code, as (id, default) sorted by id: what an
    /// observation that leaves them out means ([`crate::obskey`]).
    pub fn key_defaults(&self) -> Vec<(String, String)> {
        defaults_of(&self.dimensions)
    }
}

/// The optional dimensions of `dimensions` with a non-empty default, as (id, default) sorted
/// by id: the key rule of one indicator, whichever path read its dimensions.
fn defaults_of(dimensions: &[IndicatorDimension]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = dimensions
        .iter()
        .filter(|d| !d.required)
        .filter_map(|d| Some((d.id.clone(), d.default.clone()?)))
        .filter(|(_, code)| !code.is_empty())
        .collect();
    out.sort();
    out
}

/// The defaults of `defaults` whose dimension is not among `given` (the ids an observation
/// gives), in id order: what [`fill_defaults`] appends. For callers that hold dimensions in
/// another form (the protobuf `Dimension` of the importers).
pub fn missing_defaults<'a, 'g>(
    defaults: &'a [(String, String)],
    given: impl Iterator<Item = &'g str> + Clone,
) -> impl Iterator<Item = &'a (String, String)> {
    defaults
        .iter()
        .filter(move |(id, _)| !given.clone().any(|g| g == id))
}

/// Appends to `dims`, in id order, every default of `defaults` whose dimension `dims` leaves
/// out; returns how many were appended. The dimensions already given keep their positions,
/// so a field path such as `observations[3].dimensions[1]` still names the same cell.
pub fn fill_defaults(defaults: &[(String, String)], dims: &mut Vec<(String, String)>) -> usize {
    let missing: Vec<(String, String)> =
        missing_defaults(defaults, dims.iter().map(|(id, _)| id.as_str()))
            .cloned()
            .collect();
    let n = missing.len();
    dims.extend(missing);
    n
}

/// The key pairs of `dims` with the absent defaults filled in, sorted by (id, value), and
/// whether a default was filled in. Borrows; allocates one small vector.
pub fn key_pairs<'a>(
    dims: &'a [(String, String)],
    defaults: &'a [(String, String)],
) -> (Vec<(&'a str, &'a str)>, bool) {
    let mut pairs: Vec<(&str, &str)> = dims.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let before = pairs.len();
    pairs.extend(
        missing_defaults(defaults, dims.iter().map(|(id, _)| id.as_str()))
            .map(|(id, code)| (id.as_str(), code.as_str())),
    );
    let filled = pairs.len() > before;
    pairs.sort_unstable();
    (pairs, filled)
}

/// The canonical dimension key: `ID=VALUE` pairs of the dimensions with the absent defaults
/// filled in, sorted by id (then value), joined by `;` (empty when there are none); and whether
/// a default was filled in. The order in which the dimensions are given does not matter.
pub fn dimension_key(dims: &[(String, String)], defaults: &[(String, String)]) -> (String, bool) {
    let (pairs, filled) = key_pairs(dims, defaults);
    let len = pairs
        .iter()
        .map(|(id, value)| id.len() + value.len() + 2)
        .sum();
    let mut key = String::with_capacity(len);
    for (id, value) in pairs {
        if !key.is_empty() {
            key.push(';');
        }
        key.push_str(id);
        key.push('=');
        key.push_str(value);
    }
    (key, filled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::catalogue::embedded_catalogue_toml;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_shipped_catalogue_defaults_optional_dimensions_only() {
        let cat = Catalogue::from_toml(embedded_catalogue_toml()).unwrap();
        let rule = KeyRule::of(&cat);
        // MIG_STOCK: SEX and AGE default to _T; COUNTERPART_AREA has no default.
        assert_eq!(
            rule.defaults("MIG_STOCK"),
            pairs(&[("AGE", "_T"), ("SEX", "_T")]).as_slice()
        );
        // INJURY_TYPE is required for SDG_8_8_1: never defaulted.
        let injuries = rule.defaults("SDG_8_8_1");
        assert!(injuries.iter().all(|(id, _)| id != "INJURY_TYPE"));
        assert!(!injuries.is_empty());
        assert!(rule.defaults("REMIT_INFLOW").is_empty());
        assert!(rule.defaults("NO_SUCH").is_empty());
        assert!(!rule.is_empty());
        assert!(KeyRule::none().is_empty());
        // The signed document form gives the same rule.
        let doc = cat.to_document("rcp-federation", 1, time::OffsetDateTime::UNIX_EPOCH, None);
        assert_eq!(
            KeyRule::from_catalogue_payload(&doc.encode_to_vec()).unwrap(),
            rule
        );
        let err = KeyRule::from_catalogue_payload(b"\xff\xff not a document").unwrap_err();
        assert_eq!(err.reason, reasons::CATALOGUE_INVALID);
        // A version the strict reading refuses (here: an indicator without units, as an older
        // rule may have allowed) still keys its entries, with the same defaults.
        let mut older = doc.clone();
        for indicator in &mut older.indicators {
            indicator.units.clear();
        }
        assert!(Catalogue::from_document(&older).is_err());
        assert_eq!(
            KeyRule::from_catalogue_payload(&older.encode_to_vec()).unwrap(),
            rule
        );
    }

    #[test]
    fn a_blank_optional_dimension_is_its_default() {
        let defaults = pairs(&[("AGE", "_T"), ("SEX", "_T")]);
        let explicit = pairs(&[("SEX", "_T"), ("AGE", "_T")]);
        let blank = pairs(&[]);
        assert_eq!(
            dimension_key(&explicit, &defaults),
            ("AGE=_T;SEX=_T".to_string(), false)
        );
        assert_eq!(
            dimension_key(&blank, &defaults),
            ("AGE=_T;SEX=_T".to_string(), true)
        );
        // One given, one filled; a value other than the default is its own key.
        assert_eq!(
            dimension_key(&pairs(&[("SEX", "F")]), &defaults),
            ("AGE=_T;SEX=F".to_string(), true)
        );
        // A dimension without a default stays as given.
        assert_eq!(
            dimension_key(&pairs(&[("COUNTERPART_AREA", "IND")]), &defaults),
            ("AGE=_T;COUNTERPART_AREA=IND;SEX=_T".to_string(), true)
        );
        // Without a rule, the dimensions as given.
        assert_eq!(dimension_key(&blank, &[]), (String::new(), false));
        assert_eq!(
            dimension_key(&pairs(&[("SEX", "F"), ("AGE", "Y15T24")]), &[]),
            ("AGE=Y15T24;SEX=F".to_string(), false)
        );
    }

    #[test]
    fn filling_appends_after_the_given_dimensions() {
        let defaults = pairs(&[("AGE", "_T"), ("SEX", "_T")]);
        let mut dims = pairs(&[("SEX", "F")]);
        assert_eq!(fill_defaults(&defaults, &mut dims), 1);
        assert_eq!(dims, pairs(&[("SEX", "F"), ("AGE", "_T")]));
        // Idempotent.
        assert_eq!(fill_defaults(&defaults, &mut dims), 0);
        let mut none = Vec::new();
        assert_eq!(fill_defaults(&defaults, &mut none), 2);
        assert_eq!(none, defaults);
        // The filled form has the same key as the blank form.
        assert_eq!(
            dimension_key(&none, &defaults).0,
            dimension_key(&[], &defaults).0
        );
    }
}
