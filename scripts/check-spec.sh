#!/usr/bin/env bash
# Keeps the wire specification (docs/spec/) honest. Fails when a file there names a source file
# (`*.rs`) or one of our crates (the spec describes the wire and what a peer observes, not our
# code), when an ErrorInfo reason the code can return is missing from docs/spec/errors.md, or
# when a signature or key refusal code is missing from docs/spec/keys.md, or when a relative link
# there points at no file. Called by scripts/test.sh; needs only grep and sed, and takes about a
# second.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=docs/spec
failed=0
fail() {
  echo "spec: $*" >&2
  failed=1
}

# 1. No source file names.
if grep -nE '\.rs\b' "$spec"/*.md; then
  fail "the lines above name a source file; describe the wire behaviour instead (implementation notes go to ARCHITECTURE.md or docs/internals/)"
fi

# 2. No crate names. Protocol identifiers (formats, a header, the proto baseline image) that
# start like a crate name are allowed.
allowed='rcpfed-bundle/v1|rcpfed-registry-chain-v1|rcpfed-ed25519-secret-key-v1|rcpfed-backlog-end|rcpfed-v1\.binpb'
crates_named=0
for file in "$spec"/*.md; do
  if sed -E "s#${allowed}##g" "$file" | grep -nE 'rcpfed-[a-z]+' | sed "s#^#$file:#"; then
    crates_named=1
  fi
done
if [ "$crates_named" -ne 0 ]; then
  fail "the lines above name a crate (rcpfed-…); describe the wire behaviour instead"
fi

# 3. Every reason the code can return is in errors.md.
# Reasons are self-named constants (`pub const X: &str = "X";`, the `reasons` module and a few
# crates' own), literals given with a class (`RejectClass::Precondition, "WITNESS_STORE"`), or
# literals set on a status directly (`set_error_info("INTERNAL", …)`).
# REF_AREA and TIME_PERIOD are self-named SDMX concept ids, not reasons.
not_reasons='^(REF_AREA|TIME_PERIOD)$'
reasons="$(
  {
    grep -rhoE 'pub const ([A-Z][A-Z0-9_]+): &str = "\1";' crates/*/src --include='*.rs' |
      sed -E 's/.*"([A-Z0-9_]+)".*/\1/'
    grep -rhoE 'RejectClass::[A-Za-z]+,[[:space:]]*"[A-Z][A-Z0-9_]+"' crates/*/src --include='*.rs' |
      sed -E 's/.*"([A-Z0-9_]+)"/\1/'
    grep -rhoE 'set_error_info\("[A-Z][A-Z0-9_]+"' crates/*/src --include='*.rs' |
      sed -E 's/.*"([A-Z0-9_]+)"/\1/'
  } | grep -vE "$not_reasons" | sort -u
)"
count=0
for reason in $reasons; do
  count=$((count + 1))
  if ! grep -q "\`$reason\`" "$spec/errors.md"; then
    fail "reason $reason is returned by the code but missing from $spec/errors.md"
  fi
done
if [ "$count" -lt 50 ]; then
  fail "found only $count reason codes in crates/; the search in scripts/check-spec.sh is out of date"
fi

# 4. Every key and signature refusal code (the `signature_check` metadata) is in keys.md.
# SECRET_KEY_MALFORMED and RNG_FAILED concern the local secret key file and randomness, not the
# acceptance rule.
codes="$(sed -nE 's/.*=> "([A-Z][A-Z0-9_]+)",?$/\1/p' crates/rcpfed-core/src/keys.rs |
  grep -vE '^(SECRET_KEY_MALFORMED|RNG_FAILED)$' | sort -u)"
if [ -z "$codes" ]; then
  fail "found no key refusal codes in crates/rcpfed-core/src/keys.rs; the search is out of date"
fi
for code in $codes; do
  if ! grep -q "\`$code\`" "$spec/keys.md"; then
    fail "key refusal code $code is missing from $spec/keys.md"
  fi
done

# 5. Every relative link in docs/spec points at a file that exists.
for file in "$spec"/*.md; do
  for target in $(grep -oE '\]\([^)#[:space:]]+' "$file" | sed -E 's/^\]\(//' | grep -v '^https\?:' | sort -u); do
    if [ ! -e "$spec/$target" ]; then
      fail "$file links to $target, which does not exist"
    fi
  done
done

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "spec: docs/spec names no source file or crate; $count reasons in errors.md; $(echo "$codes" | wc -w) key refusal codes in keys.md"
