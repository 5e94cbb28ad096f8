#!/usr/bin/env bash
# make demo: the main job on the embedded default. A throwaway PostgreSQL
# cluster archives its WAL to a file:// store (encrypted), takes a base
# backup, loses a table, and is restored to the moment before the loss.
# Everything lives in one temporary directory, removed at the end.
set -euo pipefail
wv="${1:?usage: demo.sh path/to/walvault}"
bindir="${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}"
[ -x "$bindir/initdb" ] || { echo "PostgreSQL 15 server binaries not found (install postgresql-15 or set PG_BINDIR)" >&2; exit 1; }

work=$(mktemp -d /tmp/walvault-demo.XXXXXX)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)   # PostgreSQL refuses to run as root
  chown postgres: "$work"
fi
cp "$wv" "$work/walvault"           # somewhere the server's user can run it from
# make build's walvault is the front of archive_command and restore_command;
# every other command runs in walvault-full beside it.
[ -x "$(dirname "$wv")/walvault-full" ] && cp "$(dirname "$wv")/walvault-full" "$work/"
wv="$work/walvault"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)
port2=$((port + 1))
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cleanup() {
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/restored" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "the keys: the server encrypts to the recipient and signs; restores decrypt and verify"
keys=$("${as_pg[@]}" "$wv" keygen "$work/restore.key" --signing-key "$work/signing.key")
recipient=$(sed -n 1p <<<"$keys")
verify_key=$(sed -n 2p <<<"$keys")
echo "recipient: $recipient"
echo "verify key: $verify_key"
cat > "$work/walvault.yaml" <<YAML
store: file://$work/store
recipient: [$recipient]
signing-key: $work/signing.key
verify-key: [$verify_key]
identity-file: $work/restore.key
YAML
[ "$(id -u)" = 0 ] && chown postgres: "$work/walvault.yaml"
export WALVAULT_CONFIG="$work/walvault.yaml" PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres

step "a throwaway PostgreSQL cluster archiving through walvault"
"${as_pg[@]}" "$bindir/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
archive_mode = on
archive_command = '$wv wal-push %p'
CONF
echo "archive_command = '$wv wal-push %p'   (settings from \$WALVAULT_CONFIG)"
"${as_pg[@]}" env WALVAULT_CONFIG="$WALVAULT_CONFIG" "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
run "$bindir/pgbench" -i -s 5 -q 2>&1 | tail -1

step "a base backup"
run "${as_pg[@]}" env WALVAULT_CONFIG="$WALVAULT_CONFIG" PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=postgres "$wv" backup-push --fast-checkpoint --pgdata "$work/data"
run "$wv" backup-list

step "more work, a moment to remember, then the disaster"
"$bindir/pgbench" -t 500 -n >/dev/null 2>&1
psql -XAtq -c "CREATE TABLE precious AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g"
before=$(psql -XAtq -c "SELECT count(*) || ' rows, checksum ' || md5(string_agg(v, ',' ORDER BY id)) FROM precious")
sleep 1
target=$(psql -XAtq -c "SELECT now()")
sleep 1
psql -XAtq -c "SELECT pg_switch_wal()" >/dev/null
echo "precious at $target: $before"
run psql -XAtq -c "DROP TABLE precious"
psql -XAtq -c "SELECT pg_switch_wal()" >/dev/null
sleep 2
"${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null
echo "(server stopped; imagine it is gone)"

step "restore to the moment before the DROP, from the store alone"
mkdir -m 700 "$work/restored"; [ "$(id -u)" = 0 ] && chown postgres: "$work/restored"
run "${as_pg[@]}" env WALVAULT_CONFIG="$WALVAULT_CONFIG" "$wv" restore "$work/restored" --target-time "$target"
"${as_pg[@]}" env WALVAULT_CONFIG="$WALVAULT_CONFIG" "$bindir/pg_ctl" -D "$work/restored" -l "$work/restored.log" -o "-p $port2" -w -t 120 start >/dev/null ||
  { echo "demo FAILED: the restored server did not start; its log:" >&2; tail -20 "$work/restored.log" >&2; exit 1; }
for _ in $(seq 1 120); do
  [ "$(psql -p $port2 -XAtq -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && break
  sleep 0.5
done
after=$(psql -p $port2 -XAtq -c "SELECT count(*) || ' rows, checksum ' || md5(string_agg(v, ',' ORDER BY id)) FROM precious")
echo "precious after restore: $after"
[ "$before" = "$after" ] || { echo "demo FAILED: the restored table differs" >&2; exit 1; }
echo
echo "demo OK: the dropped table is back as it was at $target"
