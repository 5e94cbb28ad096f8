#!/usr/bin/env bash
# The cost of authenticating before use (issue 17): restore and
# dump-restore of the same pgbench database with two walvault builds side
# by side, interleaved, in one run: wall time and peak RSS of each.
#
#   bash bench/auth.sh OLD-WALVAULT [NEW-WALVAULT]     (NEW default: bin/walvault)
#   SCALE=50 RUNS=3 MODES="lz4 lz4+age" bash bench/auth.sh /tmp/walvault-old
#
# OLD is any earlier build (git worktree add /tmp/old <commit> && make -C
# /tmp/old build). Each build archives (one archive_command runs both),
# backs up and dumps into its own file:// store, then restores its own
# backup and dump. Runs as root (PostgreSQL as postgres) or as the owner of
# the PostgreSQL binaries. Restore is timed to the end of walvault restore
# (files written, checked and fsynced); dump-restore to the end of
# pg_restore.
set -euo pipefail

OLD=$(readlink -f "${1:?usage: bench/auth.sh OLD-WALVAULT [NEW-WALVAULT]}")
NEW=$(readlink -f "${2:-bin/walvault}")
SCALE=${SCALE:-50}
RUNS=${RUNS:-3}
MODES=${MODES:-"lz4 lz4+age"}
PGBIN=${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "bench: no walvault binary at $b" >&2; exit 2; }; done
[ -x "$PGBIN/initdb" ] || { echo "bench: no PostgreSQL binaries in $PGBIN" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/wvauth-XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
data="$WORK/data"
cleanup() {
	[ -f "$data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

cp "$OLD" "$WORK/old" && cp "$NEW" "$WORK/new" && chmod 755 "$WORK/old" "$WORK/new"
as_pg "$WORK/new" keygen "$WORK/key" --signing-key "$WORK/sign" >"$WORK/keys" 2>/dev/null
RECIPIENT=$(sed -n 1p "$WORK/keys")
export WALVAULT_SIGNING_KEY="$WORK/sign" WALVAULT_VERIFY_KEY="$(sed -n 2p "$WORK/keys")" WALVAULT_IDENTITY_FILE="$WORK/key"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/key" "$WORK/sign"

port=$((55000 + RANDOM % 4000))
as_pg mkdir "$WORK/store-old" "$WORK/store-new"
as_pg "$PGBIN/initdb" -D "$data" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >>"$data/postgresql.conf" <<EOC
listen_addresses = ''
port = $port
unix_socket_directories = '$WORK'
fsync = off
archive_mode = on
archive_command = '$WORK/old wal-push --store file://$WORK/store-old %p && $WORK/new wal-push --store file://$WORK/store-new %p'
max_wal_size = '4GB'
EOC
as_pg env WALVAULT_SIGNING_KEY="$WORK/sign" "$PGBIN/pg_ctl" -D "$data" -l "$WORK/log" -w start >/dev/null
export PGHOST=$WORK PGPORT=$port PGUSER=postgres PGDATABASE=postgres
"$PGBIN/pgbench" -i -s "$SCALE" -q >/dev/null 2>&1
"$PGBIN/psql" -qXc "CHECKPOINT" >/dev/null
mib=$(( $("$PGBIN/psql" -XAtc "SELECT sum(pg_database_size(oid)) FROM pg_database") / 1048576 ))

# t VAR CMD...: runs CMD under GNU time; VAR gets "seconds peak-RSS-KiB
# user-CPU system-CPU".
t() {
	local var=$1; shift
	sync
	/usr/bin/time -o "$WORK/t" -f "%e %M %U %S" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
	printf -v "$var" '%s' "$(cat "$WORK/t")"
}

printf 'pgbench -s %s: %s MiB; walvault old %s, new %s; %s run(s) each, interleaved\n' "$SCALE" "$mib" \
	"$("$WORK/old" version | awk '{print $2}')" "$("$WORK/new" version | awk '{print $2}')" "$RUNS"
printf '%-8s %-13s %4s %8s %8s %8s %8s %8s %8s %7s %7s\n' mode op run "old s" "new s" "old CPU" "new CPU" "old RSS" "new RSS" "wall" "CPU"
printf '%-8s %-13s %4s %8s %8s %8s %8s %8s %8s %7s %7s\n' "" "" "" "" "" "u+s s" "u+s s" "MiB" "MiB" "new/old" "new/old"
for mode in $MODES; do
	recip=()
	[ "$mode" = lz4+age ] && recip=(--recipient "$RECIPIENT")
	declare -A bk dp
	for v in old new; do
		sleep 1 # names carry the second they started
		t _ "$WORK/$v" backup-push --store "file://$WORK/store-$v" --fast-checkpoint --log-level warn "${recip[@]}"
		bk[$v]=$(awk '{print $2}' "$WORK/out")
		# The pgbench tables are in database postgres.
		t _ "$WORK/$v" dump-push postgres --store "file://$WORK/store-$v" --log-level warn "${recip[@]}"
		dp[$v]=$(awk '{print $2}' "$WORK/out")
	done
	for run in $(seq "$RUNS"); do
		declare -A r d
		for v in old new; do
			dest="$WORK/restore-$v"
			# Files only, to the backup's own consistent point: the WAL after
			# it may still be on its way to the store.
			t "r[$v]" "$WORK/$v" restore "$dest" --store "file://$WORK/store-$v" --backup "${bk[$v]}" --target-immediate --log-level warn
			rm -rf "$dest"
			"$PGBIN/psql" -qXc "DROP DATABASE IF EXISTS target_$v" -c "CREATE DATABASE target_$v" >/dev/null
			# The new build restores into another name only when told whose dump it is.
			extra=()
			help=$("$WORK/$v" dump-restore --help 2>&1 || true)
			[[ $help == *--database* ]] && extra=(--database postgres)
			t "d[$v]" "$WORK/$v" dump-restore "${dp[$v]}" --store "file://$WORK/store-$v" --dbname "host=$WORK port=$port dbname=target_$v" "${extra[@]}" --log-level warn
		done
		for op in restore dump-restore; do
			if [ $op = restore ]; then read -r os orss ou osy <<<"${r[old]}"; read -r ns nrss nu nsy <<<"${r[new]}"; else read -r os orss ou osy <<<"${d[old]}"; read -r ns nrss nu nsy <<<"${d[new]}"; fi
			oc=$(awk -v a="$ou" -v b="$osy" 'BEGIN { print a + b }')
			nc=$(awk -v a="$nu" -v b="$nsy" 'BEGIN { print a + b }')
			printf '%-8s %-13s %4d %8.2f %8.2f %8.2f %8.2f %8d %8d %7.2f %7.2f\n' "$mode" "$op" "$run" "$os" "$ns" "$oc" "$nc" $((orss / 1024)) $((nrss / 1024)) \
				"$(awk -v a="$ns" -v b="$os" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$(awk -v a="$nc" -v b="$oc" 'BEGIN { print (b > 0 ? a / b : 0) }')"
		done
	done
done
