#!/usr/bin/env bash
# What the real postgres image's entrypoint does, as far as docker-compose.yml relies on it:
#  - on the first start (empty PGDATA): initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD as its
#    password, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sh and *.sql against a server that
#    listens on its unix socket only, then stop that server;
#  - then run PostgreSQL in the foreground as user postgres, listening on every address, with password
#    (scram-sha-256) authentication over TCP and trust on the local socket.
set -euo pipefail

if [[ "${1:-}" != postgres ]]; then
  exec "$@"
fi

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

: "${POSTGRES_PASSWORD:?postgres: set POSTGRES_PASSWORD}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
         --encoding=UTF8 -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  export PGUSER="$user"
  if [[ "$db" != postgres ]]; then
    psql --no-psqlrc -v ON_ERROR_STOP=1 --dbname postgres --set db="$db" <<'SQL' >/dev/null
CREATE DATABASE :"db";
SQL
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)  echo "postgres: running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "postgres: running $f"; psql --no-psqlrc -v ON_ERROR_STOP=1 --dbname "$db" -f "$f" ;;
      *)     ;;
    esac
  done
  unset PGUSER
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres: initialised $PGDATA"
fi

exec "$@" -D "$PGDATA" -c listen_addresses='*'
