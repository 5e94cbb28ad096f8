#!/usr/bin/env bash
# Restore drills (issue 23), one run: what walvault drill costs over what
# a DBA does by hand to try a backup. See bench/README.md.
#
#   bash bench/drill.sh [path/to/walvault]      (default: bin/walvault; make build)
#   SCALE=10 bash bench/drill.sh
#
# Needs root (PostgreSQL and walvault run as the postgres user, as the
# systemd unit runs the drill) and PostgreSQL 15's server binaries.
#
# 1. pgbench -i -s SCALE in a cluster archiving to a file:// store, a full
#    backup, then pgbench transactions so that recovery has WAL to replay,
#    and a segment switch.
# 2. By hand: walvault restore into an empty directory, port and
#    archive_mode = off appended to postgresql.auto.conf (as the README's
#    trial restore does), pg_ctl start, wait until the server has promoted.
#    Wall time from the restore's start to promotion.
# 3. walvault drill of the same backup (restore, pg_verifybackup, start,
#    replay, promotion, connection and catalog checks of every database,
#    stop, removal), then with --amcheck. Wall time of each, and the
#    drill's own time per check.
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
SCALE=${SCALE:-50}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

die() { echo "drill bench: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and walvault run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
"$BIN" drill --help >/dev/null 2>&1 || die "$BIN has no drill command"

WORK=$(mktemp -d /tmp/wvdrill-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
	for d in "$WORK"/data "$WORK"/restore; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp "$BIN" "$WORK/walvault"
# The front (make build) runs everything but WAL through walvault-full beside it.
[ -x "$(dirname "$BIN")/walvault-full" ] && cp "$(dirname "$BIN")/walvault-full" "$WORK/"
chmod 755 "$WORK/walvault"
WV="$WORK/walvault"
VERIFY_KEY=$(as_pg "$WV" keygen --signing-key "$WORK/signing.key" 2>/dev/null | tail -n 1)
[ "${VERIFY_KEY#walvault-verify-}" != "$VERIFY_KEY" ] || die "walvault keygen --signing-key printed no verify key"
export WALVAULT_SIGNING_KEY=$WORK/signing.key WALVAULT_VERIFY_KEY=$VERIFY_KEY
STORE=$WORK/store
export WALVAULT_STORE=file://$STORE
as_pg mkdir -p "$STORE" "$WORK/tmp"

export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres PGPORT=5451
psql() { "$PGBIN/psql" -XAtq "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- 1. the cluster, a backup, WAL after it
echo "drill bench: pgbench -s $SCALE ($(date -u +%H:%M:%S))" >&2
as_pg "$PGBIN/initdb" -D "$WORK/data" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOC
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
archive_mode = on
archive_command = '$WV wal-push %p'
EOC
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/data.log" -w start >/dev/null
"$PGBIN/pgbench" -i -s "$SCALE" -q >/dev/null 2>&1
as_pg "$WV" backup-push --fast-checkpoint --log-level warn >"$WORK/backup.out"
NAME=$(awk '{ print $2; exit }' "$WORK/backup.out")
[ -d "$STORE/backups/$NAME" ] || die "no backup: $(cat "$WORK/backup.out")"
"$PGBIN/pgbench" -n -c 2 -t 5000 >/dev/null 2>&1
last=$(psql -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 600); do
	[ "$(psql -c "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ] && break
	sleep 0.2
done
WAL_AFTER=$(psql -c "SELECT pg_size_pretty(pg_current_wal_lsn() - '$(as_pg "$WV" backup-list --json | grep -o '"start_lsn": *"[^"]*"' | head -n 1 | cut -d'"' -f4)')")
# The production server stays up, idle, as it would beside a drill.
DATA=$(as_pg "$WV" backup-list --json | tr -d '\n ' | grep -o '"data_size":[0-9]*' | head -n 1 | cut -d: -f2 | awk '{ printf "%.1f MiB", $1 / 1048576 }')
# Both sides read the store from the page cache: the first would pay for
# the disk otherwise.
find "$STORE" -type f -exec cat {} + >/dev/null
echo "drill bench: backup $NAME, $WAL_AFTER of WAL from its start ($(date -u +%H:%M:%S))" >&2

# --- 2, 3. by hand and the drill, REPS times each, interleaved (the
# machine may be shared: each gets the same conditions), then the drill
# with --amcheck once.
REPS=${REPS:-2}
by_hand() { # by_hand N: sets HAND_N, HAND_RESTORE_N, HAND_START_N
	sync
	as_pg mkdir -m 700 "$WORK/restore"
	local t0 t1 t2
	t0=$(now)
	as_pg "$WV" restore --backup "$NAME" --log-level warn "$WORK/restore" >/dev/null
	printf "port = 5452\nunix_socket_directories = '%s'\narchive_mode = off\n" "$WORK" >>"$WORK/restore/postgresql.auto.conf"
	t1=$(now)
	as_pg "$PGBIN/pg_ctl" -D "$WORK/restore" -l "$WORK/restore.log" -w -t 3600 start >/dev/null
	for _ in $(seq 36000); do
		[ "$(psql -p 5452 -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
		sleep 0.1
	done
	t2=$(now)
	printf -v "HAND_$1" '%s' "$(secs "$t0" "$t2")"
	printf -v "HAND_RESTORE_$1" '%s' "$(secs "$t0" "$t1")"
	printf -v "HAND_START_$1" '%s' "$(secs "$t1" "$t2")"
	as_pg "$PGBIN/pg_ctl" -D "$WORK/restore" -m immediate -w stop >/dev/null
	rm -rf "$WORK/restore"
}
drill() { # drill OUT ARGS...: wall seconds in OUT, the JSON report in OUT.json
	local out=$1; shift
	sync
	local a b
	a=$(now)
	as_pg env TMPDIR="$WORK/tmp" "$WV" drill --backup "$NAME" --drill-state-file none --json "$@" >"$out.json" || die "drill failed: $(cat "$out.json")"
	b=$(now)
	secs "$a" "$b" >"$out"
	[ -z "$(ls -A "$WORK/tmp")" ] || die "the drill left $(ls "$WORK/tmp") behind"
}
cleanup_secs() { tr -d '\n ' <"$1.json" | grep -o '"cleanup_seconds":[0-9.e+-]*' | cut -d: -f2 | awk '{ printf "%.2f", $1 }'; }
check_secs() { # check_secs JSON NAME: seconds of that check (summed over databases)
	tr -d '\n ' <"$1" | grep -o "\"name\":\"$2\"[^}]*" | grep -o '"seconds":[0-9.e+-]*' | cut -d: -f2 | awk '{ s += $1 } END { printf "%.2f", s }'
}
for i in $(seq "$REPS"); do
	by_hand "$i"
	drill "$WORK/d$i"
done
drill "$WORK/amcheck" --amcheck

row() { printf '| %-72s |' "$1"; shift; for v in "$@"; do printf ' %6s s |' "$v"; done; echo; }
echo
echo "walvault drill against restore + start by hand, pgbench -s $SCALE ($DATA read), $WAL_AFTER of WAL from the backup's start, file store; $REPS runs of each, interleaved"
echo
hdr="| what                                                                     |"
sep="|--------------------------------------------------------------------------|"
for i in $(seq "$REPS"); do hdr+="    run $i |"; sep+="----------|"; done
echo "$hdr"; echo "$sep"
vals() { local p=$1 i v out=(); for i in $(seq "$REPS"); do v="${p}_$i"; out+=("${!v}"); done; echo "${out[@]}"; }
drills() { local i out=(); for i in $(seq "$REPS"); do out+=("$("$@" "$WORK/d$i")"); done; echo "${out[@]}"; }
wall() { cat "$1"; }
# shellcheck disable=SC2046
row "by hand: walvault restore, then pg_ctl start until promoted" $(vals HAND)
# shellcheck disable=SC2046
row "  walvault restore" $(vals HAND_RESTORE)
# shellcheck disable=SC2046
row "  pg_ctl start, replay, promotion" $(vals HAND_START)
# shellcheck disable=SC2046
row "walvault drill (restore, pg_verifybackup, start, checks, stop, removal)" $(drills wall)
for c in restore pg_verifybackup recovery connect catalog; do
	csecs() { check_secs "$1.json" "$c"; }
	# shellcheck disable=SC2046
	row "  $c" $(drills csecs)
done
# shellcheck disable=SC2046
row "  stop and removal" $(drills cleanup_secs)
row "walvault drill --amcheck (one run)" "$(cat "$WORK/amcheck")"
row "  amcheck" "$(check_secs "$WORK/amcheck.json" amcheck)"
echo
# shellcheck disable=SC2046
awk -v h="$(vals HAND)" -v d="$(drills wall)" -v a="$(cat "$WORK/amcheck")" '
function sort(x, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && x[j-1] > x[j]; j--) { t = x[j]; x[j] = x[j-1]; x[j-1] = t } }
function median(x, n) { return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
BEGIN {
	n = split(h, hs, " "); split(d, ds, " "); sort(hs, n); sort(ds, n)
	printf "drill / by hand: fastest %.2f (%.2f s / %.2f s), median %.2f (%.2f s / %.2f s); with --amcheck (one run) / median by hand: %.2f\n",
		ds[1] / hs[1], ds[1], hs[1], median(ds, n) / median(hs, n), median(ds, n), median(hs, n), a / median(hs, n) }'
