#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from the installed binaries.
#
#   scripts/pg-test-cluster.sh start [DIR]   initdb into DIR (default: a new temp dir), start the
#                                            server on a free loopback port with trust auth, create
#                                            the database `rcpfed_test`, and print
#                                            `export RCPFED_TEST_POSTGRES_URL=postgres://...`
#                                            (so `eval "$(scripts/pg-test-cluster.sh start)"`).
#                                            A DIR whose server already runs is reused.
#   scripts/pg-test-cluster.sh stop DIR      stop the server and remove DIR.
#
# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` system user
# (runuser); as anyone else it runs as the caller. Nothing outside DIR is touched. The cluster
# keeps fsync on, like a real one, so timings measured on it are honest.
set -euo pipefail

pg_bin="${RCPFED_PG_BIN:-}"
if [ -z "$pg_bin" ]; then
  for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/initdb" ] && pg_bin="$candidate"
  done
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "pg-test-cluster: no PostgreSQL binaries found (set RCPFED_PG_BIN to the dir holding initdb)" >&2
  exit 2
fi

# The cluster's owner when run as root: RCPFED_PG_USER, else the `postgres` user Debian's
# packages create, else `nobody` (any unprivileged account will do).
if [ -z "${RCPFED_PG_USER:-}" ]; then
  if id -u postgres >/dev/null 2>&1; then RCPFED_PG_USER=postgres; else RCPFED_PG_USER=nobody; fi
fi

# Runs a PostgreSQL binary as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$RCPFED_PG_USER" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

print_url() {
  local dir="$1" port
  port="$(cat "$dir/port")"
  echo "export RCPFED_TEST_POSTGRES_URL=postgres://rcpfed@127.0.0.1:${port}/rcpfed_test"
  echo "export RCPFED_TEST_POSTGRES_DIR=$dir"
}

start() {
  local dir="${1:-}"
  if [ -n "$dir" ] && [ -f "$dir/port" ] && as_owner "$pg_bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    print_url "$dir"
    return
  fi
  if [ -z "$dir" ]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/rcpfed-pg.XXXXXX")"
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown "$RCPFED_PG_USER" "$dir"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$pg_bin/initdb" -D "$dir/data" -U rcpfed -A trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # A free port can be taken between the probe and the bind: try a few.
  local attempt port
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" >/dev/null; then
      echo "$port" | as_owner tee "$dir/port" >/dev/null
      break
    fi
    if [ "$attempt" = 5 ]; then
      echo "pg-test-cluster: the server did not start; its log:" >&2
      cat "$dir/server.log" >&2
      exit 1
    fi
  done
  as_owner "$pg_bin/psql" -h "$dir" -p "$port" -U rcpfed -d postgres -qtA \
    -c "SELECT 1 FROM pg_database WHERE datname = 'rcpfed_test'" | grep -q 1 ||
    as_owner "$pg_bin/createdb" -h "$dir" -p "$port" -U rcpfed rcpfed_test
  print_url "$dir"
}

stop() {
  local dir="${1:?usage: pg-test-cluster.sh stop DIR}"
  if [ -f "$dir/data/PG_VERSION" ]; then
    # As whoever owns the cluster (it may have been started with another RCPFED_PG_USER).
    RCPFED_PG_USER="$(stat -c %U "$dir/data")"
    as_owner "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  # Only a directory this script made (it has the data dir or is empty) is removed.
  if [ -d "$dir/data" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: $0 start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
