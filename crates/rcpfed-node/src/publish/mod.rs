//! Signing: turns a document body into the next statement of this node's chain.
//!
//! `PublishDocument` and `PublishSnapshot` share this one path: idempotency by request id,
//! the hub's own validation rules, the indicator catalogue in force, the actions against this
//! node's mirrored observations, chunking of large snapshots, signing, and the outbox.
//!
//! Invariant: the chain never forks. One async mutex serializes publishing, and the store
//! refuses an own statement whose seq is not head + 1 in the same transaction that inserts it.
//! Invariant: nothing unchecked is signed; every refusal happens before the signature.

mod cut;
pub(crate) mod stream;

use crate::NodeStorage;
use crate::catalogue::CatalogueInForce;
use rcpfed_core::Digest;
use rcpfed_core::admission::actions::MAX_ACTION_VIOLATIONS;
use rcpfed_core::admission::{
    AdmissionContext, admit_draft_body, admit_inline, admit_signed_form, fill_key_defaults,
};
use rcpfed_core::catalogue::SignedCatalogue;
use rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::limits::MAX_VIOLATIONS;
use rcpfed_core::members::Federation;
use rcpfed_core::rejection::{RejectClass, Rejection, Violation, reasons};
use rcpfed_core::statement::{Body, ChunkManifest, DocumentKind, Header, Observation, Statement};
use rcpfed_store::{DeliveryState, OwnStatement, StoreError};
use std::sync::Arc;

/// What to publish.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Logical document name.
    pub document: String,
    /// The body; an indicator snapshot carries its observations inline (never a manifest:
    /// the node cuts chunks itself).
    pub body: Body,
    /// Check everything, sign and store nothing.
    pub validate_only: bool,
    /// Makes retries safe: a repeated id answers with the first result.
    pub request_id: Option<String>,
}

/// What publishing produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// Sequence number (0 for a validation-only run).
    pub seq: u64,
    /// Payload digest (None for a validation-only run).
    pub digest: Option<Digest>,
    /// Revision of the document.
    pub revision: u32,
    /// Document name.
    pub document: String,
    /// Catalogue warnings and notes, in plain words with the field, at most 100.
    pub warnings: Vec<String>,
    /// Observations of an indicator snapshot (0 for a policy summary).
    pub observation_count: u64,
    /// Chunks of a large snapshot (0 when the observations are inline).
    pub chunk_count: u32,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The document is not acceptable; nothing was signed.
    #[error("{0}")]
    Rejected(Rejection),
    /// The store failed; nothing was signed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<Rejection> for PublishError {
    fn from(r: Rejection) -> Self {
        PublishError::Rejected(r)
    }
}

/// Signs and records this node's statements.
pub struct Publisher {
    federation: rcpfed_grpc::shared::SharedFederation,
    catalogue: CatalogueInForce,
    node_id: String,
    key: SecretKey,
    store: Arc<dyn NodeStorage>,
    lock: tokio::sync::Mutex<()>,
    outbox_wakeup: Arc<tokio::sync::Notify>,
    own_chain: Arc<crate::own_chain::OwnChainGate>,
}

/// Everything one publication is decided with: one registry version, one catalogue version.
struct Context {
    federation: Arc<Federation>,
    catalogue: Option<Arc<SignedCatalogue>>,
    node_id: String,
    key: SecretKey,
    store: Arc<dyn NodeStorage>,
}

impl Publisher {
    /// A publisher for `node_id` signing with `key`.
    pub fn new(
        federation: rcpfed_grpc::shared::SharedFederation,
        catalogue: CatalogueInForce,
        node_id: String,
        key: SecretKey,
        store: Arc<dyn NodeStorage>,
        outbox_wakeup: Arc<tokio::sync::Notify>,
    ) -> Self {
        Publisher {
            federation,
            catalogue,
            node_id,
            key,
            store,
            lock: tokio::sync::Mutex::new(()),
            outbox_wakeup,
            own_chain: Arc::new(crate::own_chain::OwnChainGate::new(None)),
        }
    }

    /// Signs nothing new while `gate` is closed (a database restored from a backup).
    pub fn with_own_chain_gate(mut self, gate: Arc<crate::own_chain::OwnChainGate>) -> Self {
        self.own_chain = gate;
        self
    }

    /// Validates `draft` as the next revision of its document; unless `validate_only`, signs
    /// it as the next statement and queues it (with its chunks) in the outbox. A repeated
    /// `request_id` answers with the first result.
    pub async fn publish(&self, draft: Draft) -> Result<Published, PublishError> {
        let _guard = self.lock.lock().await;
        if !draft.validate_only {
            self.own_chain.check()?;
        }
        let cx = Context {
            federation: self.federation.get(),
            catalogue: self.catalogue.get(),
            node_id: self.node_id.clone(),
            key: self.key.clone(),
            store: Arc::clone(&self.store),
        };
        // Validation of a million observations and chunk encoding are CPU work, and the store
        // calls block: all of it runs off the async runtime.
        let (published, signed) = tokio::task::spawn_blocking(move || publish_blocking(&cx, draft))
            .await
            .map_err(|e| StoreError::Corrupt(format!("publish task failed: {e}")))??;
        if signed {
            self.outbox_wakeup.notify_one();
        }
        Ok(published)
    }
}

/// A snapshot streamed with `PublishSnapshot`, once its stream has ended normally.
pub struct StreamedDraft {
    /// Logical document name.
    pub document: String,
    /// Check everything, sign and store nothing.
    pub validate_only: bool,
    /// Makes retries safe: a repeated id answers with the first result.
    pub request_id: Option<String>,
    pub(crate) snapshot: stream::StreamedSnapshot,
}

impl Publisher {
    /// What a `PublishSnapshot` stream is checked against, taken when it starts: the refusals
    /// that need no observation come before any is read.
    pub(crate) fn stream_context(
        &self,
        indicator: String,
    ) -> Result<stream::StreamContext, PublishError> {
        let federation = self.federation.get();
        // A non-member is refused before its stream is read.
        AdmissionContext::new(
            &federation,
            &self.node_id,
            rcpfed_core::clock::now_utc(),
            None,
        )?;
        let catalogue = self.catalogue.get().ok_or_else(no_catalogue)?;
        let head_seq = self.store.head()?.map(|(seq, _)| seq).unwrap_or(0);
        Ok(stream::StreamContext {
            federation,
            catalogue,
            node_id: self.node_id.clone(),
            store: Arc::clone(&self.store),
            indicator,
            head_seq,
        })
    }

    /// Signs a streamed snapshot as the next revision of its document (unless
    /// `validate_only`), as [`Publisher::publish`] does a whole one.
    pub async fn publish_streamed(&self, draft: StreamedDraft) -> Result<Published, PublishError> {
        let _guard = self.lock.lock().await;
        if !draft.validate_only {
            self.own_chain.check()?;
        }
        let cx = Context {
            federation: self.federation.get(),
            catalogue: None,
            node_id: self.node_id.clone(),
            key: self.key.clone(),
            store: Arc::clone(&self.store),
        };
        let (published, signed) =
            tokio::task::spawn_blocking(move || publish_streamed_blocking(&cx, draft))
                .await
                .map_err(|e| StoreError::Corrupt(format!("publish task failed: {e}")))??;
        if signed {
            self.outbox_wakeup.notify_one();
        }
        Ok(published)
    }
}

/// NO_CATALOGUE: without the catalogue the node cannot check codes, units or ranges, nor tell
/// aggregates from states, so it refuses rather than sign unchecked data.
fn no_catalogue() -> Rejection {
    Rejection::new(
        RejectClass::Precondition,
        reasons::NO_CATALOGUE,
        "the hub's indicator catalogue has not reached this node yet; try again once the node's feed has caught up (see GetNodeStatus)",
    )
}

/// The end of a streamed publication: the header, the findings of the stream, the actions,
/// then the signed form (inline or the manifest of the staged chunks), signature and outbox.
fn publish_streamed_blocking(
    cx: &Context,
    draft: StreamedDraft,
) -> Result<(Published, bool), PublishError> {
    let StreamedDraft {
        document,
        validate_only,
        request_id,
        snapshot: streamed,
    } = draft;
    let next = match next_in_chain(cx, request_id.as_deref(), &document)? {
        Next::Answered(answer) => return Ok(answer),
        Next::Sign(next) => next,
    };
    let member = AdmissionContext::new(&cx.federation, &cx.node_id, next.now, None)?;
    let admission = member.with_catalogue(Some(&streamed.catalogue.catalogue));
    let head_seq = next.head_seq;
    let statement = Statement {
        header: next.header(cx, DocumentKind::IndicatorSnapshot, &document),
        body: Body::Indicators(rcpfed_core::statement::IndicatorSnapshot {
            indicator: streamed.indicator.clone(),
            observations: Vec::new(),
            chunks: None,
        }),
    };
    let warnings = streamed_warnings(&streamed, &statement, &admission, head_seq)?;
    if let Some(refusal) = &streamed.cut_error {
        return Err(refusal.clone().into());
    }
    sign_streamed(
        cx,
        &streamed,
        statement,
        &admission,
        warnings,
        validate_only,
        request_id,
    )
}

/// The findings of a streamed snapshot: its header's, the stream's, and the actions' (checked
/// against the head this statement follows); the warnings with notes on what was not checked.
fn streamed_warnings(
    streamed: &stream::StreamedSnapshot,
    statement: &Statement,
    admission: &AdmissionContext,
    head_seq: u64,
) -> Result<Vec<String>, PublishError> {
    use stream::ActionCheck;
    let mut findings =
        rcpfed_core::validate::check_header_rules(statement, &admission.validation())?;
    findings.absorb(streamed.findings.clone());
    let mut notes = Vec::new();
    match &streamed.actions {
        // Judged against the mirror of the head this statement follows.
        ActionCheck::Checked {
            head_seq: checked_at,
            violations,
            at_least,
        } if *checked_at == head_seq => {
            findings.add_errors(violations.clone(), violations.len(), *at_least);
        }
        // Another statement was signed while the snapshot streamed: the check judged an older
        // state, so it counts as not done.
        ActionCheck::Checked { .. } => notes.push(actions_not_checked(head_seq)),
        ActionCheck::Skipped(note) => notes.push(note.clone()),
        ActionCheck::NotApplicable => {}
    }
    let total_warnings = findings.total_warnings;
    let mut warnings = warning_lines(findings.into_result()?, total_warnings);
    for note in notes {
        if warnings.len() < MAX_VIOLATIONS {
            warnings.push(note);
        }
    }
    Ok(warnings)
}

/// Seals a streamed snapshot in its signed form (inline, or the manifest of its staged
/// chunks), then signs and queues it.
fn sign_streamed(
    cx: &Context,
    streamed: &stream::StreamedSnapshot,
    mut statement: Statement,
    admission: &AdmissionContext,
    warnings: Vec<String>,
    validate_only: bool,
    request_id: Option<String>,
) -> Result<(Published, bool), PublishError> {
    use stream::StreamedBody;
    match &streamed.body {
        StreamedBody::Small(observations) => {
            if let Body::Indicators(snapshot) = &mut statement.body {
                snapshot.observations = observations.clone();
            }
            seal_sign_and_queue(
                cx,
                statement,
                admission,
                warnings,
                validate_only,
                request_id,
            )
        }
        StreamedBody::Chunked { manifest, .. } => {
            let payload = seal_manifest(&mut statement, manifest.clone(), admission)?;
            sign_and_queue(
                cx,
                Sealed {
                    statement,
                    payload,
                    warnings,
                    validate_only,
                    request_id,
                },
                &mut streamed.chunk_reader(),
            )
        }
    }
}

/// Where a publication stands before anything is checked.
enum Next {
    /// The request id was used before: the first publication's answer.
    Answered((Published, bool)),
    /// A new statement goes next in the chain.
    Sign(NextStatement),
}

/// The place of the next statement in this node's chain, read when the publication starts.
struct NextStatement {
    /// The chain's head (0 before the first statement).
    head_seq: u64,
    prev_digest: Option<Digest>,
    /// The document's next revision.
    revision: u32,
    now: time::OffsetDateTime,
}

impl NextStatement {
    /// The header of the next statement: `kind`, revision of `document`.
    fn header(&self, cx: &Context, kind: DocumentKind, document: &str) -> Header {
        Header {
            federation_id: cx.federation.federation_id.clone(),
            node_id: cx.node_id.clone(),
            seq: self.head_seq + 1,
            prev_digest: self.prev_digest,
            issued_at: self.now,
            kind,
            schema_version: 1,
            document: document.to_string(),
            revision: self.revision,
        }
    }
}

/// The answer to a repeated request id, or where the next statement of `document` goes.
fn next_in_chain(
    cx: &Context,
    request_id: Option<&str>,
    document: &str,
) -> Result<Next, PublishError> {
    if let Some(id) = request_id
        && let Some(own) = cx.store.own_by_request_id(id)?
    {
        return Ok(Next::Answered((published_from_own(&own)?, false)));
    }
    let (head_seq, prev_digest) = match cx.store.head()? {
        Some((seq, digest)) => (seq, Some(digest)),
        None => (0, None),
    };
    Ok(Next::Sign(NextStatement {
        head_seq,
        prev_digest,
        revision: cx.store.latest_revision(document)? + 1,
        now: rcpfed_core::clock::now_utc(),
    }))
}

/// The whole publication; returns whether a new statement was signed.
fn publish_blocking(cx: &Context, draft: Draft) -> Result<(Published, bool), PublishError> {
    let Draft {
        document,
        mut body,
        validate_only,
        request_id,
    } = draft;
    let next = match next_in_chain(cx, request_id.as_deref(), &document)? {
        Next::Answered(answer) => return Ok(answer),
        Next::Sign(next) => next,
    };
    let member = AdmissionContext::new(&cx.federation, &cx.node_id, next.now, None)?;
    admit_draft_body(&body)?;
    let catalogue = match &body {
        // Without the catalogue the node cannot check codes, units or ranges, nor tell
        // aggregates from states, so it refuses rather than sign unchecked data.
        Body::Indicators(_) => Some(cx.catalogue.clone().ok_or_else(no_catalogue)?),
        Body::Policy(_) => None,
    };
    // One key per observation: a dimension left out is signed as its catalogue default.
    if let (Body::Indicators(snapshot), Some(catalogue)) = (&mut body, &catalogue) {
        fill_key_defaults(&catalogue.catalogue, snapshot);
    }
    let admission = member.with_catalogue(catalogue.as_ref().map(|c| c.catalogue.as_ref()));
    let head_seq = next.head_seq;
    let kind = match &body {
        Body::Policy(_) => DocumentKind::PolicySummary,
        Body::Indicators(_) => DocumentKind::IndicatorSnapshot,
    };
    let statement = Statement {
        header: next.header(cx, kind, &document),
        body,
    };
    // The same admission the hub runs, so problems are reported here, before signing, all in
    // one pass: the statement rules, the catalogue and the actions against the mirror.
    let mut notes = Vec::new();
    let findings = admit_inline(&statement, &admission, |indicator, observations| {
        check_actions(cx, head_seq, indicator, observations, &mut notes)
    })?;
    let total_warnings = findings.total_warnings;
    let mut warnings = warning_lines(findings.into_result()?, total_warnings);
    for note in notes {
        if warnings.len() < MAX_VIOLATIONS {
            warnings.push(note);
        }
    }
    seal_sign_and_queue(
        cx,
        statement,
        &admission,
        warnings,
        validate_only,
        request_id,
    )
}

/// Puts a statement whose observations are in memory in its signed form ([`seal`]: inline,
/// or cut into chunks), then signs and queues it.
fn seal_sign_and_queue(
    cx: &Context,
    mut statement: Statement,
    admission: &AdmissionContext,
    warnings: Vec<String>,
    validate_only: bool,
    request_id: Option<String>,
) -> Result<(Published, bool), PublishError> {
    let (payload, chunks) = seal(&mut statement, admission)?;
    let mut chunks = chunks.into_iter();
    sign_and_queue(
        cx,
        Sealed {
            statement,
            payload,
            warnings,
            validate_only,
            request_id,
        },
        &mut || Ok(chunks.next()),
    )
}

/// A statement checked and in its signed form, with what its answer needs.
struct Sealed {
    statement: Statement,
    payload: Vec<u8>,
    warnings: Vec<String>,
    validate_only: bool,
    request_id: Option<String>,
}

/// Signs `sealed` and queues it with its chunks (read one at a time from `next_chunk`) in one
/// transaction, or only answers for a validation-only run.
fn sign_and_queue(
    cx: &Context,
    sealed: Sealed,
    next_chunk: &mut dyn FnMut() -> Result<Option<(Digest, Vec<u8>)>, StoreError>,
) -> Result<(Published, bool), PublishError> {
    let Sealed {
        statement,
        payload,
        warnings,
        validate_only,
        request_id,
    } = sealed;
    let document = statement.header.document.clone();
    let revision = statement.header.revision;
    let (observation_count, chunk_count) = counts(&statement);
    if validate_only {
        return Ok((
            Published {
                seq: 0,
                digest: None,
                revision,
                document,
                warnings,
                observation_count,
                chunk_count,
            },
            false,
        ));
    }
    let envelope = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &cx.key);
    // Nothing the hub would refuse for its shape enters the chain, where it would block every
    // later statement (seal already kept the payload within the limit).
    rcpfed_core::limits::check_envelope(&envelope, rcpfed_core::limits::MAX_PAYLOAD_BYTES)?;
    let own = OwnStatement {
        seq: statement.header.seq,
        digest: envelope.digest(),
        document: document.clone(),
        revision,
        envelope: envelope.encode(),
        created_at_ms: crate::now_ms(),
        request_id,
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: String::new(),
        receipt: None,
        feed_index: None,
        chunked: matches!(&statement.body, Body::Indicators(s) if s.chunks.is_some()),
    };
    // The chunks are stored in the statement's transaction: the outbox sends them from the
    // store and the mirror's apply step reads them there; a refused append (a concurrent
    // publish took the seq) stores none.
    cx.store.append_own_streamed(&own, next_chunk)?;
    tracing::info!(
        seq = own.seq,
        %document,
        revision,
        digest = %own.digest,
        observations = observation_count,
        chunks = chunk_count,
        "statement signed and queued"
    );
    Ok((
        Published {
            seq: own.seq,
            digest: Some(own.digest),
            revision,
            document,
            warnings,
            observation_count,
            chunk_count,
        },
        true,
    ))
}

/// Whether this node's own statement `head_seq` (its head; 0: none yet) has come back through
/// the feed into its mirror and is applied to its view: only then does the view show what the
/// hub will check the next snapshot's actions against.
pub(crate) fn own_head_mirrored(
    store: &dyn crate::NodeStorage,
    node_id: &str,
    head_seq: u64,
) -> Result<bool, StoreError> {
    if head_seq == 0 {
        return Ok(true);
    }
    let Some(mirrored) = store.mirror_by_node_seq(node_id, head_seq)? else {
        return Ok(false);
    };
    Ok(store.applied_feed_size()? >= mirrored.feed_index)
}

/// Checks the snapshot's actions (APPEND of a new key, REPLACE/DELETE of one in force)
/// against this node's observations in its mirror, for [`admit_inline`]. The hub's check is
/// authoritative: the mirror knows this node's statements only once they come back through
/// the feed, so while one of them has not, the check would judge against an old state and is
/// skipped with a note (None).
fn check_actions(
    cx: &Context,
    head_seq: u64,
    indicator: &str,
    observations: &[Observation],
    notes: &mut Vec<String>,
) -> Result<Option<Vec<Violation>>, PublishError> {
    if !own_head_mirrored(cx.store.as_ref(), &cx.node_id, head_seq)? {
        notes.push(actions_not_checked(head_seq));
        return Ok(None);
    }
    let violations = cx.store.check_observation_actions(
        &cx.node_id,
        indicator,
        observations,
        MAX_ACTION_VIOLATIONS,
    )?;
    Ok(Some(violations))
}

/// The note of a publication whose actions were not checked: this node's statement
/// `head_seq` has not come back through the feed into the view, so the view would judge an old
/// state.
pub(crate) fn actions_not_checked(head_seq: u64) -> String {
    format!(
        "indicator_snapshot.observations: the actions (append, replace, delete) were not checked against earlier revisions, because statement {head_seq} of this node has not come back through the hub's feed into this node's indicator view yet; the hub checks them on delivery"
    )
}

/// Catalogue warnings as plain lines "field: description", at most [`MAX_VIOLATIONS`]; the
/// last line says how many more there were.
fn warning_lines(listed: Vec<Violation>, total: usize) -> Vec<String> {
    let mut lines: Vec<String> = listed
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    if total > lines.len() {
        lines.truncate(MAX_VIOLATIONS - 1);
        let more = total - lines.len();
        lines.push(format!(
            "and {more} more observations outside a plausible range (warnings)"
        ));
    }
    lines
}

/// The payload to sign and the chunks to stage (SHA-256, bytes) before it is stored.
type PayloadAndChunks = (Vec<u8>, Vec<(Digest, Vec<u8>)>);

/// Puts the statement in its signed form and returns the payload and the chunks to stage. A
/// snapshot with more than [`OBSERVATIONS_PER_CHUNK`] observations, or whose inline form would
/// exceed the hub's payload limit, is signed as a chunk manifest: the signature stays cheap and
/// no message nears a size limit.
fn seal(
    statement: &mut Statement,
    admission: &AdmissionContext,
) -> Result<PayloadAndChunks, Rejection> {
    let inline_fits = match &statement.body {
        Body::Indicators(s) => s.observations.len() <= OBSERVATIONS_PER_CHUNK,
        Body::Policy(_) => true,
    };
    if inline_fits {
        let payload = statement.encode();
        let fits = within_payload_limit(&payload, "signed statement", ", so split the document");
        match fits {
            Ok(()) => return Ok((payload, Vec::new())),
            // The hub refuses payloads over the limit; refusing here keeps them out of the
            // chain, where one would block every later statement.
            Err(too_large) if matches!(statement.body, Body::Policy(_)) => return Err(too_large),
            // A snapshot is cut into chunks instead.
            Err(_) => {}
        }
    }
    let Body::Indicators(snapshot) = &mut statement.body else {
        return Err(Rejection::invalid(
            reasons::VALIDATION_FAILED,
            "only indicator snapshots can be cut into chunks",
        ));
    };
    let observations = std::mem::take(&mut snapshot.observations);
    let (manifest, bytes) = cut::cut_whole(observations)?;
    let chunks = manifest
        .chunks
        .iter()
        .map(|c| c.sha256)
        .zip(bytes)
        .collect();
    let payload = seal_manifest(statement, manifest, admission)?;
    Ok((payload, chunks))
}

/// Puts `manifest` in the snapshot `statement` carries and returns the payload to sign, after
/// the rules the hub checks first on that form.
fn seal_manifest(
    statement: &mut Statement,
    manifest: ChunkManifest,
    admission: &AdmissionContext,
) -> Result<Vec<u8>, Rejection> {
    if let Body::Indicators(snapshot) = &mut statement.body {
        snapshot.observations = Vec::new();
        snapshot.chunks = Some(manifest);
    }
    // The manifest form is what the hub checks first: run the same rules on it.
    admit_signed_form(statement, admission)?;
    let payload = statement.encode();
    within_payload_limit(&payload, "chunk manifest", "")?;
    Ok(payload)
}

/// PAYLOAD_TOO_LARGE unless `payload` (the `form` to be signed) is within the hub's payload
/// limit; `advice` ends the message.
fn within_payload_limit(payload: &[u8], form: &str, advice: &str) -> Result<(), Rejection> {
    let max = rcpfed_core::limits::MAX_PAYLOAD_BYTES;
    if payload.len() <= max {
        return Ok(());
    }
    Err(Rejection::new(
        RejectClass::TooLarge,
        reasons::PAYLOAD_TOO_LARGE,
        format!(
            "the {form} would be {} bytes; the hub accepts at most {max} bytes per statement{advice}",
            payload.len()
        ),
    ))
}

/// Observation and chunk counts of a statement in its signed form.
fn counts(statement: &Statement) -> (u64, u32) {
    match &statement.body {
        Body::Indicators(s) => match &s.chunks {
            Some(m) => (m.observation_count, m.chunks.len() as u32),
            None => (s.observations.len() as u64, 0),
        },
        Body::Policy(_) => (0, 0),
    }
}

/// The answer to a repeated request id: the first publication, read back from the outbox.
fn published_from_own(own: &OwnStatement) -> Result<Published, StoreError> {
    let statement = SignedEnvelope::decode(&own.envelope)
        .and_then(|e| Statement::decode(&e.payload))
        .map_err(|e| StoreError::Corrupt(format!("own statement {}: {e}", own.seq)))?;
    let (observation_count, chunk_count) = counts(&statement);
    Ok(Published {
        seq: own.seq,
        digest: Some(own.digest),
        revision: own.revision,
        document: own.document.clone(),
        warnings: Vec::new(),
        observation_count,
        chunk_count,
    })
}
