"""The transparency log of docs/spec/log.md: RFC 9162 proofs, C2SP signed notes and checkpoints,
cosignatures. Written from the spec alone."""

import base64
import hashlib
import struct

import ed25519_strict


class LogError(Exception):
    """A log check failed; `reason` is the spec's reason code."""

    def __init__(self, reason, message):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def sha256(data):
    return hashlib.sha256(data).digest()


def pae(payload_type, payload):
    """envelope.md §2."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), bytes(payload))


def leaf_hash(payload_type, payload):
    """log.md §1."""
    return sha256(b"\x00" + pae(payload_type, payload))


def _node(left, right):
    return sha256(b"\x01" + left + right)


def tree_root(leaves):
    """RFC 9162 §2.1.1 MTH over leaf hashes: split at the largest power of two below n."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return _node(tree_root(leaves[:split]), tree_root(leaves[split:]))


def verify_inclusion(leaf_index, tree_size, leaf, proof, root):
    """RFC 9162 §2.1.3.2."""
    if leaf_index >= tree_size:
        raise LogError("BAD_PROOF", f"leaf index {leaf_index} is outside a tree of {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in proof:
        if len(p) != 32:
            raise LogError("BAD_PROOF", "an inclusion proof hash is not 32 bytes")
        if sn == 0:
            raise LogError("BAD_PROOF", "inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise LogError("BAD_PROOF", f"inclusion proof of leaf {leaf_index} does not reach the root of size {tree_size}")


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 §2.1.4.2."""
    if any(len(p) != 32 for p in proof):
        raise LogError("BAD_PROOF", "a consistency proof hash is not 32 bytes")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise LogError("BAD_PROOF", "equal sizes need the empty proof and equal roots")
        return
    if old_size == 0 or old_size > new_size:
        raise LogError("BAD_PROOF", f"no consistency proof from {old_size} to {new_size}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise LogError("BAD_PROOF", "empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LogError("BAD_PROOF", "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != old_root or sr != new_root or sn != 0:
        raise LogError("BAD_PROOF", f"consistency proof from {old_size} to {new_size} does not verify")


def note_key_hash(name, key_type, public_key):
    """log.md §2: SHA-256(name ‖ 0x0A ‖ type ‖ key)[0..4]."""
    return sha256(name.encode() + b"\n" + bytes([key_type]) + bytes(public_key))[:4]


def _std_b64(text):
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise ValueError("not canonical standard base64")
    return raw


def parse_note(note):
    """log.md §3 parsing: (text, [(name, sig_bytes), ...]) or LogError MALFORMED_NOTE."""
    if len(note.encode()) > 1 << 20:
        raise LogError("MALFORMED_NOTE", "note larger than 1 MiB")
    if any((ord(ch) < 0x20 and ch != "\n") or ord(ch) == 0x7F for ch in note):
        raise LogError("MALFORMED_NOTE", "control character in note")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise LogError("MALFORMED_NOTE", "no blank line, or the last line has no newline")
    text = note[: split + 1]
    lines = note[split + 2 :].split("\n")[:-1]
    if not 1 <= len(lines) <= 100:
        raise LogError("MALFORMED_NOTE", f"{len(lines)} signature lines")
    signatures = []
    for line in lines:
        if not line.startswith("\u2014 "):
            raise LogError("MALFORMED_NOTE", f"signature line {line!r} does not start with an em dash")
        parts = line[2:].split(" ")
        if len(parts) != 2 or not parts[0] or "+" in parts[0]:
            raise LogError("MALFORMED_NOTE", f"bad signature line {line!r}")
        try:
            sig = base64.b64decode(parts[1], validate=True)
        except ValueError as exc:
            raise LogError("MALFORMED_NOTE", f"signature is not base64: {exc}") from exc
        if len(sig) < 5:
            raise LogError("MALFORMED_NOTE", "signature shorter than 5 bytes")
        signatures.append((parts[0], sig))
    return text, signatures


class Checkpoint:
    def __init__(self, origin, size, root, text, signatures):
        self.origin, self.size, self.root, self.text, self.signatures = origin, size, root, text, signatures


def open_checkpoint(note, log_name, log_key):
    """log.md §3 opening, in the spec's order."""
    text, signatures = parse_note(note)
    key_hash = note_key_hash(log_name, 0x01, log_key)
    found = False
    for name, sig in signatures:
        if name == log_name and sig[:4] == key_hash:
            refusal = ed25519_strict.check_signature(log_key, text.encode(), sig[4:])
            if refusal is not None:
                raise LogError("BAD_NOTE_SIGNATURE", f"log key signature refused ({refusal})")
            found = True
    if not found:
        raise LogError("UNKNOWN_LOG_KEY", "no signature line by the log key")
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or any(line == "" for line in lines):
        raise LogError("BAD_CHECKPOINT", "checkpoint text needs origin, size and root")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise LogError("BAD_CHECKPOINT", f"size {size_text!r} is not canonical decimal")
    try:
        root = _std_b64(root_text)
    except ValueError as exc:
        raise LogError("BAD_CHECKPOINT", f"root is not canonical base64: {exc}") from exc
    if len(root) != 32:
        raise LogError("BAD_CHECKPOINT", "root is not 32 bytes")
    if origin != log_name:
        raise LogError("WRONG_LOG_ORIGIN", f"origin {origin!r} is not {log_name!r}")
    return Checkpoint(origin, int(size_text), root, text, signatures)


def cosignature_message(timestamp, text):
    """log.md §5."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def verify_cosignature(checkpoint, name, public_key):
    """Timestamps of the valid cosignatures by `name` with `public_key`; raises on a bad one."""
    key_hash = note_key_hash(name, 0x04, public_key)
    times = []
    for line_name, sig in checkpoint.signatures:
        if line_name != name or sig[:4] != key_hash:
            continue
        if len(sig) != 4 + 72:
            raise LogError("BAD_COSIGNATURE", f"cosignature of {name} is not 72 bytes")
        (timestamp,) = struct.unpack(">Q", sig[4:12])
        if timestamp > 2**63 - 1:
            raise LogError("BAD_COSIGNATURE", "cosignature timestamp out of range")
        refusal = ed25519_strict.check_signature(public_key, cosignature_message(timestamp, checkpoint.text), sig[12:])
        if refusal is not None:
            raise LogError("BAD_COSIGNATURE", f"cosignature of {name} refused ({refusal})")
        times.append(timestamp)
    return times


def cosignature_line(checkpoint_text, name, public_key, sign, timestamp):
    """A tlog-cosignature/v1 line for `checkpoint_text`; `sign(message) -> 64 bytes`."""
    sig = sign(cosignature_message(timestamp, checkpoint_text))
    blob = note_key_hash(name, 0x04, public_key) + struct.pack(">Q", timestamp) + sig
    return f"\u2014 {name} {base64.b64encode(blob).decode()}\n"
