//! HubService, statements: submission, reads, lists, flags and equivocation evidence.

use super::{
    Hub, blocking, chunks_required, kind_filter, non_empty, receipt_envelope, record, reject,
};
use crate::ingest::{SnapshotObservations, SnapshotPayload};
use crate::quotas::{self};
use prost::Message as _;
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_core::statement::Body;
use rcpfed_grpc::authorize;
use rcpfed_grpc::records::parse_statement_name;
use rcpfed_grpc::status::{
    invalid_field, next_page, next_page_after, not_found, page_size, parse_page_token,
};
use rcpfed_proto::v1;
use rcpfed_store::{DecodedStatement, StatementFilter, StoredFlag};
use std::sync::Arc;
use tonic::{Request, Response, Status};

impl Hub {
    pub(super) async fn submit_statement(
        &self,
        request: Request<v1::SubmitStatementRequest>,
    ) -> Result<Response<v1::SubmitStatementResponse>, Status> {
        // One registry version decides the whole request.
        let federation = self.federation.get();
        let member_id = authorize(&request, &federation, Role::Publisher)?
            .id
            .clone();
        self.writable("the statement")?;
        let envelope = request.into_inner().envelope.ok_or_else(|| {
            invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "envelope is required",
            )
        })?;
        let refused = |rejection: Rejection| {
            tracing::info!(member = %member_id, reason = rejection.reason, message = %rejection.message, "statement refused");
            reject(rejection)
        };
        // Held until the answer: one member cannot queue unbounded work on the pool.
        let _turn = self.submission_turn(&member_id)?;
        let (mut verified, statement, catalogue_outcome) = self
            .verify_on_pool(&federation, &member_id, envelope)
            .await?
            .map_err(refused)?;
        // Decoded once here, shared by the action check and the commit's apply step.
        let statement = Arc::new(statement);
        if let Body::Indicators(snapshot) = &statement.body {
            if snapshot.chunks.is_some() {
                return Err(refused(chunks_required(
                    "this snapshot lists chunks in a manifest; send it with SubmitSnapshot, followed by its chunks",
                )));
            }
            match catalogue_outcome {
                Some(Ok(warnings)) => {
                    self.note_warnings(&member_id, &snapshot.indicator, warnings);
                }
                // An envelope accepted earlier still gets its original receipt (from the
                // sequencer) even if it no longer passes: nothing new is stored.
                Some(Err(rejection)) if self.stored(verified.digest).await?.is_none() => {
                    return Err(refused(rejection));
                }
                Some(Err(_)) | None => {}
            }
            verified.snapshot = Some(Arc::new(SnapshotPayload {
                indicator: snapshot.indicator.clone(),
                observations: SnapshotObservations::Inline(Arc::clone(&statement)),
            }));
        }
        verified.decoded = DecodedStatement::of(statement);
        let answer = self.sequence(verified).await?;
        Ok(Response::new(v1::SubmitStatementResponse {
            receipt: Some(receipt_envelope(&answer.receipt)?),
            duplicate: answer.duplicate,
            log: answer.log,
        }))
    }

    pub(super) async fn get_statement(
        &self,
        request: Request<v1::GetStatementRequest>,
    ) -> Result<Response<v1::GetStatementResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let name = request.into_inner().name;
        let (node, seq) = parse_statement_name(&name).ok_or_else(|| {
            invalid_field(
                "name",
                reasons::INVALID_ARGUMENT,
                format!("{name:?} is not a statement name; expected nodes/{{node_id}}/statements/{{seq}}"),
            )
        })?;
        let store = Arc::clone(&self.store);
        let found = blocking("reading a statement", move || {
            store.statement_by_node_seq(&node, seq)
        })
        .await?;
        let st = found.ok_or_else(|| not_found(format!("statement {name} does not exist")))?;
        let mut statement = record(&st);
        let store = Arc::clone(&self.store);
        let leaf_index = st.feed_index - 1;
        statement.log = blocking("building the inclusion proof", move || {
            match store.latest_checkpoint()? {
                Some(cp) if leaf_index < cp.size => {
                    crate::log::log_proof(store.as_ref(), leaf_index, &cp).map(Some)
                }
                _ => Ok(None),
            }
        })
        .await?;
        Ok(Response::new(v1::GetStatementResponse {
            statement: Some(statement),
        }))
    }

    pub(super) async fn list_statements(
        &self,
        request: Request<v1::ListStatementsRequest>,
    ) -> Result<Response<v1::ListStatementsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let filter = StatementFilter {
            node_id: non_empty(req.node_id),
            kind: kind_filter(req.kind)?,
            document: non_empty(req.document),
        };
        let store = Arc::clone(&self.store);
        // Read row by row up to MAX_PAGE_BYTES of stored bytes: a page of the largest
        // statements is never held whole.
        let (rows, more) = blocking("listing statements", move || {
            store.list_statements_within(&filter, after, limit, rcpfed_core::limits::MAX_PAGE_BYTES)
        })
        .await?;
        // A page stops before MAX_PAGE_BYTES encoded (always at least one record), so a page of
        // the largest statements still fits a default 4 MiB client.
        let mut statements = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for row in &rows {
            let r = record(row);
            bytes += r.encoded_len() + 8;
            if !statements.is_empty() && bytes > rcpfed_core::limits::MAX_PAGE_BYTES {
                break;
            }
            statements.push(r);
        }
        let next_page_token = next_page_after(&rows, statements.len(), more, |r| r.feed_index);
        Ok(Response::new(v1::ListStatementsResponse {
            statements,
            next_page_token,
        }))
    }

    pub(super) async fn list_equivocations(
        &self,
        request: Request<v1::ListEquivocationsRequest>,
    ) -> Result<Response<v1::ListEquivocationsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Admin)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let node = non_empty(req.node_id);
        let store = Arc::clone(&self.store);
        // Paged by bytes too: each entry carries two envelopes, so a page of full-size ones
        // would not fit in a response.
        let (rows, more) = blocking("listing equivocations", move || {
            store.list_equivocations_within(
                node.as_deref(),
                after,
                limit,
                quotas::EQUIVOCATION_PAGE_BYTES,
            )
        })
        .await?;
        let next_page_token = match rows.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        let equivocations = rows
            .into_iter()
            .map(|e| v1::Equivocation {
                node_id: e.node_id,
                seq: e.seq,
                accepted_digest: e.accepted_digest.0.to_vec(),
                accepted_envelope: v1::Envelope::decode(e.accepted_envelope.as_slice()).ok(),
                conflicting_digest: e.conflicting_digest.0.to_vec(),
                conflicting_envelope: v1::Envelope::decode(e.conflicting_envelope.as_slice()).ok(),
                detected_at: Some(rcpfed_grpc::timestamp_from_ms(e.detected_at_ms)),
            })
            .collect();
        Ok(Response::new(v1::ListEquivocationsResponse {
            equivocations,
            next_page_token,
        }))
    }

    pub(super) async fn list_flagged_statements(
        &self,
        request: Request<v1::ListFlaggedStatementsRequest>,
    ) -> Result<Response<v1::ListFlaggedStatementsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let store = Arc::clone(&self.store);
        let mut rows = blocking("listing flagged statements", move || {
            store.list_flags(after, limit + 1)
        })
        .await?;
        let next_page_token = next_page(&mut rows, limit, |r| r.id);
        let statements = rows
            .into_iter()
            .map(|StoredFlag { flag: f, .. }| v1::FlaggedStatement {
                name: rcpfed_grpc::records::statement_name(&f.node_id, f.seq),
                reason: f.reason,
                key_id: f.key_id,
                registry_version: f.registry_version,
                flagged_at: Some(rcpfed_grpc::timestamp_from_ms(f.flagged_at_ms)),
            })
            .collect();
        Ok(Response::new(v1::ListFlaggedStatementsResponse {
            statements,
            next_page_token,
        }))
    }
}
