#!/usr/bin/env bash
# backup-push and restore figures: wall time, throughput and peak RSS of
# walvault on pgbench databases of several sizes, to a file:// store, with
# lz4 and with lz4 + age encryption.
#
#   bash bench/backup.sh [path/to/walvault]      (default: bin/walvault)
#   SCALES="10 50" RUNS=3 bash bench/backup.sh
#
# Runs as root (PostgreSQL as the postgres user) or as the user owning the
# PostgreSQL binaries. Restore is timed to the end of walvault restore
# (files written, verified and fsynced; WAL replay is PostgreSQL's).
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
SCALES=${SCALES:-"10 20 50"}
RUNS=${RUNS:-3}
PGBIN=${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
[ -x "$BIN" ] || { echo "bench: no walvault binary at $BIN (run make build)" >&2; exit 2; }
[ -x "$PGBIN/initdb" ] || { echo "bench: no PostgreSQL binaries in $PGBIN" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/wvbench-XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
cleanup() {
	for d in "$WORK"/data-*; do [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

cp "$BIN" "$WORK/walvault" && chmod 755 "$WORK/walvault"
# The front (make build) runs everything but WAL through walvault-full beside it.
[ -x "$(dirname "$BIN")/walvault-full" ] && cp "$(dirname "$BIN")/walvault-full" "$WORK/"
WV="$WORK/walvault"
as_pg "$WV" keygen "$WORK/key" --signing-key "$WORK/sign.key" >"$WORK/keys" 2>/dev/null
RECIPIENT=$(sed -n 1p "$WORK/keys")
# Writers sign, readers verify (walvault refuses to do otherwise).
export WALVAULT_SIGNING_KEY="$WORK/sign.key" WALVAULT_VERIFY_KEY="$(sed -n 2p "$WORK/keys")"

port=55432
printf '%-6s %-8s %-9s %9s %9s %9s %10s %11s\n' scale data mode op seconds "MiB/s" "peak RSS" stored
for scale in $SCALES; do
	data="$WORK/data-$scale" store="$WORK/store-$scale"
	as_pg mkdir "$store"
	as_pg "$PGBIN/initdb" -D "$data" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
	cat >>"$data/postgresql.conf" <<EOC
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$WORK'
fsync = off
archive_mode = on
archive_command = '$WV wal-push %p'
max_wal_size = '4GB'
EOC
	as_pg env WALVAULT_STORE="file://$store" "$PGBIN/pg_ctl" -D "$data" -l "$WORK/log-$scale" -w start >/dev/null
	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres WALVAULT_STORE="file://$store"
	"$PGBIN/pgbench" -i -s "$scale" -q >/dev/null 2>&1
	"$PGBIN/psql" -qXc "CHECKPOINT" >/dev/null
	# Let the archiver catch up first: wal-push running beside a timed
	# command would be measured with it.
	last=$("$PGBIN/psql" -XAtc "SELECT pg_walfile_name(pg_switch_wal())")
	until [ "$("$PGBIN/psql" -XAtc "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ]; do sleep 0.2; done
	size=$("$PGBIN/psql" -XAtc "SELECT sum(pg_database_size(oid)) FROM pg_database")
	mib=$((size / 1048576))
	for mode in lz4 lz4+age; do
		recip=()
		[ "$mode" = lz4+age ] && recip=(--recipient "$RECIPIENT")
		for run in $(seq "$RUNS"); do
			sync
			sleep 1 # backup names carry the second they started
			/usr/bin/time -o "$WORK/t" -f "%e %M" "$WV" backup-push --fast-checkpoint --log-level warn "${recip[@]}" >"$WORK/out"
			read -r secs rss <"$WORK/t"
			name=$(awk '{print $2}' "$WORK/out")
			stored=$(awk '{for (i=1;i<=NF;i++) if ($i=="stored") print $(i-2) " " $(i-1)}' "$WORK/out")
			printf '%-6s %-8s %-9s %9s %9.2f %9.0f %7d MiB %11s\n' "$scale" "${mib}MiB" "$mode" backup "$secs" "$(awk -v a="$mib" -v b="$secs" 'BEGIN { print a / b }')" $((rss / 1024)) "$stored"
			dest="$WORK/restore"
			sync
			/usr/bin/time -o "$WORK/t" -f "%e %M" "$WV" restore "$dest" --backup "$name" --identity-file "$WORK/key" --log-level warn >/dev/null
			read -r secs rss <"$WORK/t"
			printf '%-6s %-8s %-9s %9s %9.2f %9.0f %7d MiB\n' "$scale" "${mib}MiB" "$mode" restore "$secs" "$(awk -v a="$mib" -v b="$secs" 'BEGIN { print a / b }')" $((rss / 1024))
			rm -rf "$dest"
		done
	done
	as_pg "$PGBIN/pg_ctl" -D "$data" -m fast stop >/dev/null
	rm -rf "$data" "$store"
	port=$((port + 1))
done
