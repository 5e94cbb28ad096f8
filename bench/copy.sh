#!/usr/bin/env bash
# walvault copy and the second store (copy-store) kept in step by the
# agent, in one run. See bench/README.md for what is measured.
#
#   bash bench/copy.sh [path/to/walvault]     (default: bin/walvault; walvault-wal beside it)
#   SCALE=60 DURATION=60 CONCURRENCY=8 bash bench/copy.sh
#
# Needs root (PostgreSQL and walvault run as the postgres user), PostgreSQL
# 15's server binaries, /usr/bin/time and versitygw (make test-deps puts it
# in .cache/bin; WALVAULT_TEST_CACHE or ./.cache).
#
# 1. An archive to copy: a cluster archiving to a file store (lz4, age
#    encryption, signed) through walvault wal-push; pgbench -i -s SCALE, a
#    full backup, pgbench -T 20, an incremental backup, a WAL switch.
# 2. walvault copy of the whole archive, file -> S3 (versitygw, plain
#    HTTP on 127.0.0.1) and then S3 -> S3 (that copy into another bucket),
#    each into an empty destination, CONCURRENCY objects at once: MiB/s and
#    objects/s of stored bytes (wall time of the process, its start
#    included), CPU seconds and peak RSS (/usr/bin/time). Each destination
#    is then checked: every object of the source is in it with its size,
#    and walvault verify of the S3 -> S3 copy passes.
# 3. The second store's lag: the agent archiving a WAL-heavy bulk load (the
#    sustained load of bench/agent.sh: pgbench, 2 clients, 10,000 rows of
#    256 bytes a transaction, synchronous_commit off) for DURATION seconds
#    into a file store, with an S3 copy-store; the agent's
#    walvault_agent_copy_lag_seconds and _backlog_files sampled every 0.5 s
#    from its /metrics, then the time the copy-store takes to catch up once
#    the load stops, and the agent's peak RSS.
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
CLIENT=$(dirname "$BIN")/walvault-wal
SCALE=${SCALE:-30}
DURATION=${DURATION:-30}
CONCURRENCY=${CONCURRENCY:-4}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
CACHE=${WALVAULT_TEST_CACHE:-$(pwd)/.cache}
VGW=$CACHE/bin/versitygw

die() { echo "copy-bench: $*" >&2; exit 2; }
say() { echo "copy-bench: $* ($(date -u +%H:%M:%S))" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and walvault run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$CLIENT" ] || die "no walvault-wal beside $BIN (run make build)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
[ -x /usr/bin/time ] || die "no /usr/bin/time (apt-get install time)"
[ -x "$VGW" ] || die "no versitygw at $VGW (make test-deps, or set WALVAULT_TEST_CACHE)"
command -v curl >/dev/null || die "no curl (apt-get install curl)"

WORK=$(mktemp -d /tmp/wvcopy-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
AGENT_PID=
VGW_PID=
cleanup() {
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null || true
	for d in "$WORK"/data "$WORK"/load; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	[ -n "${KEEP:-}" ] && echo "copy-bench: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$BIN" "$WORK/walvault"
# The front (make build) runs everything but WAL through walvault-full beside it.
[ -x "$(dirname "$BIN")/walvault-full" ] && cp "$(dirname "$BIN")/walvault-full" "$WORK/"
cp "$CLIENT" "$WORK/walvault-wal"
chmod 755 "$WORK"/walvault*
WV=$WORK/walvault
keys=$(cd "$WORK" && as_pg "$WV" keygen --signing-key "$WORK/sign.key" "$WORK/id.key" 2>/dev/null)
RECIPIENT=$(sed -n 1p <<<"$keys")
VERIFY=$(sed -n 2p <<<"$keys")

# --- S3: versitygw, its POSIX backend under WORK, plain HTTP on 127.0.0.1
VGW_PORT=$((20000 + RANDOM % 20000))
mkdir -p "$WORK/vgw/bench"
chown -R postgres: "$WORK/vgw"
ROOT_ACCESS_KEY=bench ROOT_SECRET_KEY=bench-secret-key "$VGW" --port "127.0.0.1:$VGW_PORT" --quiet posix "$WORK/vgw" >"$WORK/vgw.log" 2>&1 &
VGW_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$VGW_PORT") 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
S3="--s3-endpoint http://127.0.0.1:$VGW_PORT --s3-path-style"
SRC=file://$WORK/src
as_pg mkdir -p "$WORK/src"

export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PGBIN/psql" -XAtq -p "$1" -c "$2"; }
pgconf() { # pgconf DATADIR PORT ARCHIVE_COMMAND
	cat >>"$1/postgresql.conf" <<EOC
listen_addresses = ''
port = $2
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
archive_mode = on
archive_command = '$3'
EOC
}
shopt -s nullglob
nready() { local r=("$1"/pg_wal/archive_status/*.ready); echo "${#r[@]}"; }
wait_archived() { # wait_archived DATADIR: no .ready left (240 s at most)
	for _ in $(seq 2400); do [ "$(nready "$1")" = 0 ] && return 0; sleep 0.1; done
	die "$1: WAL not archived in 240 s"
}

# --- 1. the archive to copy
say "making the archive: pgbench -s $SCALE, a full and an incremental backup, their WAL"
DATA=$WORK/data
as_pg "$PGBIN/initdb" -D "$DATA" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$DATA" 5470 "$WV wal-push --store $SRC --signing-key $WORK/sign.key --recipient $RECIPIENT --log-level warn %p"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5470 -i -s "$SCALE" -q >/dev/null 2>&1
BK="--store $SRC --signing-key $WORK/sign.key --recipient $RECIPIENT --log-level warn"
# shellcheck disable=SC2086
(cd "$WORK" && as_pg env PGHOST="$WORK" PGPORT=5470 PGUSER=postgres "$WV" backup-push $BK --fast-checkpoint >/dev/null) || die "backup-push failed"
"$PGBIN/pgbench" -p 5470 -n -c 2 -j 2 -T 20 >/dev/null 2>&1
# shellcheck disable=SC2086
(cd "$WORK" && as_pg env PGHOST="$WORK" PGPORT=5470 PGUSER=postgres "$WV" backup-push $BK --fast-checkpoint --incremental >/dev/null 2>"$WORK/incr.err") ||
	say "no incremental backup ($(tail -n 1 "$WORK/incr.err")): the archive holds one backup"
psql 5470 "SELECT pg_switch_wal()" >/dev/null
wait_archived "$DATA"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
SRC_OBJECTS=$(find "$WORK/src" -type f | wc -l)
say "the archive: $SRC_OBJECTS objects"

# --- 2. walvault copy, file -> S3 and S3 -> S3
# copyrun KEY FROM TO: one copy into an empty destination
copyrun() {
	local key=$1 from=$2 to=$3 t0 t1
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2086
	as_pg env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
		/usr/bin/time -o "$WORK/time-$key" -f '%e %U %S %M' "$WV" copy --store "$from" --to "$to" $S3 \
		--identity-file "$WORK/id.key" --verify-key "$VERIFY" --upload-concurrency "$CONCURRENCY" --log-level warn \
		>"$WORK/copy-$key.out" 2>&1 || die "$key: walvault copy failed: $(tail -n 5 "$WORK/copy-$key.out")"
	t1=$EPOCHREALTIME
	local n
	n=$(sed -n 's/^copied \([0-9]*\) object.*/\1/p' "$WORK/copy-$key.out")
	[ "$n" = "$SRC_OBJECTS" ] || say "$key: copied ${n:-?} objects, the source holds $SRC_OBJECTS (see below)"
	read -r _ user sys rss <"$WORK/time-$key"
	# The object bytes: versitygw keeps each object's body as a file (the
	# file store adds its metadata to its files), the first copy's.
	[ -n "${SRC_BYTES:-}" ] || SRC_BYTES=$(find "$WORK/vgw/bench/copy1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
	awk -v k="$key" -v a="$t0" -v b="$t1" -v n="$SRC_OBJECTS" -v by="$SRC_BYTES" -v u="$user" -v s="$sys" -v r="$rss" \
		'BEGIN { w = b - a; printf "%s %.2f %.1f %.1f %.1f %.1f %d %.1f\n", k, w, by / 1048576 / w, n / w, u + s, (u + s) / w * 100, n, r / 1024 }' >>"$WORK/copies"
}
say "copy file -> S3"
copyrun file-s3 "$SRC" s3://bench/copy1
say "copy S3 -> S3"
copyrun s3-s3 s3://bench/copy1 s3://bench/copy2
# Every object of the source in the first copy, and the second copy the
# first byte for byte (versitygw keeps an object's body as a file under
# its bucket's directory, its metadata in extended attributes).
(cd "$WORK/src" && find . -type f -printf '%P\n' | sort) >"$WORK/src.list"
(cd "$WORK/vgw/bench/copy1" && find . -type f -printf '%P\n' | sort) >"$WORK/copy1.list"
missing=$(comm -23 "$WORK/src.list" "$WORK/copy1.list" | wc -l)
[ "$missing" = 0 ] || die "the file -> S3 copy lacks $missing objects of the source: $(comm -23 "$WORK/src.list" "$WORK/copy1.list" | head -n 3)"
diff -r "$WORK/vgw/bench/copy1" "$WORK/vgw/bench/copy2" >/dev/null || die "the S3 -> S3 copy differs from its source: $(diff -rq "$WORK/vgw/bench/copy1" "$WORK/vgw/bench/copy2" | head -n 3)"
# shellcheck disable=SC2086
as_pg env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
	"$WV" verify --store s3://bench/copy2 $S3 --verify-key "$VERIFY" --identity-file "$WORK/id.key" --log-level warn >"$WORK/verify.out" 2>&1 ||
	die "verify of the S3 -> S3 copy failed: $(tail -n 5 "$WORK/verify.out")"

# --- 3. the copy-store's lag under the agent's sustained load
say "the copy-store's lag: ${DURATION}s of bulk load through the agent"
LOAD=$WORK/load
cat >"$WORK/walvault.yaml" <<EOC
store: file://$WORK/lag
signing-key: $WORK/sign.key
log-level: warn
copy-store:
  - store: s3://bench/lag
    s3-endpoint: http://127.0.0.1:$VGW_PORT
    s3-path-style: true
EOC
chmod 644 "$WORK/walvault.yaml"
as_pg mkdir -p "$WORK/lag"
as_pg "$PGBIN/initdb" -D "$LOAD" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$LOAD" 5471 "$WORK/walvault-wal push %p"
echo "synchronous_commit = off" >>"$LOAD/postgresql.conf"
METRICS_PORT=$((20000 + RANDOM % 20000))
(cd "$LOAD" && exec runuser -u postgres -- env WALVAULT_CONFIG="$WORK/walvault.yaml" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key \
	AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true "$WV" agent --pgdata "$LOAD" --metrics-listen "127.0.0.1:$METRICS_PORT" >>"$WORK/agent.log" 2>&1) &
AGENT_PID=$!
for _ in $(seq 500); do
	[ -S "$LOAD/pg_wal/.walvault/agent.sock" ] && break
	kill -0 "$AGENT_PID" 2>/dev/null || die "walvault agent did not start: $(tail -n 3 "$WORK/agent.log")"
	sleep 0.02
done
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -l "$WORK/load.log" -w start >/dev/null
psql 5471 "CREATE TABLE bulk (id int, pad text)" >/dev/null
echo "INSERT INTO bulk SELECT i, repeat('x', 250) FROM generate_series(1, 10000) i;" >"$WORK/bulk.sql"
chmod 644 "$WORK/bulk.sql"
# metric NAME: its first sample on the agent's /metrics (awk reads to the
# end: curl fails on a pipe closed early)
metric() { { curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || true; } | awk -v m="$1" '!done && (index($1, m "{") == 1 || $1 == m) { print $2; done = 1 }'; }
lsn0=$(psql 5471 "SELECT pg_current_wal_lsn()")
"$PGBIN/pgbench" -p 5471 -n -c 2 -j 2 -T "$DURATION" -f "$WORK/bulk.sql" >"$WORK/pgbench.out" 2>&1 &
PGB=$!
: >"$WORK/lag.samples"
while kill -0 "$PGB" 2>/dev/null; do
	echo "$(metric walvault_agent_copy_lag_seconds) $(metric walvault_agent_copy_backlog_files) $(nready "$LOAD")" >>"$WORK/lag.samples"
	sleep 0.5
done
wait "$PGB" || die "pgbench failed: $(tail -n 3 "$WORK/pgbench.out")"
lsn1=$(psql 5471 "SELECT pg_current_wal_lsn()")
t0=$EPOCHREALTIME
caught=
for _ in $(seq 2400); do
	if [ "$(nready "$LOAD")" = 0 ] && [ "$(metric walvault_agent_copy_backlog_files)" = 0 ]; then caught=1; break; fi
	sleep 0.1
done
t1=$EPOCHREALTIME
[ -n "$caught" ] || die "the copy-store did not catch up in 240 s after the load: $(tail -n 3 "$WORK/agent.log")"
AGENT_RSS=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' /proc/"$(pgrep -P "$AGENT_PID" | head -n 1)"/status 2>/dev/null || echo -)
COPIED=$(metric walvault_agent_copy_files_total)
ERRORS=$(metric walvault_agent_copy_errors_total)
WAL_MB=$(psql 5471 "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / 1048576 / $DURATION, 1)")
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -m fast -w stop >/dev/null
kill "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=
n_primary=$(find "$WORK/lag/wal" -type f | wc -l)
n_copy=$(find "$WORK/vgw/bench/lag/wal" -type f | wc -l)
[ "$n_copy" -ge "$n_primary" ] || die "the copy-store holds $n_copy WAL files, the store $n_primary"

# --- the tables
echo
echo "$("$WV" version 2>/dev/null | head -n 1); lz4 + age; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "walvault copy of $SRC_OBJECTS objects, $((SRC_BYTES / 1048576)) MiB stored (pgbench -s $SCALE, backups and WAL), --upload-concurrency $CONCURRENCY"
printf '%-14s %8s %8s %10s %10s %9s %10s\n' "" "wall s" "MiB/s" "objects/s" "CPU s" "CPU %" "RSS MiB"
while read -r k w mib obj cpu pct _ rss; do
	printf '%-14s %8s %8s %10s %10s %9s %10s\n' "$k" "$w" "$mib" "$obj" "$cpu" "$pct" "$rss"
done <"$WORK/copies"
echo
echo "Second store (S3 copy-store) under ${DURATION}s of sustained bulk load through the agent (store: file)"
awk -v mb="$WAL_MB" -v c="$COPIED" -v e="$ERRORS" -v cu="$t0" -v cu1="$t1" -v rss="$AGENT_RSS" '
	$1 != "" { n++; s += $1; if ($1 > p) p = $1; if ($2 > b) b = $2; if ($3 > r) r = $3 }
	END {
		printf "WAL %.1f MB/s; copy-store lag: mean %.1f s, peak %.1f s; copy backlog peak %d files; .ready peak %d\n", mb, n ? s / n : 0, p, b, r
		printf "caught up %.1f s after the load stopped; %d files copied, %d failed attempts; agent peak RSS %s MiB\n", cu1 - cu, c, e, rss
	}' "$WORK/lag.samples"
