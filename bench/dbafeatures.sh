#!/usr/bin/env bash
# Issue 21's performance targets, one run (see bench/README.md):
#
#   bash bench/dbafeatures.sh [path/to/walvault]      (default: bin/walvault)
#   SCALE=50 TPS_SCALE=20 TPS_SECONDS=20 bash bench/dbafeatures.sh
#   SECTIONS=1 bash bench/dbafeatures.sh              (only section 1; default 123)
#
# 1. Delta restore: pgbench -i -s SCALE archiving to a file store, a full
#    backup, UPDATE 1% of pgbench_accounts in one range (aid <= 1%), a
#    checkpoint, the server stopped; then a clean restore of the backup into
#    an empty directory and restore --delta of it over the stopped
#    directory (and --delta-by-time over a fresh copy of it), each timed;
#    the bytes each downloads are counted from restore --json.
# 2. Standby: a primary (pgbench -s TPS_SCALE) and a streaming standby
#    (pg_basebackup -R); pgbench -c 2 on the primary for TPS_SECONDS three
#    times: alone, while backups of the primary run back to back, and while
#    backups of the standby do: the primary's TPS each time.
# 3. Rate limits: a backup (compression none) with --max-upload-rate 20MiB,
#    its stored bytes over its copy time; the agent archiving a backlog of
#    16 MiB segments (compression none) at 20MiB, the store's growth over
#    the middle 10 s.
# Needs root (runs PostgreSQL and walvault as postgres) and PostgreSQL 15.
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
SCALE=${SCALE:-50}
TPS_SCALE=${TPS_SCALE:-20}
TPS_SECONDS=${TPS_SECONDS:-20}
SECTIONS=${SECTIONS:-123}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
die() { echo "dbafeatures: $*" >&2; exit 2; }
say() { echo "dbafeatures: $* ($(date -u +%H:%M:%S))" >&2; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BIN" ] || die "no walvault binary at $BIN (make build)"
command -v jq >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }

WORK=$(mktemp -d /tmp/wvdba-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
AGENT_PID=
cleanup() {
	[ -n "$AGENT_PID" ] && kill ${AGENT_CHILD:-} "$AGENT_PID" 2>/dev/null || true
	for d in "$WORK"/d-*; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp "$BIN" "$WORK/walvault" && chmod 755 "$WORK/walvault"
# The front (make build) runs everything but WAL through walvault-full beside it.
[ -x "$(dirname "$BIN")/walvault-full" ] && cp "$(dirname "$BIN")/walvault-full" "$WORK/"
WV=$WORK/walvault
VERIFY_KEY=$(as_pg "$WV" keygen --signing-key "$WORK/signing.key" 2>/dev/null | tail -n 1)
export WALVAULT_SIGNING_KEY=$WORK/signing.key WALVAULT_VERIFY_KEY=$VERIFY_KEY
export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PGBIN/psql" -XAtq -p "$1" -c "$2"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "meets" : "MISSES" }'; }
# cluster NAME PORT [initdb args...]: a running cluster archiving to WORK/store-NAME
cluster() {
	local name=$1 d=$WORK/d-$1 port=$2; shift 2
	as_pg "$PGBIN/initdb" -D "$d" --no-sync -U postgres --auth=trust -E UTF8 --locale=C "$@" >/dev/null
	as_pg mkdir -p "$WORK/store-$name"
	cat >>"$d/postgresql.conf" <<EOC
listen_addresses = ''
port = $port
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
wal_keep_size = '4GB'
archive_mode = on
archive_timeout = '1s'
archive_command = '$WV wal-push --store file://$WORK/store-$name %p'
EOC
	as_pg "$PGBIN/pg_ctl" -D "$d" -l "$WORK/$name.log" -w start >/dev/null
}
wait_archived() {
	local last
	last=$(psql "$1" "SELECT pg_walfile_name(pg_switch_wal())")
	for _ in $(seq 600); do
		[ "$(psql "$1" "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ] && return 0
		sleep 0.2
	done
	die "archiver on port $1 did not reach $last"
}

# --- 1. delta restore
if [[ $SECTIONS == *1* ]]; then
say "delta restore: pgbench -s $SCALE"
cluster delta 5561 --data-checksums
"$PGBIN/pgbench" -p 5561 -i -s "$SCALE" -q >/dev/null 2>&1
psql 5561 CHECKPOINT >/dev/null
wait_archived 5561
PGPORT=5561 as_pg "$WV" backup-push --store "file://$WORK/store-delta" --fast-checkpoint --log-level warn --json --wal-archive-timeout 60s >"$WORK/bk.json" ||
	die "backup-push failed: $(cat "$WORK/bk.json")"
NAME=$(jq -r .name "$WORK/bk.json")
STORED=$(jq -r .stored_size "$WORK/bk.json")
rows=$((SCALE * 1000))
psql 5561 "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $rows" >/dev/null
psql 5561 CHECKPOINT >/dev/null
wait_archived 5561
as_pg "$PGBIN/pg_ctl" -D "$WORK/d-delta" -m fast -w stop >/dev/null
as_pg cp -a "$WORK/d-delta" "$WORK/d-bytime"
restore_timed() { # restore_timed KEY DEST ARGS...
	local key=$1 dest=$2 t0 t1; shift 2
	sync
	t0=$(now)
	as_pg "$WV" restore "$dest" --store "file://$WORK/store-delta" --backup "$NAME" --log-level warn --json "$@" >"$WORK/$key.json"
	t1=$(now)
	printf -v "SECS_$key" '%s' "$(secs "$t0" "$t1")"
	printf -v "READ_$key" '%s' "$(jq -r .stored_bytes_read "$WORK/$key.json")"
}
as_pg mkdir -m 700 "$WORK/d-clean"
restore_timed clean "$WORK/d-clean"
restore_timed delta "$WORK/d-delta" --delta
restore_timed bytime "$WORK/d-bytime" --delta-by-time
KEPT=$(jq -r '.delta.kept_bytes' "$WORK/delta.json")
FETCHED=$(jq -r '.delta.fetched_bytes' "$WORK/delta.json")
CMP=$(jq -r '.delta.compare_seconds' "$WORK/delta.json")
PATCHED=$(jq -r '.delta.patched_files' "$WORK/delta.json")
# postgresql.auto.conf differs by the time its recovery settings were added.
SAME=$({ diff -rq --no-dereference -x postgresql.auto.conf "$WORK/d-clean" "$WORK/d-delta" &&
	diff <(grep -v '^# Added by walvault restore at' "$WORK/d-clean/postgresql.auto.conf") <(grep -v '^# Added by walvault restore at' "$WORK/d-delta/postgresql.auto.conf"); } >"$WORK/diff.txt" 2>&1 &&
	echo yes || echo "NO: $(head -n 3 "$WORK/diff.txt" | tr '\n' ';')")
RATIO=$(awk -v a="$SECS_delta" -v b="$SECS_clean" 'BEGIN { printf "%.1f", 100 * a / b }')
RATIO_T=$(awk -v a="$SECS_bytime" -v b="$SECS_clean" 'BEGIN { printf "%.1f", 100 * a / b }')

cat <<EOT

Issue 21 targets, one run ($(date -u +%F), $(nproc) cores), walvault $("$WV" version)

1. Delta restore, pgbench -s $SCALE, backup $(mib "$STORED") MiB stored, then UPDATE of aid <= $rows (1%), server stopped
   clean restore into an empty directory   ${SECS_clean} s, read $(mib "$READ_clean") MiB
   restore --delta                         ${SECS_delta} s (${RATIO}% of clean; target <= 25%: $(verdict "$RATIO" 25)), read $(mib "$READ_delta") MiB = $(pct "$READ_delta" "$STORED")% of stored (target <= 5%: $(verdict "$(pct "$READ_delta" "$STORED")" 5))
                                           kept $(mib "$KEPT") MiB, wrote $(mib "$FETCHED") MiB ($PATCHED files patched in place), compare ${CMP} s
                                           the directory equals the clean restore's (diff -r): $SAME
   restore --delta-by-time                 ${SECS_bytime} s (${RATIO_T}% of clean), read $(mib "$READ_bytime") MiB
EOT
fi

# --- 2. standby backups and the primary's TPS
if [[ $SECTIONS == *2* ]]; then
say "standby: pgbench -s $TPS_SCALE, $TPS_SECONDS s per case"
cluster prim 5562
"$PGBIN/pgbench" -p 5562 -i -s "$TPS_SCALE" -q >/dev/null 2>&1
wait_archived 5562
as_pg "$PGBIN/pg_basebackup" -D "$WORK/d-stby" -R -X stream -c fast -h "$WORK" -p 5562 -U postgres
as_pg sed -i "s/^port = 5562/port = 5563/" "$WORK/d-stby/postgresql.conf"
# Two hosts on one 2-core machine: the primary and its clients on CPU 0,
# the standby and every backup-push on CPU 1 (on one core for all, the
# backup's compression would take the primary's CPU whichever server it
# reads, which is not what a standby backup is for).
as_pg taskset -c 1 "$PGBIN/pg_ctl" -D "$WORK/d-stby" -l "$WORK/stby.log" -w start >/dev/null
taskset -a -p -c 0 "$(head -n 1 "$WORK/d-prim/postmaster.pid")" >/dev/null
for p in $(pgrep -P "$(head -n 1 "$WORK/d-prim/postmaster.pid")"); do taskset -p -c 0 "$p" >/dev/null; done
tps() { taskset -c 0 "$PGBIN/pgbench" -p 5562 -n -c 2 -j 2 -T "$TPS_SECONDS" 2>/dev/null | awk '/^tps/ { print int($3); exit }'; }
backups_loop() { # backups_loop PORT: back-to-back backups until WORK/stop exists
	local n=0
	while [ ! -e "$WORK/stop" ]; do
		PGPORT=$1 as_pg taskset -c 1 "$WV" backup-push --store "file://$WORK/store-prim" --fast-checkpoint --log-level error --pgdata "$2" >/dev/null 2>&1 && n=$((n + 1))
	done
	echo "$n" >"$WORK/loop.n"
}
TPS_BASE=$(tps)
rm -f "$WORK/stop"; backups_loop 5562 "$WORK/d-prim" & LOOP=$!
TPS_PRIM=$(tps); touch "$WORK/stop"; wait "$LOOP"; N_PRIM=$(cat "$WORK/loop.n")
rm -f "$WORK/stop"; backups_loop 5563 "$WORK/d-stby" & LOOP=$!
TPS_STBY=$(tps); touch "$WORK/stop"; wait "$LOOP"; N_STBY=$(cat "$WORK/loop.n")
COST_PRIM=$(awk -v a="$TPS_PRIM" -v b="$TPS_BASE" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
COST_STBY=$(awk -v a="$TPS_STBY" -v b="$TPS_BASE" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
STBY_FLAG=$(as_pg "$WV" backup-list --store "file://$WORK/store-prim" --json | jq '[.[] | select(.from_standby)] | length')

cat <<EOT

2. Primary's pgbench TPS (-c 2, ${TPS_SECONDS} s, -s $TPS_SCALE); primary and clients on CPU 0, standby and backup-push on CPU 1
   no backup                               $TPS_BASE
   backups of the primary, back to back    $TPS_PRIM ($N_PRIM backups; cost ${COST_PRIM}%)
   backups of the standby, back to back    $TPS_STBY ($N_STBY backups; cost ${COST_STBY}%; target <= 5%: $(verdict "$COST_STBY" 5)); from_standby backups listed: $STBY_FLAG
EOT
fi

# --- 3. rate limits
if [[ $SECTIONS == *3* ]]; then
[[ $SECTIONS == *2* ]] || die "section 3 uses section 2's clusters: SECTIONS=23 or 123"
say "rate limits: 20MiB/s"
LIMIT=$((20 << 20))
PGPORT=5562 as_pg "$WV" backup-push --store "file://$WORK/store-prim" --compression none --fast-checkpoint --log-level warn --json \
	--max-upload-rate 20MiB --pgdata "$WORK/d-prim" >"$WORK/rate.json"
RATE_BK=$(jq -r '.stored_size / .copy_seconds' "$WORK/rate.json")
# The agent: a backlog of segments written while archive_command did nothing.
as_pg "$PGBIN/pg_ctl" -D "$WORK/d-stby" -m fast -w stop >/dev/null
psql 5562 "ALTER SYSTEM SET archive_command = ''" >/dev/null
psql 5562 "SELECT pg_reload_conf()" >/dev/null
"$PGBIN/pgbench" -p 5562 -i -s 20 -q >/dev/null 2>&1
psql 5562 "SELECT pg_switch_wal()" >/dev/null
READY=$(ls "$WORK/d-prim/pg_wal/archive_status" | grep -c '\.ready$' || true)
as_pg mkdir -p "$WORK/store-agent"
as_pg "$WV" agent --pgdata "$WORK/d-prim" --store "file://$WORK/store-agent" --compression none --max-upload-rate 20MiB --log-level warn 2>"$WORK/agent.log" &
AGENT_PID=$!
sleep 0.5
AGENT_CHILD=$(pgrep -P "$AGENT_PID" || true) # runuser does not pass SIGTERM on: stop the agent itself
size() { du -sb "$WORK/store-agent" | awk '{ print $1 }'; }
sleep 3
s0=$(size); t0=$(now); sleep 10; s1=$(size); t1=$(now)
RATE_AG=$(awk -v a="$s0" -v b="$s1" -v t="$(secs "$t0" "$t1")" 'BEGIN { printf "%.0f", (b - a) / t }')
kill $AGENT_CHILD "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=

cat <<EOT

3. --max-upload-rate 20MiB (20971520 B/s)
   backup-push, compression none            $(awk -v r="$RATE_BK" 'BEGIN { printf "%.0f B/s = %.1f%% of the limit", r, 100 * r / 20971520 }')
   agent, $READY ready segments, 10 s window  $RATE_AG B/s = $(pct "$RATE_AG" "$LIMIT")% of the limit
EOT
fi
