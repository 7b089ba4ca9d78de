"""Ed25519 with the exact acceptance rule of docs/spec/keys.md §2, written from the spec alone.

Pure Python (integers mod p), so the rule is ours and not whatever a library's verifier happens
to accept. Signing uses the `cryptography` package (RFC 8032 signing is deterministic and has no
acceptance question).
"""

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def _add(p1, p2):
    """Extended-coordinates addition of RFC 8032 §5.1.4 (complete on edwards25519)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar, point):
    result = IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _neg(point):
    x, y, z, t = point
    return ((-x) % P, y, z, (-t) % P)


def _is_identity(point):
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def _encode(point):
    x, y, z, _ = point
    zinv = pow(z, P - 2, P)
    x, y = x * zinv % P, y * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(data):
    """(point, canonical) per keys.md §2 notation, or (None, False) when it is not a point.

    y is reduced mod p; x = 0 decodes whatever the sign bit. Canonical means y < p and the sign
    bit is 0 when x = 0.
    """
    raw = int.from_bytes(data, "little")
    sign = raw >> 255
    y_raw = raw & ((1 << 255) - 1)
    y = y_raw % P
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    if x2 == 0:
        x = 0
    else:
        x = pow(x2, (P + 3) // 8, P)
        if x * x % P != x2:
            x = x * SQRT_M1 % P
        if x * x % P != x2:
            return None, False
        if (x & 1) != sign:
            x = P - x
    canonical = y_raw < P and not (x == 0 and sign == 1)
    return (x, y, 1, x * y % P), canonical


_BASE, _ = _decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
_key_cache = {}


def check_public_key(key):
    """None when the key is accepted (keys.md §2.1), else the refusal code."""
    key = bytes(key)
    if key in _key_cache:
        return _key_cache[key][0]
    outcome = _check_public_key(key)
    _key_cache[key] = outcome
    return outcome[0]


def _check_public_key(key):
    if len(key) != 32:
        return ("A_ENCODING", None)
    point, canonical = _decode(key)
    if point is None:
        return ("A_NOT_A_POINT", None)
    if not canonical:
        return ("A_NON_CANONICAL", None)
    if _is_identity(_mul(8, point)):
        return ("A_SMALL_ORDER", None)
    if not _is_identity(_mul(L, point)):
        return ("A_MIXED_ORDER", None)
    return (None, point)


def check_signature(key, message, sig):
    """None when `sig` is a valid signature of `message` under `key` (keys.md §2), else the code."""
    refusal = check_public_key(key)
    if refusal is not None:
        return refusal
    a_point = _key_cache[bytes(key)][1]
    sig = bytes(sig)
    if len(sig) != 64:
        return "SIG_LENGTH"
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return "S_OUT_OF_RANGE"
    r_bytes = sig[:32]
    r_point, canonical = _decode(r_bytes)
    if r_point is None:
        return "R_NOT_A_POINT"
    if not canonical:
        return "R_NON_CANONICAL"
    if _is_identity(_mul(8, r_point)):
        return "R_SMALL_ORDER"
    k = int.from_bytes(hashlib.sha512(r_bytes + bytes(key) + bytes(message)).digest(), "little") % L
    # Comparing encodings: the encoding of [S]B - [k]A must equal the bytes of R (keys.md §2.2).
    check = _add(_mul(s, _BASE), _neg(_mul(k, a_point)))
    if _encode(check) != r_bytes:
        return "EQUATION"
    return None


def key_id(public_key):
    """keys.md §5."""
    return "ed25519:" + hashlib.sha256(bytes(public_key)).digest()[:8].hex()
