//! HubService, the membership registry: versions published, read and listed, and the members in force.

use super::{Hub, blocking, reject};
use crate::ingest::{IngestError, IngestOutcome};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Role;
use rcpfed_core::rejection::reasons;
use rcpfed_grpc::authorize;
use rcpfed_grpc::status::{internal, invalid_field, not_found, page_size};
use rcpfed_proto::v1;
use std::sync::Arc;
use tonic::{Request, Response, Status};

impl Hub {
    pub(super) async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let federation = self.federation.get();
        let members = federation
            .members()
            .map(|m| v1::Member {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.iter().map(|r| r.as_str().to_string()).collect(),
                spiffe_id: m.spiffe_id.clone(),
                member_states: m
                    .states
                    .iter()
                    .map(|s| v1::MemberState {
                        iso3: s.iso3.clone(),
                        since: s.since.map(|d| d.to_string()).unwrap_or_default(),
                        until: s.until.map(|d| d.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                keys: m
                    .keys
                    .iter()
                    .map(|k| v1::VerifyKey {
                        key_id: k.key_id.clone(),
                        public_key: k.to_bytes().to_vec(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::ListMembersResponse {
            federation_id: self.federation.get().federation_id.clone(),
            members,
        }))
    }

    pub(super) async fn publish_registry(
        &self,
        request: Request<v1::PublishRegistryRequest>,
    ) -> Result<Response<v1::PublishRegistryResponse>, Status> {
        let admin = authorize(&request, &self.federation.get(), Role::Admin)?
            .id
            .clone();
        self.writable("the registry version")?;
        let envelope = request.into_inner().registry.ok_or_else(|| {
            invalid_field("registry", reasons::FIELD_REQUIRED, "registry is required")
        })?;
        let envelope = SignedEnvelope::from_proto(envelope);
        // A registry version is logged and fed to every node like a statement: bounded the
        // same way, before its signatures are checked.
        rcpfed_core::limits::check_envelope(&envelope, rcpfed_core::limits::MAX_HUB_DOCUMENT_BYTES)
            .map_err(reject)?;
        let mut current = self.registry.lock().await;
        if envelope.digest() == current.digest {
            // A retry of the version in force: answer as the first time.
            return self.answer_registry_retry(&current).await;
        }
        let next = rcpfed_core::registry::verify_next(
            &current.registry,
            &current.digest,
            &envelope,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|r| {
            tracing::warn!(%admin, reason = r.reason, message = %r.message, "registry version refused");
            reject(r)
        })?;
        let federation = next.to_federation().map_err(reject)?;
        let state = crate::registry::RegistryState {
            registry: next,
            digest: envelope.digest(),
            envelope,
            previous: Some(current.registry.clone()),
        };
        let statement = crate::registry::as_statement(&state, Some(current.digest));
        let (leaf_index, checkpoint) = self.log_registry_version(statement).await?;
        // Logged and durable: put it in force, then flag what its revocations reach.
        self.federation.set(federation);
        let previous = std::mem::replace(&mut *current, state);
        let version = current.registry.version;
        tracing::info!(%admin, version, "registry version in force");
        let store = Arc::clone(&self.store);
        let next_registry = current.registry.clone();
        let (log, newly_flagged) = blocking("flagging statements of revoked keys", move || {
            let flagged =
                crate::registry::flag_revoked(store.as_ref(), &previous.registry, &next_registry)?;
            let log = crate::log::log_proof(store.as_ref(), leaf_index, &checkpoint)?;
            Ok((Some(log), flagged))
        })
        .await?;
        if newly_flagged > 0 {
            tracing::warn!(
                version,
                newly_flagged,
                "statements flagged: signed with keys revoked before their acceptance"
            );
        }
        Ok(Response::new(v1::PublishRegistryResponse {
            version,
            log,
            newly_flagged,
        }))
    }

    /// The answer to a retried publication of the version in force: its inclusion proof
    /// against the latest checkpoint, as the first time, and the flags its revocations call for
    /// that are still missing (the first publication may have been cut short between logging
    /// and flagging).
    async fn answer_registry_retry(
        &self,
        current: &crate::registry::RegistryState,
    ) -> Result<Response<v1::PublishRegistryResponse>, Status> {
        let version = current.registry.version;
        let store = Arc::clone(&self.store);
        let state = current.clone();
        let (log, newly_flagged) = blocking("building the inclusion proof", move || {
            let flagged = crate::registry::reflag_in_force(store.as_ref(), &state)?;
            let hub_id = &state.registry.hub_id;
            let Some(st) = store.statement_by_node_seq(hub_id, version)? else {
                return Ok((None, flagged));
            };
            let log = match store.latest_checkpoint()? {
                Some(cp) => Some(crate::log::log_proof(
                    store.as_ref(),
                    st.feed_index - 1,
                    &cp,
                )?),
                None => None,
            };
            Ok((log, flagged))
        })
        .await?;
        if newly_flagged > 0 {
            tracing::warn!(
                version,
                newly_flagged,
                "statements flagged on a retry: signed with keys revoked before their acceptance"
            );
        }
        Ok(Response::new(v1::PublishRegistryResponse {
            version,
            log,
            newly_flagged,
        }))
    }

    /// Logs a new registry version through the ingest pipeline: its leaf index and the
    /// checkpoint committed with it.
    async fn log_registry_version(
        &self,
        statement: crate::ingest::VerifiedStatement,
    ) -> Result<(u64, Arc<rcpfed_store::StoredCheckpoint>), Status> {
        match self.ingest.submit(statement).await {
            Ok(IngestOutcome::Accepted {
                leaf_index,
                checkpoint,
                ..
            }) => Ok((leaf_index, checkpoint)),
            Ok(IngestOutcome::Duplicate { .. }) => Err(internal(
                "logging the registry version",
                &"it was already logged",
            )),
            Err(IngestError::Rejected(r)) => Err(reject(r)),
            Err(IngestError::Stopped) => {
                Err(Status::unavailable("the hub is shutting down; retry later"))
            }
            Err(IngestError::NotLeader) => Err(rcpfed_grpc::status::not_leader(
                "the registry version was refused: this hub is a standby",
                None,
            )),
            Err(e @ IngestError::Store(_)) => Err(internal("logging the registry version", &e)),
            Err(IngestError::Unavailable(e)) => Err(rcpfed_grpc::status::store_status(
                "logging the registry version",
                &e,
            )),
        }
    }

    pub(super) async fn get_registry(
        &self,
        request: Request<v1::GetRegistryRequest>,
    ) -> Result<Response<v1::GetRegistryResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let version = request.into_inner().version;
        let current = self.registry.lock().await.clone();
        let envelope = if version == 0 || version == current.registry.version {
            current.envelope
        } else {
            let store = Arc::clone(&self.store);
            let hub_id = current.registry.hub_id.clone();
            let row = blocking("reading a registry version", move || {
                store.statement_by_node_seq(&hub_id, version)
            })
            .await?
            .filter(|r| r.kind == crate::registry::REGISTRY_KIND)
            .ok_or_else(|| not_found(format!("registry version {version} does not exist")))?;
            SignedEnvelope::decode(&row.envelope)
                .map_err(|r| internal("reading a registry version", &r))?
        };
        let document = rcpfed_core::registry::decode_and_check(&envelope.payload)
            .map(|r| r.to_proto())
            .ok();
        Ok(Response::new(v1::GetRegistryResponse {
            registry: Some(envelope.to_proto()),
            document,
        }))
    }

    pub(super) async fn list_registry_versions(
        &self,
        request: Request<v1::ListRegistryVersionsRequest>,
    ) -> Result<Response<v1::ListRegistryVersionsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let hub_id = self.registry.lock().await.registry.hub_id.clone();
        let store = Arc::clone(&self.store);
        let versions = blocking("listing registry versions", move || {
            crate::registry::stored_versions(store.as_ref(), &hub_id)
        })
        .await?;
        let versions = versions
            .into_iter()
            .skip(usize::try_from(req.after_version).unwrap_or(usize::MAX))
            .take(limit)
            .map(|e| e.to_proto())
            .collect();
        Ok(Response::new(v1::ListRegistryVersionsResponse { versions }))
    }
}
