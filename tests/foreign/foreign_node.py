#!/usr/bin/env python3
"""A foreign rcpfed member, written from proto/rcpfed/v1/*.proto and docs/spec/*.md alone.

It acts as one member organisation against a real hub over mutual TLS:

  a. bootstraps the registry from root-trust.toml (registry.md §3, §6) and mirrors the feed from
     0 to the backlog end, verifying every entry as a node must (feed-and-nodes.md §2, log.md §7),
     and witnesses every checkpoint it meets (log.md §6);
  b. signs and submits its own policy summary (statement.md, envelope.md), verifies the receipt
     (ingest.md §5), sees its entry on the feed, and cosigns the checkpoint (log.md §5);
  c. submits bad inputs and checks the gRPC status and ErrorInfo of errors.md.

Usage: foreign_node.py --hub localhost:PORT --pki FED_DIR --member ID [--proto-dir DIR]
Exit status 0 when every check passed; 1 with the failed check on stderr otherwise.
"""

import argparse
import base64
import datetime
import glob
import hashlib
import json
import os
import socket
import ssl
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ed25519_strict  # noqa: E402
import tlog  # noqa: E402

STATEMENT_TYPE = "application/vnd.rcpfed.statement.v1+protobuf"
RECEIPT_TYPE = "application/vnd.rcpfed.receipt.v1+protobuf"
REGISTRY_TYPE = "application/vnd.rcpfed.registry.v1+protobuf"
CATALOGUE_TYPE = "application/vnd.rcpfed.catalogue.v1+protobuf"
COHERENCE_TYPE = "application/vnd.rcpfed.coherence-report.v1+protobuf"
ERROR_DOMAIN = "rcpfed.v1"
ROLES = {"publisher", "reader", "witness", "admin"}

# google.rpc.Status, ErrorInfo and BadRequest (the public googleapis definitions, field numbers as
# published), under a file name of our own so nothing else in the process clashes with it.
RPC_STATUS_PROTO = """
syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
message RetryInfo { google.protobuf.Duration retry_delay = 1; }
message BadRequest {
  message FieldViolation { string field = 1; string description = 2; string reason = 3; }
  repeated FieldViolation field_violations = 1;
}
"""


class Failure(Exception):
    """A check failed: the foreign node stops here (exit status 1)."""


def fail(message):
    raise Failure(message)


def log(message):
    print(f"foreign: {message}", flush=True)


def compile_protos(proto_dir):
    """Compiles the rcpfed protos (and our google.rpc subset) into a temporary directory."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="rcpfed-foreign-")
    extra = os.path.join(out, "src")
    os.makedirs(os.path.join(extra, "foreign_rpc"))
    with open(os.path.join(extra, "foreign_rpc", "status.proto"), "w") as f:
        f.write(RPC_STATUS_PROTO)
    files = sorted(glob.glob(os.path.join(proto_dir, "rcpfed", "v1", "*.proto")))
    files = [os.path.relpath(p, proto_dir) for p in files] + ["foreign_rpc/status.proto"]
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{extra}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if code != 0:
        fail(f"protoc failed with status {code}")
    sys.path.insert(0, out)


def digest(payload):
    return hashlib.sha256(payload).digest()


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def ts_present(ts):
    return ts is not None and 0 <= ts.nanos <= 999_999_999


def ts_datetime(ts):
    return datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc) + datetime.timedelta(microseconds=ts.nanos // 1000)


# ---------------------------------------------------------------------------------------------
# Envelopes (envelope.md §1, §4)
# ---------------------------------------------------------------------------------------------


def check_envelope_bounds(env, what):
    """envelope.md §1: bounds on the raw envelope, before any hashing."""
    if len(env.payload) > 1_048_576:
        fail(f"{what}: payload larger than 1 MiB")
    if len(env.payload_type.encode()) > 128:
        fail(f"{what}: payload type longer than 128 bytes")
    if len(env.signatures) > 32:
        fail(f"{what}: more than 32 signatures")
    for i, sig in enumerate(env.signatures):
        kid = sig.key_id
        if len(kid) != 24 or not kid.startswith("ed25519:") or any(c not in "0123456789abcdef" for c in kid[8:]):
            fail(f"{what}: signatures[{i}].key_id {kid!r} is not a key id")
        if len(sig.sig) != 64:
            fail(f"{what}: signatures[{i}].sig is not 64 bytes")


def verify_envelope(env, expected_type, known_keys, what):
    """envelope.md §4 steps 1–3: returns the key id of the first signature that verifies.

    `known_keys` maps key id → raw public key."""
    check_envelope_bounds(env, what)
    if env.payload_type != expected_type:
        fail(f"{what}: payload type {env.payload_type!r}, expected {expected_type!r} (UNKNOWN_PAYLOAD_TYPE)")
    if not env.signatures:
        fail(f"{what}: no signature (MISSING_SIGNATURE)")
    message = tlog.pae(env.payload_type, env.payload)
    first_error = None
    for sig in env.signatures:
        key = known_keys.get(sig.key_id)
        if key is None:
            first_error = first_error or f"UNKNOWN_KEY_ID {sig.key_id}"
            continue
        refusal = ed25519_strict.check_signature(key, message, sig.sig)
        if refusal is None:
            return sig.key_id
        first_error = first_error or f"BAD_SIGNATURE {sig.key_id} ({refusal})"
    fail(f"{what}: no signature verifies: {first_error}")


# ---------------------------------------------------------------------------------------------
# The registry (registry.md)
# ---------------------------------------------------------------------------------------------


class Registry:
    """A verified registry version in force."""

    def __init__(self, doc, payload):
        self.doc = doc
        self.digest = digest(payload)
        self.version = doc.version
        self.federation_id = doc.federation_id
        self.hub_id = doc.hub_id
        self.members = {m.id: m for m in doc.members}
        self.key_owner = {}
        self.keys = {}
        for m in doc.members:
            for k in m.keys:
                self.keys[k.key_id] = bytes(k.public_key)
                self.key_owner[k.key_id] = m.id
        hub = self.members[self.hub_id]
        self.hub_keys = {k.key_id: bytes(k.public_key) for k in hub.keys}
        if not hub.keys:
            fail("registry: the hub member has no key, so there is no log key")
        self.log_key = bytes(hub.keys[0].public_key)
        self.log_name = f"rcpfed/{self.federation_id}/log"
        self.root = [(k.key_id, bytes(k.public_key)) for k in doc.root.keys]
        self.threshold = doc.root.threshold

    def witnesses(self):
        return [m for m in self.doc.members if "witness" in m.roles]


def member_id_ok(text):
    return 1 <= len(text) <= 63 and text[0].isascii() and text[0].islower() and all(
        (c.isascii() and (c.islower() or c.isdigit())) or c == "-" for c in text
    )


def count_threshold(env, root_keys, threshold, what):
    """registry.md §3: distinct root public keys with a valid signature over the raw bytes."""
    message = tlog.pae(env.payload_type, env.payload)
    by_id = dict(root_keys)
    good = set()
    for sig in env.signatures:
        key = by_id.get(sig.key_id)
        if key is not None and ed25519_strict.check_signature(key, message, sig.sig) is None:
            good.add(key)
    if not env.signatures:
        fail(f"{what}: no signature (MISSING_SIGNATURE)")
    if len(good) < threshold:
        fail(f"{what}: {len(good)} root signatures, threshold {threshold} (REGISTRY_THRESHOLD_NOT_MET)")


def check_root_set(keys, threshold, what):
    seen = set()
    for kid, key in keys:
        refusal = ed25519_strict.check_public_key(key)
        if refusal is not None:
            fail(f"{what}: root key {kid} refused ({refusal}) (INVALID_ROOT)")
        if ed25519_strict.key_id(key) != kid:
            fail(f"{what}: root key id {kid} does not match its key (INVALID_ROOT)")
        if key in seen:
            fail(f"{what}: root key {kid} twice (INVALID_ROOT)")
        seen.add(key)
    if not 1 <= threshold <= len(keys):
        fail(f"{what}: threshold {threshold} of {len(keys)} keys (INVALID_ROOT)")


def check_document_rules(doc, what):
    """registry.md §2, the rules a foreign member needs to trust the keys and roles it uses."""
    if not (doc.HasField("issued_at") and doc.HasField("expires_at")):
        fail(f"{what}: issued_at and expires_at are required (FIELD_REQUIRED)")
    if len(doc.previous_digest) not in (0, 32):
        fail(f"{what}: previous_digest is not 32 bytes (INVALID_DIGEST)")
    if not doc.HasField("root"):
        fail(f"{what}: root is required (INVALID_ROOT)")
    check_root_set([(k.key_id, bytes(k.public_key)) for k in doc.root.keys], doc.root.threshold, what)
    if not member_id_ok(doc.federation_id):
        fail(f"{what}: federation id {doc.federation_id!r} breaks the member-id grammar")
    if doc.version < 1 or (len(doc.previous_digest) == 32) != (doc.version > 1):
        fail(f"{what}: version {doc.version} and previous_digest disagree")
    if ts_datetime(doc.expires_at) <= ts_datetime(doc.issued_at):
        fail(f"{what}: expires_at is not after issued_at")
    ids, spiffe_ids, key_bytes, key_ids = set(), set(), set(), set()
    root_bytes = {bytes(k.public_key) for k in doc.root.keys}
    for i, m in enumerate(doc.members):
        where = f"{what}: members[{i}]"
        if not member_id_ok(m.id) or m.id in ids:
            fail(f"{where}: id {m.id!r} is invalid or repeated")
        ids.add(m.id)
        if m.spiffe_id in spiffe_ids or not (
            m.spiffe_id.startswith(f"spiffe://{doc.federation_id}/node/")
            or m.spiffe_id.startswith(f"spiffe://{doc.federation_id}/operator/")
        ):
            fail(f"{where}: spiffe id {m.spiffe_id!r} is invalid or repeated")
        spiffe_ids.add(m.spiffe_id)
        if any(r not in ROLES for r in m.roles) or len(set(m.roles)) != len(m.roles):
            fail(f"{where}: roles {list(m.roles)} (UNKNOWN_ROLE)")
        if ("publisher" in m.roles or "witness" in m.roles) and not m.keys:
            fail(f"{where}: publisher or witness without a key (MEMBER_WITHOUT_KEY)")
        for j, k in enumerate(m.keys):
            key = bytes(k.public_key)
            refusal = ed25519_strict.check_public_key(key)
            if refusal is not None or ed25519_strict.key_id(key) != k.key_id:
                fail(f"{where}.keys[{j}]: key {k.key_id} refused ({refusal or 'key id mismatch'}) (INVALID_PUBLIC_KEY)")
            if key in key_bytes or k.key_id in key_ids or key in root_bytes:
                fail(f"{where}.keys[{j}]: key {k.key_id} listed twice (DUPLICATE_KEY_ID)")
            key_bytes.add(key)
            key_ids.add(k.key_id)
            if k.status not in (1, 2, 3):
                fail(f"{where}.keys[{j}].status: {k.status} (INVALID_ENUM)")
            if not k.HasField("valid_from") or (k.status == 1) == k.HasField("status_at"):
                fail(f"{where}.keys[{j}]: valid_from missing, or status_at present exactly when active")
    if doc.hub_id not in ids:
        fail(f"{what}: hub_id {doc.hub_id!r} is not a member")


def roots_differ(a_keys, a_threshold, b_keys, b_threshold):
    return sorted(a_keys) != sorted(b_keys) or a_threshold != b_threshold


def verify_version(env, v1, previous, trusted, judged_at, what):
    """registry.md §3: the first-version check (previous None) or the next-version check."""
    if env.payload_type != REGISTRY_TYPE:
        fail(f"{what}: payload type {env.payload_type!r} (UNKNOWN_PAYLOAD_TYPE)")
    if previous is None:
        count_threshold(env, trusted["keys"], trusted["threshold"], what)
    else:
        count_threshold(env, previous.root, previous.threshold, what)
    doc = v1.RegistryDocument()
    try:
        doc.ParseFromString(env.payload)
    except Exception as exc:  # noqa: BLE001 - any decode error is PAYLOAD_MALFORMED
        fail(f"{what}: payload does not decode ({exc}) (PAYLOAD_MALFORMED)")
    federation = trusted["federation_id"] if previous is None else previous.federation_id
    if doc.federation_id != federation:
        fail(f"{what}: federation {doc.federation_id!r} (WRONG_FEDERATION)")
    if previous is None:
        if doc.version != 1:
            fail(f"{what}: first version is {doc.version} (REGISTRY_VERSION_GAP)")
        old_keys, old_threshold = trusted["keys"], trusted["threshold"]
    else:
        if doc.version <= previous.version:
            fail(f"{what}: version {doc.version} (REGISTRY_ROLLBACK)")
        if doc.version != previous.version + 1:
            fail(f"{what}: version {doc.version} after {previous.version} (REGISTRY_VERSION_GAP)")
        if bytes(doc.previous_digest) != previous.digest:
            fail(f"{what}: previous_digest does not name version {previous.version} (REGISTRY_CHAIN_MISMATCH)")
        old_keys, old_threshold = previous.root, previous.threshold
    new_keys = [(k.key_id, bytes(k.public_key)) for k in doc.root.keys]
    check_root_set(new_keys, doc.root.threshold, what)
    if roots_differ(new_keys, doc.root.threshold, old_keys, old_threshold):
        count_threshold(env, new_keys, doc.root.threshold, what + " (new root set)")
    check_document_rules(doc, what)
    if judged_at is not None and not judged_at < ts_datetime(doc.expires_at):
        fail(f"{what}: expired at {ts_datetime(doc.expires_at)} (REGISTRY_EXPIRED)")
    return Registry(doc, env.payload)


def load_root_trust(path):
    """registry.md §3: the trust anchor."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    keys = []
    for entry in data["keys"]:
        raw = base64.b64decode(entry["public_key"], validate=True)
        keys.append((entry["key_id"], raw))
    trusted = {"federation_id": data["federation_id"], "threshold": int(data["threshold"]), "keys": keys}
    check_root_set(keys, trusted["threshold"], "root-trust.toml")
    return trusted


# ---------------------------------------------------------------------------------------------
# The foreign node
# ---------------------------------------------------------------------------------------------


class ForeignNode:
    def __init__(self, args):
        import grpc
        from rcpfed.v1 import hub_service_pb2, hub_service_pb2_grpc, envelope_pb2, statement_pb2, registry_pb2
        from rcpfed.v1 import catalogue_pb2, indicator_service_pb2, indicator_service_pb2_grpc
        from foreign_rpc import status_pb2
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.grpc = grpc
        self.hub_pb = hub_service_pb2
        self.env_pb = envelope_pb2
        self.st_pb = statement_pb2
        self.reg_pb = registry_pb2
        self.cat_pb = catalogue_pb2
        self.ind_pb = indicator_service_pb2
        self.rpc_pb = status_pb2
        self.member = args.member
        self.host, port = args.hub.rsplit(":", 1)
        self.port = int(port)
        pki = args.pki
        self.ca_path = os.path.join(pki, "ca.pem")
        self.cert_path = os.path.join(pki, "members", self.member, "tls.pem")
        self.key_path = os.path.join(pki, "members", self.member, "tls.key")
        self.trusted = load_root_trust(os.path.join(pki, "root-trust.toml"))
        self.signing_key = Ed25519PrivateKey.from_private_bytes(read_secret_key(os.path.join(pki, "members", self.member, "signing.key")))
        from cryptography.hazmat.primitives import serialization

        self.public_key = self.signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = ed25519_strict.key_id(self.public_key)
        with open(self.ca_path, "rb") as f:
            ca = f.read()
        with open(self.cert_path, "rb") as f:
            cert = f.read()
        with open(self.key_path, "rb") as f:
            key = f.read()
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self.channel = grpc.secure_channel(f"{self.host}:{self.port}", credentials, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.hub = hub_service_pb2_grpc.HubServiceStub(self.channel)
        self.indicators = indicator_service_pb2_grpc.IndicatorServiceStub(self.channel)
        # Mirror state: the registry and hub documents in force, the witness's trusted checkpoint.
        self.registry = None
        self.registry_history = {}
        self.catalogue = None  # (version, digest)
        self.catalogue_doc = None
        self.own_observations = {}  # observation key -> value in force (indicators.md §4)
        self.coherence = None  # (number, digest)
        self.mirrored = {}  # feed index -> (digest, node_id, seq)
        self.by_digest = {}
        self.by_chain = {}
        self.cursor = 0
        self.trusted_cp = None
        self.checkpoints_seen = 0
        self.consistency_checked = 0
        self.own_head = (0, b"")
        self.own_revisions = {}
        self.counts = {"statement": 0, "registry": 0, "catalogue": 0, "coherence": 0, "chunks": 0, "foreign-implementation": 0}

    # -- transport ------------------------------------------------------------------------------

    def hub_certificate_uris(self):
        """The URI SANs of the certificate the hub presents (transport.md §1: a node checks who
        the hub is at every dial). grpcio does not expose the peer certificate to a client, so
        this is a separate TLS handshake with the same client identity to the same endpoint."""
        from cryptography import x509

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca_path)
        context.load_cert_chain(self.cert_path, self.key_path)
        context.set_alpn_protocols(["h2"])
        with socket.create_connection((self.host, self.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=self.host) as tls:
                if tls.selected_alpn_protocol() != "h2":
                    fail(f"the hub negotiated ALPN {tls.selected_alpn_protocol()!r}, not h2")
                der = tls.getpeercert(binary_form=True)
        certificate = x509.load_der_x509_certificate(der)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.UniformResourceIdentifier)

    def check_hub_identity(self):
        uris = self.hub_certificate_uris()
        if self.registry is None:
            prefix = f"spiffe://{self.trusted['federation_id']}/node/"
            if len(uris) != 1 or not uris[0].startswith(prefix):
                fail(f"SERVER IDENTITY REFUSED: the hub presents {uris}, not a {prefix}… identity")
            return
        expected = self.registry.members[self.registry.hub_id].spiffe_id
        if uris != [expected]:
            fail(f"SERVER IDENTITY REFUSED: the hub presents {uris}, expected {expected}")
        log(f"hub identity {expected} checked")

    # -- registry bootstrap (registry.md §6, "at a node", 3.) -----------------------------------

    def bootstrap_registry(self):
        versions = []
        after = 0
        while True:
            page = self.hub.ListRegistryVersions(self.hub_pb.ListRegistryVersionsRequest(after_version=after, page_size=100), timeout=20)
            if not page.versions:
                break
            for env in page.versions:
                versions.append(env)
            doc = self.reg_pb.RegistryDocument()
            doc.ParseFromString(page.versions[-1].payload)
            after = doc.version
        if not versions:
            fail("the hub lists no registry version")
        previous = None
        for i, env in enumerate(versions):
            last = i == len(versions) - 1
            previous = verify_version(env, self.reg_pb, previous, self.trusted, now_utc() if last else None, f"registry chain [{i}]")
            self.registry_history[previous.version] = previous.digest
        self.registry = previous
        if self.member not in self.registry.members:
            fail(f"{self.member} is not a member of registry version {self.registry.version}")
        if self.key_id not in {k.key_id for k in self.registry.members[self.member].keys}:
            fail(f"our signing key {self.key_id} is not one of {self.member}'s keys")
        log(f"registry version {self.registry.version} verified from root-trust.toml (hub {self.registry.hub_id})")

    # -- receipts and the witnessed log ----------------------------------------------------------

    def verify_receipt(self, receipt_env, what):
        """ingest.md §5 steps 1–3 (the check of every hub-issued document)."""
        verify_envelope(receipt_env, RECEIPT_TYPE, self.registry.hub_keys, what + " receipt")
        receipt = self.hub_pb.Receipt()
        try:
            receipt.ParseFromString(receipt_env.payload)
        except Exception as exc:  # noqa: BLE001
            fail(f"{what} receipt: does not decode ({exc}) (PAYLOAD_MALFORMED)")
        if receipt.federation_id != self.registry.federation_id:
            fail(f"{what} receipt: federation {receipt.federation_id!r} (WRONG_FEDERATION)")
        if len(receipt.statement_digest) != 32 or not receipt.HasField("accepted_at") or not ts_present(receipt.accepted_at):
            fail(f"{what} receipt: statement_digest or accepted_at malformed (PAYLOAD_MALFORMED)")
        return receipt

    def check_receipt_names(self, receipt, payload, feed_index, node_id, seq, what):
        expected = {
            "statement_digest": digest(payload),
            "feed_index": feed_index,
            "node_id": node_id,
            "seq": seq,
            "federation_id": self.registry.federation_id,
            "hub_id": self.registry.hub_id,
        }
        for field, value in expected.items():
            got = getattr(receipt, field)
            if got != value:
                fail(f"{what}: receipt {field} is {got!r}, expected {value!r}")

    def observe_checkpoint(self, note, what):
        """log.md §6 "Observing": open with the log key, then trust on first use or move forward
        along a verified consistency proof (or check a smaller one is a prefix)."""
        try:
            cp = tlog.open_checkpoint(note, self.registry.log_name, self.registry.log_key)
        except tlog.LogError as exc:
            fail(f"{what}: checkpoint refused: {exc}")
        self.checkpoints_seen += 1
        trusted = self.trusted_cp
        if trusted is None:
            self.trusted_cp = cp
        elif cp.size == trusted.size:
            if cp.root != trusted.root:
                fail(f"{what}: LOG FORK: two checkpoints of size {cp.size} with different roots")
        elif cp.size > trusted.size:
            self.prove_consistent(trusted, cp, what)
            self.trusted_cp = cp
        else:
            self.prove_consistent(cp, trusted, what)
        return cp

    def prove_consistent(self, old, new, what):
        answer = self.hub.GetConsistencyProof(self.hub_pb.GetConsistencyProofRequest(old_size=old.size, new_size=new.size), timeout=20)
        if answer.old_size != old.size or answer.new_size != new.size:
            fail(f"{what}: consistency proof answers sizes {answer.old_size}→{answer.new_size}, asked {old.size}→{new.size}")
        try:
            tlog.verify_consistency(old.size, new.size, old.root, new.root, [bytes(h) for h in answer.proof])
        except tlog.LogError as exc:
            fail(f"{what}: {exc}")
        self.consistency_checked += 1

    def verify_in_log(self, proof, feed_index, payload_type, payload, what):
        """log.md §7."""
        if proof is None:
            fail(f"{what}: no log proof (BAD_PROOF)")
        if proof.leaf_index + 1 != feed_index:
            fail(f"{what}: log leaf index {proof.leaf_index} for feed index {feed_index} (BAD_PROOF)")
        cp = self.observe_checkpoint(proof.checkpoint, what)
        if proof.tree_size != cp.size:
            fail(f"{what}: log tree_size {proof.tree_size}, checkpoint size {cp.size} (BAD_PROOF)")
        try:
            tlog.verify_inclusion(proof.leaf_index, cp.size, tlog.leaf_hash(payload_type, payload), [bytes(h) for h in proof.inclusion_proof], cp.root)
        except tlog.LogError as exc:
            fail(f"{what}: {exc}")

    # -- the feed (feed-and-nodes.md §1, §2) ------------------------------------------------------

    def mirror_until_backlog_end(self, want=None):
        """Subscribes after the cursor and verifies every entry up to the backlog end (and, with
        `want`, until that feed index has arrived). Returns the backlog end."""
        for _ in range(50):
            call = self.hub.SubscribeFeed(self.hub_pb.SubscribeFeedRequest(after_index=self.cursor), timeout=60)
            headers = dict(call.initial_metadata())
            if not (call.done() and call.code() == self.grpc.StatusCode.RESOURCE_EXHAUSTED):
                break
            # Our streams of a moment ago may not be given back yet: wait as RetryInfo says.
            self.error_info(call)
            time.sleep(self.last_retry or 1.0)
        if "rcpfed-backlog-end" not in headers:
            fail(f"SubscribeFeed: no rcpfed-backlog-end header in {sorted(headers)}")
        backlog_end = int(headers["rcpfed-backlog-end"])
        target = max(backlog_end, want or 0)
        if self.cursor >= target:
            call.cancel()
            return backlog_end
        try:
            for entry in call:
                if entry.feed_index != self.cursor + 1:
                    fail(f"feed: entry {entry.feed_index} after cursor {self.cursor} (not contiguous)")
                self.verify_entry(entry)
                self.cursor = entry.feed_index
                if self.cursor >= target:
                    break
        finally:
            call.cancel()
        if self.cursor < target:
            fail(f"feed ended at {self.cursor} before {target}")
        return backlog_end

    def verify_entry(self, entry):
        what = f"feed entry {entry.feed_index}"
        if not entry.HasField("envelope") or not entry.HasField("receipt"):
            fail(f"{what}: envelope or receipt missing")
        env = entry.envelope
        kind = env.payload_type
        if kind == REGISTRY_TYPE:
            self.verify_registry_entry(entry, what)
        elif kind == CATALOGUE_TYPE:
            self.verify_hub_document(entry, what, "catalogue")
        elif kind == COHERENCE_TYPE:
            self.verify_hub_document(entry, what, "coherence")
        else:
            self.verify_statement_entry(entry, what)

    def store(self, entry, node_id, seq):
        """feed-and-nodes.md §2: the mirror's conflict rules ("the hub showed two histories")."""
        d = digest(entry.envelope.payload)
        index = entry.feed_index
        if index in self.mirrored and self.mirrored[index][0] != d:
            fail(f"feed entry {index}: already mirrored with another digest")
        if self.by_digest.get(d, index) != index or self.by_chain.get((node_id, seq), index) != index:
            fail(f"feed entry {index}: digest or ({node_id}, {seq}) already mirrored at another index")
        self.mirrored[index] = (d, node_id, seq)
        self.by_digest[d] = index
        self.by_chain[(node_id, seq)] = index

    def verify_statement_entry(self, entry, what):
        """feed-and-nodes.md §2 steps 1–8."""
        env = entry.envelope
        kid = verify_envelope(env, STATEMENT_TYPE, self.registry.keys, what)
        statement = self.decode_statement(env.payload, what)
        header = statement.header
        if self.registry.key_owner[kid] != header.node_id:
            fail(f"{what}: signed by {self.registry.key_owner[kid]}'s key {kid}, issued by {header.node_id} (KEY_NOT_OWNED)")
        receipt = self.verify_receipt(entry.receipt, what)
        self.check_receipt_names(receipt, env.payload, entry.feed_index, header.node_id, header.seq, what)
        self.verify_in_log(entry.log if entry.HasField("log") else None, entry.feed_index, env.payload_type, env.payload, what)
        if statement.WhichOneof("body") == "indicator_snapshot" and statement.indicator_snapshot.HasField("chunks"):
            self.fetch_chunks(statement.indicator_snapshot, digest(env.payload), what)
        self.store(entry, header.node_id, header.seq)
        self.counts["statement"] += 1
        if header.node_id == self.member:
            if header.seq > self.own_head[0]:
                self.own_head = (header.seq, digest(env.payload))
            self.own_revisions[header.document] = max(self.own_revisions.get(header.document, 0), header.revision)
            if statement.WhichOneof("body") == "indicator_snapshot":
                self.apply_own_snapshot(statement.indicator_snapshot)
        else:
            self.counts["foreign-implementation"] += 1
        log(f"{what}: statement {header.node_id}#{header.seq} ({self.st_pb.DocumentKind.Name(header.kind)}) verified")

    def fetch_chunks(self, snapshot, statement_digest, what):
        """feed-and-nodes.md §2 step 9 and indicators.md §7: every chunk of the signed manifest,
        checked (index, length, SHA-256) before it is decoded, then its observation count. The
        observations join the snapshot, so the mirror applies them like inline ones."""
        manifest = snapshot.chunks
        call = self.hub.GetSnapshotChunks(self.hub_pb.GetSnapshotChunksRequest(digest=statement_digest, first_chunk=0), timeout=60)
        observations = []
        for expected_index, answer in enumerate(call):
            if expected_index >= len(manifest.chunks) or answer.index != expected_index:
                fail(f"{what}: chunk {answer.index} where {expected_index} was due (CHUNK_MISMATCH)")
            listed = manifest.chunks[expected_index]
            data = bytes(answer.chunk)
            if len(data) != listed.byte_length or digest(data) != bytes(listed.sha256):
                fail(f"{what}: chunk {expected_index} does not match the signed manifest (CHUNK_MISMATCH)")
            chunk = self.st_pb.ObservationChunk()
            chunk.ParseFromString(data)
            if len(chunk.observations) != listed.observation_count:
                fail(f"{what}: chunk {expected_index} holds {len(chunk.observations)} observations, the manifest says {listed.observation_count}")
            observations.extend(chunk.observations)
        if len(observations) != manifest.observation_count or expected_index + 1 != len(manifest.chunks):
            fail(f"{what}: {len(observations)} observations in the chunks, the manifest says {manifest.observation_count}")
        snapshot.observations.extend(observations)
        self.counts["chunks"] += len(manifest.chunks)

    def decode_statement(self, payload, what):
        """Decoding with the structural rules of statement.md §1."""
        statement = self.st_pb.Statement()
        try:
            statement.ParseFromString(payload)
        except Exception as exc:  # noqa: BLE001
            fail(f"{what}: payload does not decode ({exc}) (PAYLOAD_MALFORMED)")
        if not statement.HasField("header"):
            fail(f"{what}: header missing")
        h = statement.header
        if not h.HasField("issued_at") or not ts_present(h.issued_at):
            fail(f"{what}: issued_at missing or invalid")
        if h.kind not in (1, 2):
            fail(f"{what}: kind {h.kind}")
        if len(h.prev_digest) not in (0, 32):
            fail(f"{what}: prev_digest of {len(h.prev_digest)} bytes")
        body = statement.WhichOneof("body")
        if body is None:
            fail(f"{what}: body missing")
        if (body == "policy_summary") != (h.kind == 1):
            fail(f"{what}: kind does not match the body (KIND_MISMATCH)")
        return statement

    def verify_hub_document(self, entry, what, chain):
        """feed-and-nodes.md §2 table rows for catalogue versions and coherence reports."""
        env = entry.envelope
        expected_type = CATALOGUE_TYPE if chain == "catalogue" else COHERENCE_TYPE
        verify_envelope(env, expected_type, self.registry.hub_keys, what)
        doc = self.cat_pb.CatalogueDocument() if chain == "catalogue" else self.ind_pb.CoherenceReport()
        try:
            doc.ParseFromString(env.payload)
        except Exception as exc:  # noqa: BLE001
            fail(f"{what}: {chain} does not decode ({exc})")
        if doc.federation_id != self.registry.federation_id:
            fail(f"{what}: {chain} of federation {doc.federation_id!r} (WRONG_FEDERATION)")
        number = doc.version if chain == "catalogue" else doc.number
        in_force = self.catalogue if chain == "catalogue" else self.coherence
        expected_number = 1 if in_force is None else in_force[0] + 1
        expected_previous = b"" if in_force is None else in_force[1]
        if number != expected_number or bytes(doc.previous_digest) != expected_previous:
            fail(f"{what}: {chain} {number} does not follow {in_force and in_force[0]}")
        if chain == "catalogue" and not doc.HasField("issued_at"):
            fail(f"{what}: catalogue issued_at missing")
        receipt = self.verify_receipt(entry.receipt, what)
        self.check_receipt_names(receipt, env.payload, entry.feed_index, f"{self.registry.hub_id}/{chain}", number, what)
        self.verify_in_log(entry.log if entry.HasField("log") else None, entry.feed_index, env.payload_type, env.payload, what)
        self.store(entry, f"{self.registry.hub_id}/{chain}", number)
        if chain == "catalogue":
            self.catalogue = (number, digest(env.payload))
            self.catalogue_doc = doc
        else:
            self.coherence = (number, digest(env.payload))
        self.counts[chain] += 1
        log(f"{what}: {chain} {number} verified")

    def verify_registry_entry(self, entry, what):
        """registry.md §6 "At a node": receipt, payload and rules, log, then apply."""
        env = entry.envelope
        receipt = self.verify_receipt(entry.receipt, what)
        if env.payload_type != REGISTRY_TYPE:
            fail(f"{what}: not a registry version")
        doc = self.reg_pb.RegistryDocument()
        try:
            doc.ParseFromString(env.payload)
        except Exception as exc:  # noqa: BLE001
            fail(f"{what}: registry version does not decode ({exc})")
        check_document_rules(doc, what)
        self.check_receipt_names(receipt, env.payload, entry.feed_index, self.registry.hub_id, doc.version, what)
        self.verify_in_log(entry.log if entry.HasField("log") else None, entry.feed_index, env.payload_type, env.payload, what)
        if doc.version <= self.registry.version:
            if self.registry_history.get(doc.version) not in (None, digest(env.payload)):
                fail(f"{what}: registry version {doc.version} differs from the one verified from the root keys")
        else:
            accepted = ts_datetime(receipt.accepted_at)
            self.registry = verify_version(env, self.reg_pb, self.registry, self.trusted, accepted, what)
            self.registry_history[self.registry.version] = self.registry.digest
        self.store(entry, self.registry.hub_id, doc.version)
        self.counts["registry"] += 1
        log(f"{what}: registry version {doc.version} verified")

    # -- publishing (statement.md, envelope.md, ingest.md §5) -------------------------------------

    def sign(self, payload_type, payload, key=None):
        key = key or self.signing_key
        return key.sign(tlog.pae(payload_type, payload))

    def statement(self, seq, prev_digest, title, document=None, revision=None, federation_id=None, node_id=None):
        s = self.st_pb.Statement()
        h = s.header
        h.federation_id = federation_id or self.registry.federation_id
        h.node_id = node_id or self.member
        h.seq = seq
        h.prev_digest = prev_digest
        h.issued_at.FromDatetime(now_utc().replace(tzinfo=None))
        h.kind = self.st_pb.DOCUMENT_KIND_POLICY_SUMMARY
        h.schema_version = 1
        h.document = document or f"regions/{self.member}/policies/foreign-node-check"
        h.revision = revision or self.own_revisions.get(h.document, 0) + 1
        ps = s.policy_summary
        t = ps.title.add()
        t.language = "en"
        t.text = title
        ps.status = self.st_pb.POLICY_STATUS_ADOPTED
        ps.countries.append("MLI")
        ps.gcm_objectives.append(23)
        ps.sdg_targets.append("10.7")
        return s

    # -- indicator snapshots (statement.md §4, indicators.md §3–4) ------------------------------

    def indicator_definition(self, code):
        for indicator in self.catalogue_doc.indicators:
            if indicator.code == code:
                return indicator
        return None

    def observation_key(self, indicator_code, observation):
        """statement.md §4: left-out optional dimensions with a default count as that default."""
        pairs = {d.id: d.value for d in observation.dimensions}
        definition = self.indicator_definition(indicator_code)
        for dim in definition.dimensions if definition else ():
            if not dim.required and dim.default_code and dim.id not in pairs:
                pairs[dim.id] = dim.default_code
        dims = ";".join(f"{k}={v}" for k, v in sorted(pairs.items()))
        return (indicator_code, observation.ref_area, observation.time_period, dims)

    def apply_own_snapshot(self, snapshot):
        for observation in snapshot.observations:
            key = self.observation_key(snapshot.indicator, observation)
            if observation.action == self.st_pb.OBSERVATION_ACTION_DELETE:
                self.own_observations.pop(key, None)
            else:
                self.own_observations[key] = observation.obs_value

    def member_state_for(self, start, end):
        """statement.md §5: a state of ours for the whole period [start, end]."""
        for state in self.registry.members[self.member].states:
            if (not state.since or state.since <= start) and (not state.until or end < state.until):
                return state.iso3
        return None

    def snapshot_statement(self, seq, prev_digest, years=(2020,), chunk_sizes=None):
        """A valid snapshot built from the catalogue in force alone: one observation per year,
        inline, or (with `chunk_sizes`) in chunks of those sizes behind a signed manifest
        (indicators.md §7). Returns (statement, chunk bytes)."""
        if self.catalogue_doc is None:
            fail("no catalogue version in the feed: cannot build a snapshot (NO_CATALOGUE)")
        codelists = {c.id: c for c in self.catalogue_doc.codelists}
        concepts = {c.id: c.codelist for c in self.catalogue_doc.dimensions}
        period_forms = {"A": "{}", "S": "{}-S1", "Q": "{}-Q1", "M": "{}-01", "D": "{}-01-15"}
        for indicator in self.catalogue_doc.indicators:
            if not indicator.units or not indicator.unit_mults or not indicator.frequencies:
                continue
            # A state of ours for every whole year used (statement.md §5).
            ref_area = self.member_state_for(f"{min(years)}-01-01", f"{max(years)}-12-31")
            if ref_area is not None:
                break
        else:
            fail("no indicator of the catalogue fits one of our member states")
        s = self.st_pb.Statement()
        h = s.header
        h.federation_id = self.registry.federation_id
        h.node_id = self.member
        h.seq = seq
        h.prev_digest = prev_digest
        h.issued_at.FromDatetime(now_utc().replace(tzinfo=None))
        h.kind = self.st_pb.DOCUMENT_KIND_INDICATOR_SNAPSHOT
        h.schema_version = 1
        h.document = f"regions/{self.member}/indicators/{indicator.code.lower().replace('_', '-')}"
        h.revision = self.own_revisions.get(h.document, 0) + 1
        snapshot = s.indicator_snapshot
        snapshot.indicator = indicator.code
        observations = []
        for year in years:
            o = self.st_pb.Observation()
            o.ref_area = ref_area
            o.time_period = period_forms[indicator.frequencies[0]].format(year)
            for dim in indicator.dimensions:
                value = dim.default_code or codelists[concepts[dim.id]].codes[0].id
                o.dimensions.add(id=dim.id, value=value)
            o.unit_measure = indicator.units[0]
            o.unit_mult = indicator.unit_mults[0]
            o.obs_value = self.plausible_value(indicator, o.unit_measure, seq + year) / 10**o.unit_mult
            o.obs_status = "A"
            key = self.observation_key(indicator.code, o)
            o.action = self.st_pb.OBSERVATION_ACTION_REPLACE if key in self.own_observations else self.st_pb.OBSERVATION_ACTION_APPEND
            observations.append(o)
        if chunk_sizes is None:
            snapshot.observations.extend(observations)
            return s, []
        chunks, at = [], 0
        snapshot.chunks.observation_count = len(observations)
        for size in chunk_sizes:
            chunk = self.st_pb.ObservationChunk(observations=observations[at : at + size]).SerializeToString()
            at += size
            snapshot.chunks.chunks.add(sha256=digest(chunk), observation_count=size, byte_length=len(chunk))
            chunks.append(chunk)
        return s, chunks

    @staticmethod
    def plausible_value(indicator, unit, salt):
        """A value × 10^UNIT_MULT inside every range that applies (indicators.md §3), different
        for each salt so that a REPLACE revises the view visibly."""
        low, high = None, None
        for r in indicator.ranges:
            if r.unit in ("", unit):
                if r.HasField("min"):
                    low = r.min if low is None else max(low, r.min)
                if r.HasField("max"):
                    high = r.max if high is None else min(high, r.max)
        share = 0.25 + 0.5 * (salt % 7) / 7
        if low is not None and high is not None:
            return low + (high - low) * share
        if low is not None:
            return low + salt % 7
        if high is not None:
            return high - salt % 7
        return float(salt % 7 + 1)

    def publish_own_snapshot(self):
        seq, prev = self.own_head[0] + 1, self.own_head[1]
        statement, _ = self.snapshot_statement(seq, prev)
        payload = statement.SerializeToString()
        answer = self.submit(self.envelope(payload))
        receipt = self.check_own_receipt(answer, payload, seq, "own snapshot")
        o = statement.indicator_snapshot.observations[0]
        action = self.st_pb.ObservationAction.Name(o.action)
        log(f"published {self.member}#{seq}: {statement.indicator_snapshot.indicator} {o.ref_area} {o.time_period} {action}, feed index {receipt.feed_index}")
        return seq, payload, receipt

    def submit_snapshot(self, env, chunks):
        messages = [self.hub_pb.SubmitSnapshotRequest(envelope=env)] + [self.hub_pb.SubmitSnapshotRequest(chunk=c) for c in chunks]
        return self.hub.SubmitSnapshot(iter(messages), timeout=60)

    def publish_own_chunked_snapshot(self):
        """indicators.md §7: a small snapshot may travel chunked too; SubmitSnapshot sends the
        envelope, then every chunk in manifest order."""
        seq, prev = self.own_head[0] + 1, self.own_head[1]
        statement, chunks = self.snapshot_statement(seq, prev, years=(2017, 2018, 2019), chunk_sizes=(2, 1))
        payload = statement.SerializeToString()
        answer = self.submit_snapshot(self.envelope(payload), chunks)
        receipt = self.check_own_receipt(answer, payload, seq, "own chunked snapshot")
        log(f"published {self.member}#{seq}: {statement.indicator_snapshot.indicator}, 3 observations in 2 chunks, feed index {receipt.feed_index}")
        return seq, payload, receipt

    def envelope(self, payload, key=None, key_id=None, payload_type=STATEMENT_TYPE):
        env = self.env_pb.Envelope(payload_type=payload_type, payload=payload)
        sig = env.signatures.add()
        sig.key_id = key_id or self.key_id
        sig.sig = self.sign(payload_type, payload, key)
        return env

    def submit(self, env):
        return self.hub.SubmitStatement(self.hub_pb.SubmitStatementRequest(envelope=env), timeout=30)

    def publish_own_statement(self):
        seq, prev = self.own_head[0] + 1, self.own_head[1]
        statement = self.statement(seq, prev, f"Foreign node check {seq}")
        payload = statement.SerializeToString()
        # Verify our own signature with our own strict verifier before sending.
        env = self.envelope(payload)
        if ed25519_strict.check_signature(self.public_key, tlog.pae(STATEMENT_TYPE, payload), env.signatures[0].sig) is not None:
            fail("our own signature does not pass our strict verifier")
        answer = self.submit(env)
        if answer.duplicate:
            fail(f"{self.member}#{seq}: the hub calls a new statement a duplicate")
        receipt = self.check_own_receipt(answer, payload, seq, "own statement")
        log(f"published {self.member}#{seq}: feed index {receipt.feed_index}, receipt verified")
        # Resubmitting the same envelope is a duplicate with the original receipt (ingest.md §2).
        again = self.submit(env)
        if not again.duplicate or again.receipt.payload != answer.receipt.payload:
            fail("resubmission: not a duplicate with the original receipt bytes")
        self.check_own_receipt(again, payload, seq, "duplicate answer")
        log("resubmission answered as a duplicate with the original receipt")
        return seq, payload, receipt

    def check_own_receipt(self, answer, payload, seq, what):
        """ingest.md §5, all five steps."""
        if not answer.HasField("receipt"):
            fail(f"{what}: OK without a receipt")
        receipt = self.verify_receipt(answer.receipt, what)
        for field, value in (("node_id", self.member), ("seq", seq), ("statement_digest", digest(payload)), ("hub_id", self.registry.hub_id)):
            if getattr(receipt, field) != value:
                fail(f"{what}: receipt {field} is {getattr(receipt, field)!r}, expected {value!r}")
        self.verify_in_log(answer.log if answer.HasField("log") else None, receipt.feed_index, STATEMENT_TYPE, payload, what)
        return receipt

    # -- witnessing (log.md §5) ------------------------------------------------------------------

    def cosign_trusted(self):
        cp = self.trusted_cp
        name = f"rcpfed/{self.registry.federation_id}/witness/{self.member}"
        line = tlog.cosignature_line(cp.text, name, self.public_key, self.signing_key.sign, int(time.time()))
        answer = self.hub.SubmitCosignature(self.hub_pb.SubmitCosignatureRequest(tree_size=cp.size, cosignature=line), timeout=20)
        if answer.cosignature_count < 1:
            fail("SubmitCosignature: cosignature_count 0 after our cosignature")
        back = self.hub.GetCheckpoint(self.hub_pb.GetCheckpointRequest(tree_size=cp.size), timeout=20)
        reopened = self.observe_checkpoint(back.checkpoint, "GetCheckpoint")
        if reopened.size != cp.size or back.tree_size != cp.size or bytes(back.root_hash) != cp.root:
            fail("GetCheckpoint(tree_size) answers another checkpoint")
        witnesses = 0
        for member in self.registry.witnesses():
            wname = f"rcpfed/{self.registry.federation_id}/witness/{member.id}"
            if any(tlog.verify_cosignature(reopened, wname, bytes(k.public_key)) for k in member.keys):
                witnesses += 1
        if not tlog.verify_cosignature(reopened, name, self.public_key):
            fail("our cosignature is not on the hub's checkpoint")
        log(f"cosigned checkpoint {cp.size}: {witnesses} witness cosignature(s) verify on it")

    # -- bad inputs (errors.md) -------------------------------------------------------------------

    def error_info(self, error):
        details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        if details is None:
            fail(f"{error.code().name} {error.details()!r} carries no grpc-status-details-bin")
        status = self.rpc_pb.Status()
        status.ParseFromString(details)
        info, violations, self.last_retry = None, [], None
        for any_detail in status.details:
            if any_detail.type_url == "type.googleapis.com/google.rpc.RetryInfo":
                retry = self.rpc_pb.RetryInfo()
                retry.ParseFromString(any_detail.value)
                self.last_retry = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            if any_detail.type_url == "type.googleapis.com/google.rpc.ErrorInfo":
                info = self.rpc_pb.ErrorInfo()
                info.ParseFromString(any_detail.value)
            elif any_detail.type_url == "type.googleapis.com/google.rpc.BadRequest":
                bad = self.rpc_pb.BadRequest()
                bad.ParseFromString(any_detail.value)
                violations = [(v.field, v.description) for v in bad.field_violations]
        if info is None:
            fail(f"{error.code().name}: no google.rpc.ErrorInfo among {[d.type_url for d in status.details]}")
        if info.domain != ERROR_DOMAIN:
            fail(f"ErrorInfo domain {info.domain!r}, expected {ERROR_DOMAIN!r}")
        if status.code != error.code().value[0] or status.message != error.details():
            fail(f"google.rpc.Status {status.code} {status.message!r} differs from the gRPC status {error.code().name} {error.details()!r}")
        return info, violations

    def expect_refusal(self, label, env, code, reason, metadata=None, violation=None, statement_rules=True, chunks=None):
        try:
            if chunks is None:
                self.submit(env)
            else:
                self.submit_snapshot(env, chunks)
        except self.grpc.RpcError as error:
            info, violations = self.error_info(error)
            if error.code().name != code or info.reason != reason:
                fail(f"{label}: got {error.code().name}/{info.reason} ({error.details()}), expected {code}/{reason}")
            for key, value in (metadata or {}).items():
                if info.metadata.get(key) != value:
                    fail(f"{label}: metadata {key}={info.metadata.get(key)!r}, expected {value!r}")
            if violation is not None:
                # statement.md §6: the violations in document order, each described in plain
                # words then " (REASON)"; the status message is "{first field}: {first
                # description}" without that suffix, then " (and N more problems)".
                fields = [field for field, _ in violations]
                if fields != violation or not all(d.endswith(f" ({reason})") for _, d in violations):
                    fail(f"{label}: violations {violations}, expected fields {violation}, each ... ({reason})")
                message = f"{violation[0]}: {violations[0][1][: -len(f' ({reason})')]}"
                if len(violation) > 1:
                    message += f" (and {len(violation) - 1} more problems)"
                # The message form is that of statement validation (statement.md §6); errors.md
                # §1 only says plain words for other refusals.
                if statement_rules and error.details() != message:
                    fail(f"{label}: status message {error.details()!r}, expected {message!r}")
            log(f"bad input {label}: {code}/{reason} {dict(info.metadata)} as errors.md says")
            return
        fail(f"{label}: accepted, expected {code}/{reason}")

    def bad_inputs(self, head_seq, head_payload):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        head_digest = digest(head_payload)
        nxt = head_seq + 1
        good = self.statement(nxt, head_digest, "Never accepted").SerializeToString()

        # A signature that does not verify: the payload changed after signing (EQUATION).
        env = self.envelope(good)
        env.payload = self.statement(nxt, head_digest, "Changed after signing").SerializeToString()
        self.expect_refusal("altered payload", env, "UNAUTHENTICATED", "BAD_SIGNATURE", {"key_id": self.key_id, "signature_check": "EQUATION"})

        # S + L: passes a top-bits check, refused by S < L (keys.md §2.2 row 2).
        env = self.envelope(good)
        sig = bytearray(env.signatures[0].sig)
        s_plus_l = int.from_bytes(sig[32:], "little") + ed25519_strict.L
        if s_plus_l < 2**256:
            env.signatures[0].sig = bytes(sig[:32]) + s_plus_l.to_bytes(32, "little")
            mine = ed25519_strict.check_signature(self.public_key, tlog.pae(STATEMENT_TYPE, good), env.signatures[0].sig)
            self.expect_refusal("S + L", env, "UNAUTHENTICATED", "BAD_SIGNATURE", {"key_id": self.key_id, "signature_check": mine})

        # A key the registry does not list.
        stranger = Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives import serialization

        stranger_id = ed25519_strict.key_id(stranger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        self.expect_refusal("unknown key", self.envelope(good, stranger, stranger_id), "UNAUTHENTICATED", "UNKNOWN_KEY_ID", {"key_id": stranger_id})

        # Envelope form (envelope.md §1, ingest.md §1 steps 5–7).
        env = self.envelope(good)
        del env.signatures[:]
        self.expect_refusal("no signature", env, "UNAUTHENTICATED", "MISSING_SIGNATURE")
        env = self.envelope(good, key_id=self.key_id.upper().replace("ED25519:", "ed25519:"))
        self.expect_refusal("upper-case key id", env, "INVALID_ARGUMENT", "INVALID_KEY_ID", violation=["envelope.signatures[0].key_id"], statement_rules=False)
        self.expect_refusal("receipt payload type", self.envelope(good, payload_type=RECEIPT_TYPE), "INVALID_ARGUMENT", "UNKNOWN_PAYLOAD_TYPE")

        # Header field rules (statement.md §1 d, h).
        future = self.statement(nxt, head_digest, "From the future")
        future.header.issued_at.FromDatetime((now_utc() + datetime.timedelta(minutes=10)).replace(tzinfo=None))
        self.expect_refusal("issued in the future", self.envelope(future.SerializeToString()), "INVALID_ARGUMENT", "ISSUED_AT_IN_FUTURE", violation=["header.issued_at"])
        seq_zero = self.statement(0, b"", "Seq zero")
        self.expect_refusal("seq 0", self.envelope(seq_zero.SerializeToString()), "INVALID_ARGUMENT", "INVALID_SEQ", violation=["header.seq"])

        # Sequence far beyond the in-flight window: refused at once.
        far = self.statement(nxt + 100, head_digest, "Far ahead").SerializeToString()
        self.expect_refusal("seq gap", self.envelope(far), "FAILED_PRECONDITION", "SEQ_GAP", {"expected_seq": str(nxt)})

        # The right seq with the wrong predecessor.
        wrong_prev = self.statement(nxt, b"\x07" * 32, "Wrong chain").SerializeToString()
        self.expect_refusal("prev digest", self.envelope(wrong_prev), "FAILED_PRECONDITION", "PREV_DIGEST_MISMATCH", {"expected_prev_digest": head_digest.hex()})

        # Another federation, another issuer.
        other_fed = self.statement(nxt, head_digest, "Elsewhere", federation_id="other-federation").SerializeToString()
        self.expect_refusal("wrong federation", self.envelope(other_fed), "PERMISSION_DENIED", "WRONG_FEDERATION")
        others = [m for m in self.registry.members if m != self.member]
        other_node = self.statement(nxt, head_digest, "Not mine", node_id=others[0], document=f"regions/{others[0]}/policies/x", revision=1).SerializeToString()
        self.expect_refusal("node mismatch", self.envelope(other_node), "PERMISSION_DENIED", "NODE_MISMATCH")

        # Field rules: the only title blank breaks two rows of statement.md §3 (at least one
        # title that is not blank; no blank title text), both reported (§6).
        blank = self.statement(nxt, head_digest, "   ")
        self.expect_refusal("blank title", self.envelope(blank.SerializeToString()), "INVALID_ARGUMENT", "EMPTY_TITLE", violation=["policy_summary.title", "policy_summary.title[0].text"])
        # Catalogue rules: an indicator the catalogue does not define (indicators.md §3).
        unknown, _ = self.snapshot_statement(nxt, head_digest)
        unknown.indicator_snapshot.indicator = "NO_SUCH_INDICATOR"
        self.expect_refusal("unknown indicator", self.envelope(unknown.SerializeToString()), "INVALID_ARGUMENT", "UNKNOWN_INDICATOR", violation=["indicator_snapshot.indicator"])

        # Large snapshots (indicators.md §7): a manifest needs SubmitSnapshot, and a chunk must
        # match the signed manifest (checked before it is decoded).
        chunked, chunks = self.snapshot_statement(nxt, head_digest, years=(2017, 2018, 2019), chunk_sizes=(2, 1))
        chunked_env = self.envelope(chunked.SerializeToString())
        self.expect_refusal("manifest via SubmitStatement", chunked_env, "INVALID_ARGUMENT", "CHUNKS_REQUIRED", violation=["indicator_snapshot.chunks"], statement_rules=False)
        altered = bytearray(chunks[0])
        altered[-1] ^= 1
        self.expect_refusal("altered chunk", chunked_env, "INVALID_ARGUMENT", "CHUNK_MISMATCH", {"chunk_index": "0"}, chunks=[bytes(altered), chunks[1]])
        self.expect_refusal("missing chunk", chunked_env, "INVALID_ARGUMENT", "CHUNK_MISMATCH", {"chunk_index": "1"}, chunks=chunks[:1])

        # A second, different statement at our head seq: equivocation (evidence stored).
        previous = self.by_chain_digest(self.member, head_seq - 1) if head_seq > 1 else b""
        twin = self.statement(head_seq, previous, "A different statement at the same seq").SerializeToString()
        self.expect_refusal("equivocation", self.envelope(twin), "ALREADY_EXISTS", "EQUIVOCATION", {"node_id": self.member, "seq": str(head_seq), "accepted_digest": head_digest.hex()})

    def check_feed_subscription_limit(self):
        """feed-and-nodes.md §1: a member holds at most `max_feed_subscriptions` streams; one
        more is RESOURCE_EXHAUSTED / TOO_MANY_FEED_SUBSCRIPTIONS with `limit` and RetryInfo."""
        streams = []
        try:
            for _ in range(64):
                call = self.hub.SubscribeFeed(self.hub_pb.SubscribeFeedRequest(after_index=self.cursor), timeout=30)
                try:
                    call.initial_metadata()
                    if call.done() and call.code() != self.grpc.StatusCode.OK:
                        raise call
                except self.grpc.RpcError as error:
                    info, _ = self.error_info(error)
                    if error.code().name != "RESOURCE_EXHAUSTED" or info.reason != "TOO_MANY_FEED_SUBSCRIPTIONS":
                        fail(f"stream {len(streams) + 1}: {error.code().name}/{info.reason}, expected RESOURCE_EXHAUSTED/TOO_MANY_FEED_SUBSCRIPTIONS")
                    if info.metadata.get("limit") != str(len(streams)):
                        fail(f"refused after {len(streams)} open streams, but metadata limit={info.metadata.get('limit')!r}")
                    if self.last_retry is None:
                        fail("TOO_MANY_FEED_SUBSCRIPTIONS without RetryInfo")
                    log(f"stream {len(streams) + 1}: RESOURCE_EXHAUSTED/TOO_MANY_FEED_SUBSCRIPTIONS limit={len(streams)} RetryInfo {self.last_retry} s")
                    return
                streams.append(call)
            fail(f"{len(streams)} feed streams open at once and none refused")
        finally:
            for call in streams:
                call.cancel()

    def audit_log(self):
        """log.md §4 ListLogEntries: every leaf of the trusted tree, each the leaf hash of the
        mirrored entry at that index, and together the trusted checkpoint's root."""
        size = self.trusted_cp.size
        leaves, start = [], 0
        while start < size:
            page = self.hub.ListLogEntries(self.hub_pb.ListLogEntriesRequest(start_index=start, page_size=1000), timeout=30)
            if not page.entries:
                fail(f"ListLogEntries: nothing from leaf {start} of {size}")
            for entry in page.entries:
                if entry.leaf_index != start:
                    fail(f"ListLogEntries: leaf {entry.leaf_index} where {start} was due")
                leaf = tlog.leaf_hash(entry.envelope.payload_type, entry.envelope.payload)
                if bytes(entry.leaf_hash) != leaf:
                    fail(f"ListLogEntries: leaf {start}'s hash is not that of its envelope")
                mirrored = self.mirrored.get(start + 1)
                if mirrored is not None and mirrored[0] != digest(entry.envelope.payload):
                    fail(f"ListLogEntries: leaf {start} is not the feed's entry {start + 1}")
                leaves.append(leaf)
                start += 1
            if page.next_start_index != start:
                fail(f"ListLogEntries: next_start_index {page.next_start_index}, expected {start}")
        if tlog.tree_root(leaves[:size]) != self.trusted_cp.root:
            fail(f"the {size} logged leaves do not hash to the trusted checkpoint's root")
        log(f"log audit: all {size} leaves listed, match the feed, and hash to the trusted root")

    def read_back(self, seq, payload):
        """ingest.md §6 GetStatement: our statement with its receipt and a proof in the latest
        checkpoint."""
        name = f"nodes/{self.member}/statements/{seq}"
        record = self.hub.GetStatement(self.hub_pb.GetStatementRequest(name=name), timeout=20).statement
        if record.name != name or record.node_id != self.member or record.seq != seq:
            fail(f"GetStatement({name}): answers {record.name}")
        if record.envelope.payload != payload or bytes(record.digest) != digest(payload):
            fail(f"GetStatement({name}): payload or digest is not what we signed")
        receipt = self.verify_receipt(record.receipt, name)
        self.check_receipt_names(receipt, payload, record.feed_index, self.member, seq, name)
        self.verify_in_log(record.log if record.HasField("log") else None, record.feed_index, STATEMENT_TYPE, payload, name)
        log(f"GetStatement({name}): envelope, receipt and proof verified")

    def check_view(self, statement_payload, feed_index):
        """indicators.md §4–5: the hub's view holds our observation in force, with its
        provenance (our statement, its feed index and log leaf)."""
        statement = self.st_pb.Statement()
        statement.ParseFromString(statement_payload)
        snapshot = statement.indicator_snapshot
        sent = snapshot.observations[0]
        query = self.ind_pb.ObservationQuery(indicator=snapshot.indicator, ref_areas=[sent.ref_area], node_ids=[self.member])
        query.start_period = query.end_period = sent.time_period
        for _ in range(100):
            answer = self.indicators.QueryObservations(self.ind_pb.QueryObservationsRequest(query=query), timeout=20)
            if answer.feed_size >= feed_index:
                break
            time.sleep(0.05)
        else:
            fail(f"the hub's view did not reach feed index {feed_index}")
        records = list(answer.observations)
        if len(records) != 1:
            fail(f"QueryObservations: {len(records)} records in force for our key, expected 1")
        record = records[0]
        p = record.provenance
        if (record.indicator, record.observation.ref_area, record.observation.time_period) != (snapshot.indicator, sent.ref_area, sent.time_period):
            fail(f"QueryObservations: another observation {record}")
        if record.observation.obs_value != sent.obs_value or record.observation.action != sent.action:
            fail(f"QueryObservations: value {record.observation.obs_value} ({record.observation.action}), we sent {sent.obs_value} ({sent.action})")
        if (p.node_id, bytes(p.statement_digest), p.document, p.revision, p.feed_index, p.leaf_index) != (
            self.member, digest(statement_payload), statement.header.document, statement.header.revision, feed_index, feed_index - 1):
            fail(f"QueryObservations: provenance {p} does not name our statement at feed index {feed_index}")
        log(f"the hub's indicator view holds our {snapshot.indicator} {sent.ref_area} {sent.time_period} = {sent.obs_value}, provenance verified")

    def by_chain_digest(self, node_id, seq):
        index = self.by_chain.get((node_id, seq))
        if index is None:
            fail(f"{node_id}#{seq} is not mirrored")
        return self.mirrored[index][0]


def read_secret_key(path):
    """keys.md §6."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if len(lines) < 2 or lines[0] != "rcpfed-ed25519-secret-key-v1":
        fail(f"{path}: not an rcpfed secret key file")
    seed = base64.b64decode(lines[1], validate=True)
    if len(seed) != 32:
        fail(f"{path}: the seed is not 32 bytes")
    return seed


def self_test(proto_dir):
    """Every vector of proto/vectors/ed25519.json must give its `expected` outcome (keys.md §3)."""
    path = os.path.join(proto_dir, "vectors", "ed25519.json")
    with open(path) as f:
        vectors = json.load(f)["vectors"]
    for v in vectors:
        refusal = ed25519_strict.check_signature(bytes.fromhex(v["public_key"]), bytes.fromhex(v["message"]), bytes.fromhex(v["signature"]))
        outcome = "accept" if refusal is None else "refuse"
        if outcome != v["expected"]:
            fail(f"Ed25519 vector {v['id']} {v['name']}: {outcome} ({refusal}), expected {v['expected']}")
    log(f"{len(vectors)} Ed25519 vectors give their expected outcome")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", required=True, help="host:port of the hub's mTLS gRPC port")
    parser.add_argument("--pki", required=True, help="the federation directory (ca.pem, root-trust.toml, members/ID/)")
    parser.add_argument("--member", required=True, help="our member id")
    parser.add_argument("--proto-dir", default=os.path.join(HERE, "..", "..", "proto"))
    parser.add_argument("--summary", help="write a JSON summary of what was verified here")
    args = parser.parse_args()
    try:
        self_test(args.proto_dir)
        compile_protos(os.path.abspath(args.proto_dir))
        node = ForeignNode(args)
        node.check_hub_identity()
        node.bootstrap_registry()
        node.check_hub_identity()
        backlog_end = node.mirror_until_backlog_end()
        log(f"mirrored and verified feed 1..{backlog_end}: {node.counts}")
        if node.counts["foreign-implementation"] == 0:
            log("note: no statement of another member in the feed")
        seq, payload, receipt = node.publish_own_statement()
        node.mirror_until_backlog_end(want=receipt.feed_index)
        if node.by_chain.get((node.member, seq)) != receipt.feed_index:
            fail(f"our statement {node.member}#{seq} is not at feed index {receipt.feed_index}")
        log(f"saw our own statement on the feed at index {receipt.feed_index}")
        chunked_seq, _, chunked_receipt = node.publish_own_chunked_snapshot()
        node.mirror_until_backlog_end(want=chunked_receipt.feed_index)
        if node.by_chain.get((node.member, chunked_seq)) != chunked_receipt.feed_index or node.counts["chunks"] < 2:
            fail(f"our chunked snapshot {node.member}#{chunked_seq} is not at feed index {chunked_receipt.feed_index} with its chunks")
        snap_seq, snap_payload, snap_receipt = node.publish_own_snapshot()
        node.mirror_until_backlog_end(want=snap_receipt.feed_index)
        if node.by_chain.get((node.member, snap_seq)) != snap_receipt.feed_index:
            fail(f"our snapshot {node.member}#{snap_seq} is not at feed index {snap_receipt.feed_index}")
        node.cosign_trusted()
        node.bad_inputs(snap_seq, snap_payload)
        node.mirror_until_backlog_end()
        node.read_back(seq, payload)
        node.check_view(snap_payload, snap_receipt.feed_index)
        node.audit_log()
        node.check_feed_subscription_limit()
        log(f"checkpoints opened {node.checkpoints_seen}, consistency proofs verified {node.consistency_checked}, trusted size {node.trusted_cp.size}")
        if args.summary:
            with open(args.summary, "w") as f:
                json.dump(
                    {
                        "member": node.member,
                        "own_seq": seq,
                        "own_feed_index": receipt.feed_index,
                        "own_digest": digest(payload).hex(),
                        "chunked_seq": chunked_seq,
                        "snapshot_seq": snap_seq,
                        "snapshot_digest": digest(snap_payload).hex(),
                        "feed_size": node.cursor,
                        "counts": node.counts,
                        "checkpoints_opened": node.checkpoints_seen,
                        "consistency_proofs": node.consistency_checked,
                    },
                    f,
                )
        log("all checks passed")
        return 0
    except Failure as exc:
        print(f"foreign: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
