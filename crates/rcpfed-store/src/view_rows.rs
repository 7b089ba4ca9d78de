//! The indicator view's pieces that both engines and the shared SQL use, apart from any one
//! engine: which log a view follows, a feed entry to apply and its statement, the action codes
//! stored per version, the dimension key's text, and the grouping of conflicting versions.

use crate::StoreError;
use crate::indicators::{ConflictRows, ObservationRow};
use rcpfed_core::Digest;
use rcpfed_core::admission::actions::InForce;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::statement::{DocumentKind, ObservationAction, Statement};
use std::borrow::Cow;

/// Which log table holds the feed entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Log {
    /// The hub's `statements`.
    Hub,
    /// The node's `mirror`.
    Node,
}

impl Log {
    pub(crate) fn pick<T>(self, hub: T, node: T) -> T {
        match self {
            Log::Hub => hub,
            Log::Node => node,
        }
    }
}

const ACTION_APPEND: i64 = 1;
const ACTION_REPLACE: i64 = 2;
const ACTION_DELETE: i64 = 3;

pub(crate) fn action_code(action: ObservationAction) -> i64 {
    match action {
        ObservationAction::Append => ACTION_APPEND,
        ObservationAction::Replace => ACTION_REPLACE,
        ObservationAction::Delete => ACTION_DELETE,
    }
}

pub(crate) fn action_from_code(code: i64) -> Result<ObservationAction, StoreError> {
    match code {
        ACTION_APPEND => Ok(ObservationAction::Append),
        ACTION_REPLACE => Ok(ObservationAction::Replace),
        ACTION_DELETE => Ok(ObservationAction::Delete),
        other => Err(StoreError::Corrupt(format!(
            "observation action {other} is not 1, 2 or 3"
        ))),
    }
}

/// What a key has in force, from the action code of its version in force (None: none).
pub(crate) fn in_force(code: Option<i64>) -> Result<InForce, StoreError> {
    Ok(InForce::after(code.map(action_from_code).transpose()?))
}

/// A feed entry as the apply step needs it.
pub(crate) struct Entry<'a> {
    /// The signer (or hub document chain).
    pub node_id: &'a str,
    /// The statement kind.
    pub kind: &'a str,
    /// SHA-256 of the payload.
    pub digest: &'a Digest,
    /// The document.
    pub document: &'a str,
    /// The document revision.
    pub revision: u32,
    /// The feed index.
    pub feed_index: u64,
    /// When the hub accepted it.
    pub accepted_at_ms: i64,
    /// The signed envelope.
    pub envelope: &'a [u8],
    /// The envelope's statement as the caller decoded and verified it; None to have the apply
    /// step decode the envelope (an entry read back from the database).
    pub statement: Option<&'a Statement>,
}

/// The [`Entry`] of a stored statement (the hub's `StoredStatement`, a node's
/// `MirroredStatement`: the same fields), with the decoded statement it carries.
macro_rules! entry_of_stored {
    ($st:expr) => {
        $crate::view_rows::Entry {
            node_id: &$st.node_id,
            kind: &$st.kind,
            digest: &$st.digest,
            document: &$st.document,
            revision: $st.revision,
            feed_index: $st.feed_index,
            accepted_at_ms: $st.accepted_at_ms,
            envelope: &$st.envelope,
            statement: $st.decoded.get(),
        }
    };
}
pub(crate) use entry_of_stored;

impl Entry<'_> {
    pub(crate) fn conflict(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Conflict(format!(
            "feed entry {} (node {}, {} {} revision {}) cannot be applied: {what}",
            self.feed_index, self.node_id, self.kind, self.document, self.revision
        ))
    }

    /// Whether the apply step reads this entry's statement: an indicator snapshot or a policy
    /// summary. Other kinds (hub documents) leave the view as it is.
    pub(crate) fn changes_view(&self) -> bool {
        self.kind == DocumentKind::IndicatorSnapshot.as_str()
            || self.kind == DocumentKind::PolicySummary.as_str()
    }

    /// The entry's statement: the caller's, or else decoded from the stored envelope, whose
    /// payload must hash to the entry's digest (the view's provenance names it).
    pub(crate) fn statement(&self) -> Result<Cow<'_, Statement>, StoreError> {
        if let Some(statement) = self.statement {
            return Ok(Cow::Borrowed(statement));
        }
        let envelope = SignedEnvelope::decode(self.envelope).map_err(|e| self.conflict(e))?;
        if Digest::of(&envelope.payload) != *self.digest {
            return Err(self.conflict("the envelope's payload does not hash to the entry's digest"));
        }
        Statement::decode(&envelope.payload)
            .map(Cow::Owned)
            .map_err(|e| self.conflict(e))
    }
}

/// Column list matching [`crate::indicator_queries::observation_from_row`].
macro_rules! observation_columns {
    () => {
        "indicator, ref_area, time_period, dims, action, obs_value, obs_status, unit_measure, \
         unit_mult, conf_status, footnote, source, node_id, digest, document, revision, \
         feed_index, position, accepted_at_ms, superseded_at_ms"
    };
    // While a snapshot's pieces supersede versions in force (see
    // `indicator_queries::ViewReading`): a version superseded by an entry past the view cursor
    // is shown as not superseded.
    (Superseding) => {
        "indicator, ref_area, time_period, dims, action, obs_value, obs_status, unit_measure, \
         unit_mult, conf_status, footnote, source, node_id, digest, document, revision, \
         feed_index, position, accepted_at_ms, \
         CASE WHEN superseded_by > (SELECT applied_through FROM view_cursor WHERE id = 1) \
         THEN NULL ELSE superseded_at_ms END"
    };
    (Settled) => {
        observation_columns!()
    };
}
pub(crate) use observation_columns;

/// The inverse of [`dimension_key`].
pub(crate) fn parse_dims(dims: &str) -> Result<Vec<(String, String)>, StoreError> {
    if dims.is_empty() {
        return Ok(Vec::new());
    }
    dims.split(';')
        .map(|pair| {
            pair.split_once('=')
                .map(|(id, value)| (id.to_string(), value.to_string()))
                .ok_or_else(|| StoreError::Corrupt(format!("dimension key {dims:?} is malformed")))
        })
        .collect()
}

/// `OBS_VALUE × 10^UNIT_MULT` as an exact decimal: the shortest decimal that round-trips the
/// stored double, its point shifted by UNIT_MULT, as `[-]DIGITSeEXP` with no trailing zeros.
/// So 5.9 at UNIT_MULT 9 and 5900000000 at 0 compare equal, which a float product may not.
pub(crate) fn scaled_value(value: Option<f64>, unit_mult: i32) -> String {
    let Some(v) = value else {
        return "none".into();
    };
    if v == 0.0 || !v.is_finite() {
        return format!("{}", v.abs());
    }
    let text = format!("{v:e}"); // e.g. "-5.9e9", "1e0", "1.25e-3"
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{int}{frac}");
    let frac_len = i64::try_from(frac.len()).unwrap_or(0);
    let mut exponent = exponent.parse::<i64>().unwrap_or(0) - frac_len + i64::from(unit_mult);
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    format!("{sign}{digits}e{exponent}")
}

/// One candidate key while [`crate::indicator_queries::conflicts`] reads its versions.
struct ConflictGroup {
    /// (indicator, ref_area, time_period, dims).
    key: [String; 4],
    /// The first version's (OBS_VALUE, UNIT_MULT, UNIT_MEASURE).
    first: (Option<f64>, i32, String),
    /// The first version's scaled value, computed when a version's raw value differs.
    first_scaled: Option<String>,
    /// Whether some version differs from the first.
    differ: bool,
    /// The versions, kept only while the group may still be listed.
    rows: Vec<ObservationRow>,
}

/// Groups the candidate rows (in key order, as [`crate::indicator_queries::CONFLICT_CANDIDATES`] lists them) into
/// the keys whose scaled values or units really differ; both backends feed it their rows.
pub(crate) struct ConflictCollector {
    limit: usize,
    out: Vec<ConflictRows>,
    total: u64,
    group: Option<ConflictGroup>,
}

impl ConflictCollector {
    pub(crate) fn new(limit: usize) -> Self {
        ConflictCollector {
            limit,
            out: Vec::new(),
            total: 0,
            group: None,
        }
    }

    /// Takes the next candidate row; `row` builds the full version, called only while the
    /// group may still be listed.
    pub(crate) fn push(
        &mut self,
        key: [&str; 4],
        value: Option<f64>,
        unit_measure: &str,
        unit_mult: i32,
        row: impl FnOnce() -> Result<ObservationRow, StoreError>,
    ) -> Result<(), StoreError> {
        let same_key = self
            .group
            .as_ref()
            .is_some_and(|g| g.key.iter().zip(key).all(|(a, b)| a == b));
        if !same_key {
            self.finish_group();
            self.group = Some(ConflictGroup {
                key: key.map(str::to_string),
                first: (value, unit_mult, unit_measure.to_string()),
                first_scaled: None,
                differ: false,
                rows: Vec::new(),
            });
        }
        let listing = self.out.len() < self.limit;
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        if !g.differ {
            // Equal raw (value, multiplier) pairs scale equally: format only when they differ.
            g.differ = unit_measure != g.first.2
                || ((value, unit_mult) != (g.first.0, g.first.1) && {
                    let first = g
                        .first_scaled
                        .get_or_insert_with(|| scaled_value(g.first.0, g.first.1));
                    scaled_value(value, unit_mult) != *first
                });
        }
        if listing {
            g.rows.push(row()?);
        }
        Ok(())
    }

    fn finish_group(&mut self) {
        if let Some(g) = self.group.take().filter(|g| g.differ) {
            self.total += 1;
            if self.out.len() < self.limit {
                self.out.push(ConflictRows { values: g.rows });
            }
        }
    }

    /// The conflicts listed (at most `limit`) and how many there are in all.
    pub(crate) fn finish(mut self) -> (Vec<ConflictRows>, u64) {
        self.finish_group();
        (self.out, self.total)
    }
}

/// Where the next piece of a chunked snapshot's view starts, when the view is applied a piece
/// per transaction: a chunk, how many of its observations are applied, and the position of
/// the next one in the whole snapshot; with the chunk's observations once decoded, so a chunk
/// split over several pieces is read and decoded once.
#[derive(Clone, Debug, Default)]
pub(crate) struct PieceStart {
    pub chunk: usize,
    pub applied_in_chunk: usize,
    pub position: i64,
    pub decoded: Option<std::sync::Arc<Vec<rcpfed_core::statement::Observation>>>,
}

/// When a piece of a snapshot's view ends: after `max` observations, or at the end of a batch
/// once the piece has run `min_time` since `started` and `yield_now` says a commit is waiting
/// for the writer.
pub(crate) struct PieceLimit<'a> {
    pub started: std::time::Instant,
    pub min_time: std::time::Duration,
    pub max: usize,
    pub yield_now: &'a (dyn Fn() -> bool + Sync),
}
