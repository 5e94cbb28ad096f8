#!/usr/bin/env bash
# walvault side by side with pgBackRest 2.45, in one run, on the same data:
# a local directory as the store, lz4, no encryption. See bench/README.md for
# what is measured and the fairness choices.
#
#   bash bench/peers.sh [path/to/walvault]          (default: bin/walvault; make build)
#   PUSH_RUNS=21 BACKUP_RUNS=3 SCALE=20 bash bench/peers.sh
#
# Needs root (it installs Debian's pgbackrest when missing and runs
# PostgreSQL, walvault and pgBackRest as the postgres user) and
# PostgreSQL 15's server binaries.
#
# 1. wal-push vs archive-push: each tool archives the same real 16 MiB
#    pgbench WAL segments, one process per segment as archive_command does,
#    interleaved (run i: both tools push segment i, who goes first
#    alternates): wall time, CPU and peak RSS, medians of PUSH_RUNS (one
#    untimed warm-up push per tool first).
# 2. Full backup of a running pgbench database (two identical copies of one
#    cluster, one archiving with each tool) and restore of it into an empty
#    directory (files only; the server is not started): wall time, CPU, peak
#    RSS (largest process, and all processes summed), medians of
#    BACKUP_RUNS, interleaved the same way.
# Takes about a minute with the defaults (pgbench -s 20, 21 + 3 runs).
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
PUSH_RUNS=${PUSH_RUNS:-21}
BACKUP_RUNS=${BACKUP_RUNS:-3}
SCALE=${SCALE:-20}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

die() { echo "peers: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
if ! command -v pgbackrest >/dev/null || [ ! -x /usr/bin/time ]; then
	echo "peers: installing pgbackrest and time from Debian" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest time >/dev/null
fi
PBR=$(command -v pgbackrest)
PBR_VERSION=$("$PBR" version)
[ "${PBR_VERSION#pgBackRest 2.45}" != "$PBR_VERSION" ] || echo "peers: warning: $PBR_VERSION, not 2.45" >&2

T_START=$(date +%s)
WORK=$(mktemp -d /tmp/wvpeers-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
	for d in "$WORK"/seed "$WORK"/data-*; do
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
# walvault signs what it stores and authenticates what it reads: one key
# pair for the whole run, through the environment every command inherits.
VERIFY_KEY=$(as_pg "$WV" keygen --signing-key "$WORK/signing.key" 2>/dev/null | tail -n 1)
[ "${VERIFY_KEY#walvault-verify-}" != "$VERIFY_KEY" ] || die "walvault keygen --signing-key printed no verify key"
export WALVAULT_SIGNING_KEY=$WORK/signing.key WALVAULT_VERIFY_KEY=$VERIFY_KEY

# timeit OUT CMD...: runs CMD (as the postgres user), writes "seconds
# peak_rss_kib tree_peak_rss_kib cpu_seconds" to OUT, CMD's stdout to OUT.out. The clock
# is read inside runuser so its start-up cost is not counted. peak_rss is
# /usr/bin/time's %M (the largest single process); with TREE=1 the RSS of
# CMD and all its descendants is also summed every 50 ms (pgBackRest's
# backup and restore run worker processes) and the highest sum kept.
cat >"$WORK/timeit" <<'EOF'
#!/bin/bash
out=$1; shift
tree_peak=0
# Sampling uses bash builtins only (no fork), so it costs little beside the
# timed command.
sample() { # adds VmRSS (KiB) of the children of $1 and their descendants to sum
	local t kid kids k v _
	for t in /proc/"$1"/task/*; do
		kids=()
		{ read -r -a kids <"$t/children"; } 2>/dev/null || true # the process may be gone; no newline at the end: read "fails"
		for kid in "${kids[@]}"; do
			{ while read -r k v _; do [ "$k" = VmRSS: ] && { sum=$((sum + v)); break; }; done <"/proc/$kid/status"; } 2>/dev/null || true
			sample "$kid"
		done
	done
}
running() { # $1 exists and is not a zombie
	local k v _
	{ while read -r k v _; do [ "$k" = State: ] && { [ "$v" != Z ]; return; }; done <"/proc/$1/status"; } 2>/dev/null
}
t0=$EPOCHREALTIME
/usr/bin/time -f '%M %U %S' -o "$out.rss" "$@" >"$out.out" 2>"$out.err" &
tpid=$!
if [ "${TREE:-0}" = 1 ]; then
	tick=$(mktemp -u "$out.tick.XXXXXX") && mkfifo "$tick" && exec 3<>"$tick" && rm -f "$tick"
	while running "$tpid"; do
		sum=0; sample "$tpid"
		[ "$sum" -gt "$tree_peak" ] && tree_peak=$sum
		read -r -t 0.05 -u 3 _ || true # a 50 ms sleep without a fork
	done
fi
if ! wait "$tpid"; then
	echo "peers: failed: $*" >&2; cat "$out.err" >&2; exit 1
fi
t1=$EPOCHREALTIME
read -r rss user sys < <(tail -n 1 "$out.rss")
awk -v a="$t0" -v b="$t1" -v m="$rss" -v t="$tree_peak" -v u="$user" -v s="$sys" 'BEGIN { printf "%.4f %d %d %.2f\n", b - a, m, t, u + s }' >"$out"
EOF
chmod 755 "$WORK/timeit"
timed() { # timed KEY CMD...: appends "seconds rss tree_rss cpu" to $WORK/res-KEY
	local key=$1; shift
	as_pg "$WORK/timeit" "$WORK/t" "$@"
	cat "$WORK/t" >>"$WORK/res-$key"
}
median() { # median COLUMN FILE
	awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
mean() { awk -v c="$1" '{ s += $c } END { print s / NR }' "$2"; }
minmax() { awk -v c="$1" 'NR == 1 || $c < lo { lo = $c } NR == 1 || $c > hi { hi = $c } END { printf "%.3f-%.3f", lo, hi }' "$2"; }

# Unix sockets only, in $WORK: no TCP port to collide with other tests.
export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PGBIN/psql" -XAtq -p "$1" -c "$2"; }
pgconf() { # pgconf DATADIR PORT: settings shared by every cluster here
	cat >>"$1/postgresql.conf" <<EOC
listen_addresses = ''
port = $2
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
EOC
}
wait_archived() { # wait_archived PORT: until the archiver has caught up with a switch
	local last
	last=$(psql "$1" "SELECT pg_walfile_name(pg_switch_wal())")
	for _ in $(seq 600); do
		[ "$(psql "$1" "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ] && return 0
		sleep 0.2
	done
	die "archiver on port $1 did not reach $last: $(psql "$1" "SELECT * FROM pg_stat_archiver")"
}

# --- the data: one pgbench database, its WAL, and two copies of its cluster
echo "peers: making a pgbench -s $SCALE cluster ($(date -u +%H:%M:%S))" >&2
SEED=$WORK/seed
as_pg "$PGBIN/initdb" -D "$SEED" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$SEED" 5440
cat >>"$SEED/postgresql.conf" <<EOC
wal_keep_size = '8GB'
EOC
as_pg "$PGBIN/pg_ctl" -D "$SEED" -l "$WORK/seed.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5440 -i -s "$SCALE" -q >/dev/null 2>&1
need=$((PUSH_RUNS + 1))
whole_segments() { # the whole segments: older than the one a switch ended in
	local current
	current=$(psql 5440 "SELECT pg_walfile_name(pg_switch_wal())")
	ls "$SEED/pg_wal" | grep -E '^[0-9A-F]{24}$' | awk -v c="$current" '$1 < c' | sort
}
# pgbench -i -s 20 writes ~22 segments; more WAL if PUSH_RUNS asks for more.
while [ "$(whole_segments | wc -l)" -lt "$need" ]; do
	psql 5440 "VACUUM FULL pgbench_accounts" >/dev/null
done
psql 5440 "CHECKPOINT" >/dev/null
mapfile -t segs < <(whole_segments | tail -n "$need")

# pgBackRest's configuration: two stanzas in one repository, "push" for the
# segments (the seed cluster) and "bk" for the backups (a copy of it).
REPO=$WORK/pbr-repo
cat >"$WORK/pgbackrest.conf" <<EOC
[global]
repo1-path=$REPO
repo1-retention-full=100
compress-type=lz4
process-max=2
start-fast=y
archive-async=n
log-level-console=warn
log-level-file=off
log-path=$WORK/pbr-log
lock-path=$WORK/pbr-lock
spool-path=$WORK/pbr-spool

[push]
pg1-path=$SEED
pg1-port=5440
pg1-socket-path=$WORK

[bk]
pg1-path=$WORK/data-pbr
pg1-port=5442
pg1-socket-path=$WORK
EOC
chmod 644 "$WORK/pgbackrest.conf"
as_pg mkdir -p "$REPO" "$WORK/pbr-log" "$WORK/pbr-lock" "$WORK/pbr-spool"
PB=("$PBR" "--config=$WORK/pgbackrest.conf")
as_pg "${PB[@]}" --stanza=push stanza-create >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$SEED" -m fast -w stop >/dev/null

# The segments, in a directory of their own named pg_wal (walvault keeps
# its spool beside them).
SEGS=$WORK/wal/pg_wal
as_pg mkdir -p "$SEGS"
[ "${#segs[@]}" -ge "$need" ] || die "only ${#segs[@]} whole WAL segments, need $need"
for s in "${segs[@]}"; do as_pg cp "$SEED/pg_wal/$s" "$SEGS/$s"; done

# Two copies of the stopped cluster: data-wv archives with walvault,
# data-pbr with pgBackRest. Only the WAL the last checkpoint needs is kept.
redo=$(as_pg "$PGBIN/pg_controldata" -D "$SEED" | awk -F': *' '/REDO WAL file/ { print $2 }')
for s in $(cd "$SEED/pg_wal" && ls | grep -E '^[0-9A-F]{24}$'); do [ "$s" = "$redo" ] || rm -f "$SEED/pg_wal/$s"; done
as_pg sed -i '/^wal_keep_size/d' "$SEED/postgresql.conf"
for c in wv pbr; do as_pg cp -a "$SEED" "$WORK/data-$c"; done
size=$(du -sb --exclude=pg_wal "$SEED" | awk '{ print $1 }')

# --- 1. one segment per process
echo "peers: wal-push vs archive-push, ${PUSH_RUNS} interleaved runs each ($(date -u +%H:%M:%S))" >&2
WVPUSH=$WORK/wv-push
as_pg mkdir "$WVPUSH"
# warm-up: the first push of each tool also claims the store / archive
# directory; not timed.
as_pg "$WV" wal-push --store "file://$WVPUSH" --upload-concurrency 1 --log-level warn "$SEGS/${segs[0]}"
as_pg "${PB[@]}" --stanza=push archive-push "$SEGS/${segs[0]}"
# Run i pushes segment i with both tools, one after the other; who goes
# first alternates (W P, P W, W P, ...) so that neither always follows the
# other's writes.
push_wv() { timed push-wv "$WV" wal-push --store "file://$WVPUSH" --upload-concurrency 1 --log-level warn "$SEGS/$1"; }
push_pbr() { timed push-pbr "${PB[@]}" --stanza=push archive-push "$SEGS/$1"; }
for i in $(seq 1 "$PUSH_RUNS"); do
	if [ $((i % 2)) = 1 ]; then push_wv "${segs[$i]}"; push_pbr "${segs[$i]}"; else push_pbr "${segs[$i]}"; push_wv "${segs[$i]}"; fi
done
# Every timed push really stored its segment.
n_wv=$(find "$WVPUSH" -type f -name '0*' | wc -l)
n_pb=$(find "$REPO/archive/push" -type f -name '0*' | wc -l)
[ "$n_wv" = "$need" ] && [ "$n_pb" = "$need" ] || die "expected $need archived segments, walvault has $n_wv, pgBackRest $n_pb"
stored_push_wv=$(find "$WVPUSH" -type f -name '0*' -printf '%s\n' | awk '{ s += $1 } END { print s }')
stored_push_pb=$(find "$REPO/archive/push" -type f -name '0*' -printf '%s\n' | awk '{ s += $1 } END { print s }')

# --- 2. full backup and restore
echo "peers: backup and restore, ${BACKUP_RUNS} interleaved runs each ($(date -u +%H:%M:%S))" >&2
WVBK=$WORK/wv-bk
as_pg mkdir "$WVBK"
cat >>"$WORK/data-wv/postgresql.conf" <<EOC
port = 5441
archive_mode = on
archive_command = '$WV wal-push --signing-key $WORK/signing.key --store file://$WVBK %p'
EOC
cat >>"$WORK/data-pbr/postgresql.conf" <<EOC
port = 5442
archive_mode = on
archive_command = '$PBR --config=$WORK/pgbackrest.conf --stanza=bk archive-push %p'
EOC
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-wv" -l "$WORK/wv.log" -w start >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-pbr" -l "$WORK/pbr.log" -w start >/dev/null
as_pg "${PB[@]}" --stanza=bk stanza-create >/dev/null
for p in 5441 5442; do psql $p "CHECKPOINT" >/dev/null; wait_archived $p; done

backup_wv() {
	PGPORT=5441 TREE=1 timed backup-wv "$WV" backup-push --store "file://$WVBK" --fast-checkpoint --log-level warn
	name=$(awk '{ print $2 }' "$WORK/t.out")
	wv_summary=$(cat "$WORK/t.out")
}
backup_pbr() {
	TREE=1 timed backup-pbr "${PB[@]}" --stanza=bk backup --type=full
	label=$(as_pg "${PB[@]}" --stanza=bk info --output=json | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4)
}
restore_wv() { TREE=1 timed restore-wv "$WV" restore --store "file://$WVBK" --backup "$name" --log-level warn "$WORK/restore-wv"; }
restore_pbr() { TREE=1 timed restore-pbr "${PB[@]}" --stanza=bk --set="$label" --pg1-path="$WORK/restore-pbr" restore; }
for r in $(seq 1 "$BACKUP_RUNS"); do
	if [ $((r % 2)) = 1 ]; then order="wv pbr"; else order="pbr wv"; fi
	# archivers idle, dirty pages written: each backup starts from the same state
	for p in 5441 5442; do psql $p "CHECKPOINT" >/dev/null; wait_archived $p; done
	sleep 1 # backup names carry the second they started
	for c in $order; do sync; "backup_$c"; done
	as_pg mkdir -m 700 "$WORK/restore-wv" "$WORK/restore-pbr"
	for c in $order; do sync; "restore_$c"; done
	for c in wv pbr; do
		[ -s "$WORK/restore-$c/global/pg_control" ] && [ -s "$WORK/restore-$c/PG_VERSION" ] || die "restore-$c has no pg_control"
	done
	restored_wv=$(du -sb --exclude=pg_wal "$WORK/restore-wv" | awk '{ print $1 }')
	restored_pb=$(du -sb --exclude=pg_wal "$WORK/restore-pbr" | awk '{ print $1 }')
	rm -rf "$WORK/restore-wv" "$WORK/restore-pbr"
done
# size of one backup in the store (the last one)
stored_bk_wv=$(du -sb "$WVBK/backups/$name" | awk '{ print $1 }')
stored_bk_pb=$(du -sb "$REPO/backup/bk/$label" | awk '{ print $1 }')

# --- the table
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
row() { # row LABEL UNIT WALVAULT PGBACKREST
	local ratio
	ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	printf '%-42s %16s %16s %8s\n' "$1" "$3 $2" "$4 $2" "$ratio"
}
secs() { awk -v v="$(median 1 "$WORK/res-$1")" 'BEGIN { printf "%.3f", v }'; }
# CPU times come in 10 ms steps from /usr/bin/time: their mean says more than their median
cpu() { awk -v v="$(mean 4 "$WORK/res-$1")" 'BEGIN { printf "%.3f", v }'; }
rss() { awk -v v="$(median "${2:-2}" "$WORK/res-$1")" 'BEGIN { printf "%.1f", v / 1024 }'; }
echo
echo "$("$WV" version 2>/dev/null | head -n 1) vs $PBR_VERSION; file store, lz4, no encryption"
echo "pgbench -s $SCALE: $(mib "$size") of data; ${#segs[@]} WAL segments; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians (CPU: means); ratio = walvault / pgBackRest (below 1: walvault faster or smaller)"
printf '%-42s %16s %16s %8s\n' "" walvault pgBackRest ratio
row "wal-push, 1 segment, wall ($PUSH_RUNS runs)" s "$(secs push-wv)" "$(secs push-pbr)"
row "wal-push, 1 segment, CPU user+sys (mean)" s "$(cpu push-wv)" "$(cpu push-pbr)"
row "wal-push, 1 segment, peak RSS" MiB "$(rss push-wv)" "$(rss push-pbr)"
row "wal-push, stored per segment" MiB "$(awk -v b="$stored_push_wv" -v n="$need" 'BEGIN { printf "%.2f", b / n / 1048576 }')" "$(awk -v b="$stored_push_pb" -v n="$need" 'BEGIN { printf "%.2f", b / n / 1048576 }')"
row "full backup, wall ($BACKUP_RUNS runs)" s "$(secs backup-wv)" "$(secs backup-pbr)"
row "full backup, CPU user+sys (mean)" s "$(cpu backup-wv)" "$(cpu backup-pbr)"
row "full backup, peak RSS" MiB "$(rss backup-wv)" "$(rss backup-pbr)"
row "full backup, peak RSS all processes" MiB "$(rss backup-wv 3)" "$(rss backup-pbr 3)"
row "full backup, stored" MiB "$(awk -v b="$stored_bk_wv" 'BEGIN { printf "%.1f", b / 1048576 }')" "$(awk -v b="$stored_bk_pb" 'BEGIN { printf "%.1f", b / 1048576 }')"
row "restore, wall ($BACKUP_RUNS runs)" s "$(secs restore-wv)" "$(secs restore-pbr)"
row "restore, CPU user+sys (mean)" s "$(cpu restore-wv)" "$(cpu restore-pbr)"
row "restore, peak RSS" MiB "$(rss restore-wv)" "$(rss restore-pbr)"
row "restore, peak RSS all processes" MiB "$(rss restore-wv 3)" "$(rss restore-pbr 3)"
echo
echo "ranges (min-max, s): wal-push walvault $(minmax 1 "$WORK/res-push-wv"), pgBackRest $(minmax 1 "$WORK/res-push-pbr");" \
	"backup $(minmax 1 "$WORK/res-backup-wv") / $(minmax 1 "$WORK/res-backup-pbr");" \
	"restore $(minmax 1 "$WORK/res-restore-wv") / $(minmax 1 "$WORK/res-restore-pbr")"
echo "restored data directories (without pg_wal): walvault $(mib "$restored_wv"), pgBackRest $(mib "$restored_pb")"
echo "walvault's last backup: $wv_summary"
echo "CPU: user+sys of the command and its children (not PostgreSQL's own work, not archive_command)"
echo "peak RSS: /usr/bin/time's %M, the largest single process; all processes: the command and its descendants summed, sampled every 50 ms"
echo "took $(($(date +%s) - T_START)) s"
