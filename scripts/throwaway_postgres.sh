#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on 127.0.0.1 for the test suite and print its SQLAlchemy URL.
# Usage: eval "$(scripts/throwaway_postgres.sh start DIR)"   ...   scripts/throwaway_postgres.sh stop DIR
# Uses PostgreSQL's binaries from PATH or /usr/lib/postgresql/*/bin (installed with apt-get where
# absent and allowed). As root, the cluster runs as the `postgres` system user (initdb refuses root).
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a folder for the cluster}

find_bin() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}

run_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
  initdb=$(find_bin initdb || true)
  if [ -z "$initdb" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    initdb=$(find_bin initdb || true)
  fi
  [ -n "$initdb" ] || { echo "echo 'no PostgreSQL binaries: PostgreSQL tests will be skipped' >&2"; exit 0; }
  pg_ctl=$(dirname "$initdb")/pg_ctl
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run_as_owner "$initdb" -D "$dir/data" -U anima -A trust -E UTF8 >/dev/null
  run_as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
  echo "export ANIMA_TEST_POSTGRES_URL=postgresql+psycopg://anima@127.0.0.1:$port/postgres"
  ;;
stop)
  pg_ctl=$(dirname "$(find_bin initdb)")/pg_ctl
  [ -d "$dir/data" ] && run_as_owner "$pg_ctl" -D "$dir/data" -m immediate stop >/dev/null || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
