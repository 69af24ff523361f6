#!/usr/bin/env bash
# ordership's whole check, as CI runs it: formatting, lints, the architecture's dependency rule,
# and every test. Works on a fresh machine: it installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

step "toolchain"
command -v cargo >/dev/null || fail "cargo is not installed (rustup, toolchain in rust-toolchain.toml)"
cargo --version
if ! command -v cc >/dev/null; then
  step "installing a C compiler (needed by -sys crates)"
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "architecture: the dependency rule"
# normal (non-dev) dependencies of one workspace crate, as crate names
deps() { cargo tree -p "$1" -e normal --prefix none --locked 2>/dev/null | awk 'NR > 1 {print $1}' | sort -u; }
forbidden_in() {
  local crate=$1; shift
  local found
  found=$(deps "$crate" | grep -Ex "$(IFS='|'; echo "$*")" || true)
  [ -z "$found" ] || fail "$crate must not depend on: $(echo "$found" | tr '\n' ' ')"
  echo "ok: $crate depends on none of: $*"
}
forbidden_in ordership-domain tokio 'sqlx.*' 'rdkafka.*' 'axum.*' hyper mockall anyhow 'ordership-.*'
forbidden_in ordership-application 'sqlx.*' 'rdkafka.*' 'axum.*' hyper mockall anyhow ordership-memory ordership-http ordership-postgres ordership-kafka
forbidden_in ordership-memory 'sqlx.*' 'rdkafka.*' 'axum.*' hyper anyhow ordership-application ordership-http
forbidden_in ordership-http 'sqlx.*' 'rdkafka.*' anyhow ordership-memory

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"

printf '\nscripts/test.sh: all checks passed in %ss\n' "$((SECONDS - started))"
# One closing line with the totals of every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
