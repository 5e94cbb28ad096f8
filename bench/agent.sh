#!/usr/bin/env bash
# The archiving agent (walvault agent + walvault-wal) against walvault
# wal-push and pgBackRest 2.45, through PostgreSQL's own archiver, in one
# run. See bench/README.md for what is measured.
#
#   bash bench/agent.sh [path/to/walvault]     (default: bin/walvault; walvault-wal beside it)
#   DURATION=60 SCALE=40 CALLS=101 STORES=file bash bench/agent.sh
#
# Needs root (it installs Debian's pgbackrest when missing and runs
# PostgreSQL, walvault and pgBackRest as the postgres user), PostgreSQL 15's
# server binaries, and for the S3 rows versitygw (make test-deps puts it in
# .cache/bin; WALVAULT_TEST_CACHE or ./.cache).
#
# 1. Drain: a cluster whose archiver was off while pgbench -i -s SCALE wrote
#    >= 32 segments; each archive_command in turn gets the same backlog of
#    .ready segments (PostgreSQL's .done renamed back to .ready, a new empty
#    store) and the clock runs from the reload that sets archive_command to
#    the moment no .ready is left: segments/s. Local store and S3
#    (versitygw, TLS), lz4, without and with encryption (age; pgBackRest
#    aes-256-cbc).
# 2. Sustained: a WAL-heavy bulk load (pgbench, 2 clients, a transaction
#    inserting 10,000 rows of 256 bytes, synchronous_commit off) for
#    DURATION seconds per archive_command, /bin/true first: WAL MB/s the
#    load achieved and the .ready backlog sampled every 0.5 s.
# 3. Per call: walvault-wal push (or walvault wal-push) of a segment already
#    archived, process start included: median wall time of CALLS calls and
#    peak RSS.
# 4. Recovery: a copy of the cluster as initdb left it replays all of the
#    archived WAL (restore_command) until it promotes, through walvault
#    wal-fetch, walvault-wal fetch + agent, and pgBackRest archive-get.
# Takes about 3 + 4 x DURATION/60 minutes with the defaults.
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
CLIENT=$(dirname "$BIN")/walvault-wal
DURATION=${DURATION:-30}
SCALE=${SCALE:-40}
CALLS=${CALLS:-51}
STORES=${STORES:-file s3}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
CACHE=${WALVAULT_TEST_CACHE:-$(pwd)/.cache}

die() { echo "agent-bench: $*" >&2; exit 2; }
say() { echo "agent-bench: $* ($(date -u +%H:%M:%S))" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
if ! command -v pgbackrest >/dev/null || [ ! -x /usr/bin/time ]; then
	say "installing pgbackrest and time from Debian"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest time >/dev/null
fi
PBR=$(command -v pgbackrest)
PBR_VERSION=$("$PBR" version)
HAVE_AGENT=0
if [ -x "$CLIENT" ] && "$BIN" agent --help >/dev/null 2>&1; then
	HAVE_AGENT=1
else
	echo "agent-bench: no agent to measure: $CLIENT missing or 'walvault agent' unknown; its rows show 'n/a'" >&2
fi
VGW=$CACHE/bin/versitygw
case " $STORES " in *" s3 "*) [ -x "$VGW" ] || { echo "agent-bench: no versitygw at $VGW (make test-deps): S3 rows skipped" >&2; STORES=${STORES//s3/}; } ;; esac

T_START=$(date +%s)
WORK=$(mktemp -d /tmp/wvagent-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
AGENT_PID=
VGW_PID=
cleanup() {
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null || true
	for d in "$WORK"/data "$WORK"/load "$WORK"/rec; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$BIN" "$WORK/walvault"
# The front (make build) runs everything but WAL through walvault-full beside it.
[ -x "$(dirname "$BIN")/walvault-full" ] && cp "$(dirname "$BIN")/walvault-full" "$WORK/"
WV=$WORK/walvault
WVC=
if [ "$HAVE_AGENT" = 1 ]; then cp "$CLIENT" "$WORK/walvault-wal"; WVC=$WORK/walvault-wal; fi
chmod 755 "$WORK"/walvault*
keys=$(cd "$WORK" && as_pg "$WV" keygen --signing-key "$WORK/sign.key" "$WORK/id.key" 2>/dev/null)
RECIPIENT=$(sed -n 1p <<<"$keys")
VERIFY=$(sed -n 2p <<<"$keys")
PBR_PASS=bench-cipher-pass-0123456789

export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PGBIN/psql" -XAtq -p "$1" -c "$2"; }
pgconf() { # pgconf DATADIR PORT
	cat >>"$1/postgresql.conf" <<EOC
listen_addresses = ''
port = $2
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
archive_mode = on
archive_command = ''
EOC
}
shopt -s nullglob
# tick SECONDS: a sleep without a fork (a read that times out on a fifo)
mkfifo "$WORK/tick"
exec 9<>"$WORK/tick"
tick() { read -r -t "$1" -u 9 _ || true; }
nready() { local r=("$1"/pg_wal/archive_status/*.ready); echo "${#r[@]}"; }

# --- S3: versitygw with TLS (pgBackRest speaks only https to S3)
if [[ " $STORES " == *" s3 "* ]]; then
	VGW_PORT=$((20000 + RANDOM % 20000))
	mkdir -p "$WORK/vgw/bench"
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1
	chmod 644 "$WORK/tls.crt" "$WORK/tls.key"
	ROOT_ACCESS_KEY=bench ROOT_SECRET_KEY=bench-secret-key "$VGW" --port "127.0.0.1:$VGW_PORT" \
		--cert "$WORK/tls.crt" --key "$WORK/tls.key" --quiet posix "$WORK/vgw" >"$WORK/vgw.log" 2>&1 &
	VGW_PID=$!
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$VGW_PORT") 2>/dev/null && break; sleep 0.1; done
	# Inherited by PostgreSQL, so by every archive_command.
	export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
	# (the AWS SDK takes a private CA from AWS_CA_BUNDLE, not SSL_CERT_FILE)
	export AWS_EC2_METADATA_DISABLED=true AWS_CA_BUNDLE=$WORK/tls.crt
fi

# store_url STORE NAME, wv_opts STORE NAME ENC: walvault's settings for a store
store_url() { if [ "$1" = s3 ]; then echo "s3://bench/$2"; else echo "file://$WORK/stores/$2"; fi; }
wv_opts() {
	local o="--store $(store_url "$1" "$2") --signing-key $WORK/sign.key --log-level warn"
	[ "$1" = s3 ] && o="$o --s3-endpoint https://127.0.0.1:$VGW_PORT --s3-path-style"
	[ "$3" = enc ] && o="$o --recipient $RECIPIENT"
	echo "$o"
}
# pbr_conf STORE NAME ENC ASYNC PGDATA PORT: a pgBackRest configuration file
pbr_conf() {
	local f=$WORK/pbr-$2.conf
	{
		echo "[global]"
		if [ "$1" = s3 ]; then
			echo "repo1-type=s3"; echo "repo1-path=/$2"; echo "repo1-s3-bucket=bench"
			echo "repo1-s3-endpoint=127.0.0.1"; echo "repo1-storage-port=$VGW_PORT"; echo "repo1-storage-verify-tls=n"
			echo "repo1-s3-key=bench"; echo "repo1-s3-key-secret=bench-secret-key"; echo "repo1-s3-region=us-east-1"
			echo "repo1-s3-uri-style=path"
		else
			echo "repo1-path=$WORK/stores/$2"
		fi
		[ "$3" = enc ] && { echo "repo1-cipher-type=aes-256-cbc"; echo "repo1-cipher-pass=$PBR_PASS"; }
		echo "compress-type=lz4"; echo "process-max=2"; echo "archive-async=$4"
		echo "log-level-console=warn"; echo "log-level-file=off"
		echo "log-path=$WORK/pbr-log"; echo "lock-path=$WORK/pbr-lock-$2"; echo "spool-path=$WORK/pbr-spool-$2"
		echo "[bench]"; echo "pg1-path=$5"; echo "pg1-port=$6"; echo "pg1-socket-path=$WORK"
	} >"$f"
	chmod 644 "$f"
	as_pg mkdir -p "$WORK/pbr-log" "$WORK/pbr-lock-$2" "$WORK/pbr-spool-$2"
	[ "$1" = s3 ] || as_pg mkdir -p "$WORK/stores/$2"
	echo "$f"
}
start_agent() { # start_agent PGDATA OPTS...
	local d=$1; shift
	# shellcheck disable=SC2068
	(cd "$d" && exec runuser -u postgres -- "$WV" agent --pgdata "$d" $@ >>"$WORK/agent.log" 2>&1) &
	AGENT_PID=$!
	# Up once its socket answers: the agent listens after its start-up checks.
	for _ in $(seq 500); do
		[ -S "$d/pg_wal/.walvault/agent.sock" ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || break
		tick 0.02
	done
	die "walvault agent did not start: $(tail -n 3 "$WORK/agent.log")"
}
stop_agent() { [ -n "$AGENT_PID" ] && { kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; }; AGENT_PID=; }

# --- the data: WAL of pgbench -i, never archived, and the cluster before it
say "making a pgbench -s $SCALE cluster with its WAL not archived"
DATA=$WORK/data
as_pg mkdir -p "$WORK/stores"
as_pg "$PGBIN/initdb" -D "$DATA" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$DATA" 5450
echo "wal_keep_size = '8GB'" >>"$DATA/postgresql.conf"
as_pg cp -a "$DATA" "$WORK/base" # what recovery starts from: the cluster before any WAL
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5450 -i -s "$SCALE" -q >/dev/null 2>&1
psql 5450 "SELECT pg_switch_wal()" >/dev/null
# pgbench -i -s 40 writes about 32 segments; a rewrite of the table more.
while [ "$(nready "$DATA")" -lt 32 ]; do
	psql 5450 "VACUUM FULL pgbench_accounts" >/dev/null
	psql 5450 "SELECT pg_switch_wal()" >/dev/null
done
psql 5450 "CHECKPOINT" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
BACKLOG=$(nready "$DATA")
LAST_SEG=$(cd "$DATA/pg_wal/archive_status" && ls | sed -n 's/\.ready$//p' | grep -E '^[0-9A-F]{24}$' | sort | tail -n 1)

# drain KEY ARCHIVE_COMMAND [AGENT_OPTS [HEAD_START]]: the backlog through
# one archive_command. With HEAD_START (seconds) the agent runs that long
# before the clock starts, as a resident agent does while PostgreSQL's
# archiver is behind: it has uploaded ahead and the archiver only asks.
drain() {
	local key=$1 cmd=$2 agent_opts=${3:-} head=${4:-} f n t0 t1 failed
	for f in "$DATA"/pg_wal/archive_status/*.done; do mv "$f" "${f%.done}.ready"; done
	rm -rf "$DATA/pg_wal/.walvault"
	n=$(nready "$DATA")
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
	[ -n "${PBR_CONF:-}" ] && as_pg "$PBR" --config="$PBR_CONF" --stanza=bench stanza-create >/dev/null
	psql 5450 "ALTER SYSTEM SET archive_command = '$cmd'" >/dev/null
	# Cold, the clock includes the agent's start: it uploads from its first
	# second, as pgBackRest's async process does once the archiver starts it.
	if [ -n "$head" ]; then
		start_agent "$DATA" $agent_opts
		sleep "$head"
		t0=$EPOCHREALTIME
	else
		t0=$EPOCHREALTIME
		[ -n "$agent_opts" ] && start_agent "$DATA" $agent_opts
	fi
	psql 5450 "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 12000); do
		[ "$(nready "$DATA")" = 0 ] && break
		tick 0.02
	done
	t1=$EPOCHREALTIME
	[ "$(nready "$DATA")" = 0 ] || die "$key: backlog not drained in 240 s: $(psql 5450 "SELECT * FROM pg_stat_archiver")"
	failed=$(psql 5450 "SELECT failed_count FROM pg_stat_archiver")
	psql 5450 "ALTER SYSTEM RESET archive_command" >/dev/null
	psql 5450 "SELECT pg_reload_conf()" >/dev/null
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
	stop_agent
	awk -v k="$key" -v n="$n" -v a="$t0" -v b="$t1" -v f="$failed" 'BEGIN { printf "%s %d %.3f %.1f %d\n", k, n, b - a, n / (b - a), f }' >>"$WORK/drain"
}

for store in $STORES; do
	for enc in plain enc; do
		say "drain of $BACKLOG segments, $store store, $enc"
		if [ "$HAVE_AGENT" = 1 ]; then
			PBR_CONF='' drain "$store-$enc-agent" "$WVC push %p" "$(wv_opts "$store" "agent-$enc" "$enc")"
			PBR_CONF='' drain "$store-$enc-agentwarm" "$WVC push %p" "$(wv_opts "$store" "agentwarm-$enc" "$enc")" 1
		fi
		PBR_CONF='' drain "$store-$enc-walpush" "$WV wal-push $(wv_opts "$store" "walpush-$enc" "$enc") %p"
		PBR_CONF=$(pbr_conf "$store" "pbr-async-$enc" "$enc" y "$DATA" 5450) drain "$store-$enc-pbrasync" "$PBR --config=$WORK/pbr-pbr-async-$enc.conf --stanza=bench archive-push %p"
		PBR_CONF=$(pbr_conf "$store" "pbr-sync-$enc" "$enc" n "$DATA" 5450) drain "$store-$enc-pbrsync" "$PBR --config=$WORK/pbr-pbr-sync-$enc.conf --stanza=bench archive-push %p"
	done
done
# Every walvault store holds every segment.
for s in "$WORK"/stores/walpush-* "$WORK"/stores/agent* "$WORK"/vgw/bench/walpush-* "$WORK"/vgw/bench/agent*; do
	n=$(find "$s/wal" -type f -name '0*' | wc -l)
	[ "$n" -ge "$BACKLOG" ] || die "$s holds $n segments, want $BACKLOG"
done

# --- per call, a segment already archived (the last of the backlog)
say "per call: $CALLS pushes of an archived segment"
percall() { # percall KEY CMD...: median wall ms of CALLS runs (cwd: the data directory), then peak RSS
	local key=$1
	shift
	as_pg bash -c 'cd "$1"; shift; n=$1; shift
		for i in $(seq "$n"); do t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || exit 1; t1=$EPOCHREALTIME; echo "$t0 $t1"; done' \
		_ "$DATA" "$CALLS" "$@" | awk '{ print ($2 - $1) * 1000 }' | sort -g |
		awk -v k="$key" '{ v[NR] = $1 } END { printf "%s %.2f ", k, v[int((NR + 1) / 2)] }' >>"$WORK/percall" || die "$key: a call failed"
	# shellcheck disable=SC2016
	as_pg bash -c 'cd "$1"; shift; for i in 1 2 3 4 5; do /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; done' _ "$DATA" "$@" |
		sort -g | sed -n 3p | awk '{ printf "%.1f\n", $1 / 1024 }' >>"$WORK/percall"
}
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
# What starting any process costs on this machine: the floor of every row.
percall true /bin/true
if [ "$HAVE_AGENT" = 1 ]; then
	start_agent "$DATA" $(wv_opts file agent-plain plain)
	percall agent-push "$WVC" push "pg_wal/$LAST_SEG"
	stop_agent
fi
# shellcheck disable=SC2046
percall walpush-again "$WV" wal-push $(wv_opts file walpush-plain plain) "pg_wal/$LAST_SEG"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

# --- recovery: the cluster before any WAL replays all of it
# recover KEY RESTORE_COMMAND [AGENT_OPTS]
recover() {
	local key=$1 cmd=$2 agent_opts=${3:-} t0 t1 rec=$WORK/rec
	rm -rf "$rec"
	as_pg cp -a "$WORK/base" "$rec"
	as_pg rm -f "$rec"/pg_wal/0*
	cat >>"$rec/postgresql.conf" <<EOC
port = 5460
archive_mode = off
restore_command = '$cmd'
EOC
	as_pg touch "$rec/recovery.signal"
	[ -n "$agent_opts" ] && start_agent "$rec" $agent_opts
	t0=$EPOCHREALTIME
	as_pg "$PGBIN/pg_ctl" -D "$rec" -l "$WORK/rec-$key.log" start >/dev/null || die "$key: the recovering server did not start: $(tail -n 5 "$WORK/rec-$key.log")"
	for _ in $(seq 6000); do
		[ "$(psql 5460 "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
		tick 0.02
	done
	t1=$EPOCHREALTIME
	[ "$(psql 5460 "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] || die "$key: recovery did not end: $(tail -n 5 "$WORK/rec-$key.log")"
	[ "$(psql 5460 "SELECT count(*) FROM pgbench_accounts")" = $((SCALE * 100000)) ] || die "$key: recovered cluster lacks rows"
	as_pg "$PGBIN/pg_ctl" -D "$rec" -m immediate -w stop >/dev/null
	stop_agent
	awk -v k="$key" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s %.3f\n", k, b - a }' >>"$WORK/recover"
}
say "recovery: replaying $BACKLOG segments"
# From the first of STORES, the stores the drains filled.
REC_STORE=$(echo $STORES | cut -d' ' -f1)
RD="--store $(store_url "$REC_STORE" walpush-plain) --verify-key $VERIFY --log-level warn"
[ "$REC_STORE" = s3 ] && RD="$RD --s3-endpoint https://127.0.0.1:$VGW_PORT --s3-path-style"
recover walfetch "$WV wal-fetch $RD %f %p"
if [ "$HAVE_AGENT" = 1 ]; then
	recover agent "$WVC fetch %f %p" "$(wv_opts "$REC_STORE" agent-plain plain) --verify-key $VERIFY"
fi
pbr_conf "$REC_STORE" pbr-async-plain plain y "$WORK/rec" 5460 >/dev/null
recover pbr "$PBR --config=$WORK/pbr-pbr-async-plain.conf --stanza=bench archive-get %f \"%p\""

# --- sustained: a bulk load against each archive_command
LOAD=$WORK/load
as_pg "$PGBIN/initdb" -D "$LOAD" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$LOAD" 5451
echo "synchronous_commit = off" >>"$LOAD/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -l "$WORK/load.log" -w start >/dev/null
psql 5451 "CREATE TABLE bulk (id int, pad text)" >/dev/null
echo "INSERT INTO bulk SELECT i, repeat('x', 250) FROM generate_series(1, 10000) i;" >"$WORK/bulk.sql"
chmod 644 "$WORK/bulk.sql"
# sustain KEY ARCHIVE_COMMAND [AGENT_OPTS]
sustain() {
	local key=$1 cmd=$2 agent_opts=${3:-} lsn0 lsn1 peak=0 n samples=0 over=0 rss=-
	psql 5451 "TRUNCATE bulk" >/dev/null
	psql 5451 "ALTER SYSTEM SET archive_command = '/bin/true'" >/dev/null
	psql 5451 "SELECT pg_reload_conf()" >/dev/null
	psql 5451 "CHECKPOINT" >/dev/null
	for _ in $(seq 300); do [ "$(nready "$LOAD")" = 0 ] && break; sleep 0.1; done
	[ -n "$agent_opts" ] && start_agent "$LOAD" $agent_opts
	[ -n "${PBR_CONF:-}" ] && as_pg "$PBR" --config="$PBR_CONF" --stanza=bench stanza-create >/dev/null
	psql 5451 "ALTER SYSTEM SET archive_command = '$cmd'" >/dev/null
	psql 5451 "SELECT pg_reload_conf()" >/dev/null
	lsn0=$(psql 5451 "SELECT pg_current_wal_lsn()")
	"$PGBIN/pgbench" -p 5451 -n -c 2 -j 2 -T "$DURATION" -f "$WORK/bulk.sql" >"$WORK/pgbench-$key.out" 2>&1 &
	local pgb=$!
	while kill -0 "$pgb" 2>/dev/null; do
		n=$(nready "$LOAD")
		samples=$((samples + 1))
		[ "$n" -gt "$peak" ] && peak=$n
		[ "$n" -gt 2 ] && over=$((over + 1))
		tick 0.5
	done
	wait "$pgb" || die "$key: pgbench failed: $(tail -n 3 "$WORK/pgbench-$key.out")"
	lsn1=$(psql 5451 "SELECT pg_current_wal_lsn()")
	if [ -n "$AGENT_PID" ]; then
		rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' /proc/"$(pgrep -P "$AGENT_PID" | head -n 1)"/status 2>/dev/null || echo -)
	fi
	for _ in $(seq 1200); do [ "$(nready "$LOAD")" = 0 ] && break; sleep 0.1; done
	stop_agent
	local mb
	mb=$(psql 5451 "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / 1048576 / $DURATION, 1)")
	echo "$key $mb $peak $over $samples $rss" >>"$WORK/sustain"
}
say "sustained: ${DURATION}s of bulk load per archive_command"
# The first run on a new cluster is slower (files created, caches cold):
# one unmeasured run first, and /bin/true both before and after the
# archivers, its mean the baseline.
DURATION_SET=$DURATION
DURATION=10 sustain warmup /bin/true
DURATION=$DURATION_SET
sustain true /bin/true
for store in $STORES; do
	if [ "$HAVE_AGENT" = 1 ]; then
		sustain "$store-agent" "$WVC push %p" "$(wv_opts "$store" "load-agent-$store" plain)"
	fi
	sustain "$store-walpush" "$WV wal-push $(wv_opts "$store" "load-walpush-$store" plain) %p"
	PBR_CONF=$(pbr_conf "$store" "load-pbr-$store" plain y "$LOAD" 5451) sustain "$store-pbrasync" "$PBR --config=$WORK/pbr-load-pbr-$store.conf --stanza=bench archive-push %p"
done
sustain true-after /bin/true
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -m fast -w stop >/dev/null

# --- the tables
get() { awk -v k="$2" -v c="$3" '$1 == k { print $c; found = 1 } END { if (!found) print "n/a" }' "$WORK/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "$("$WV" version 2>/dev/null | head -n 1) vs $PBR_VERSION; lz4; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$HAVE_AGENT" = 1 ] || echo "walvault-wal / walvault agent: not built, rows n/a"
echo
echo "Drain of $BACKLOG ready segments (pgbench -i -s $SCALE) through PostgreSQL's archiver, segments/s (ratio: / pgBackRest async)"
echo "(agent: started with the clock; agent 1 s: running a second before it)"
printf '%-34s %10s %10s %10s %10s %10s\n' "" agent "agent 1 s" wal-push "pbr async" "pbr sync"
for store in $STORES; do
	for enc in plain enc; do
		label="$store store, lz4"; [ "$enc" = enc ] && label="$label, encrypted"
		a=$(get drain "$store-$enc-agent" 4); aw=$(get drain "$store-$enc-agentwarm" 4); w=$(get drain "$store-$enc-walpush" 4)
		pa=$(get drain "$store-$enc-pbrasync" 4); ps=$(get drain "$store-$enc-pbrsync" 4)
		printf '%-34s %10s %10s %10s %10s %10s\n' "$label" "$a" "$aw" "$w" "$pa" "$ps"
		printf '%-34s %10s %10s %10s %10s %10s\n' "  ratio" "$(ratio "$a" "$pa")" "$(ratio "$aw" "$pa")" "$(ratio "$w" "$pa")" 1.00 "$(ratio "$ps" "$pa")"
	done
done
echo
echo "Sustained bulk load, ${DURATION}s each: WAL MB/s, share of /bin/true's (mean of the two), .ready backlog (peak; samples > 2 of all, every 0.5 s), agent peak RSS"
printf '%-22s %10s %8s %8s %12s %10s\n' archive_command "WAL MB/s" share peak ">2/samples" "RSS MiB"
base=$(awk '$1 == "true" || $1 == "true-after" { s += $2; n++ } END { if (n) printf "%.1f", s / n }' "$WORK/sustain")
for k in true true-after $(for s in $STORES; do echo "$s-agent $s-walpush $s-pbrasync"; done); do
	printf '%-22s %10s %8s %8s %12s %10s\n' "$k" "$(get sustain $k 2)" "$(ratio "$(get sustain $k 2)" "$base")" "$(get sustain $k 3)" "$(get sustain $k 4)/$(get sustain $k 5)" "$(get sustain $k 6)"
done
echo
echo "Per call, a segment already archived: median wall ms of $CALLS (process start included), peak RSS MiB"
printf '%-30s %10s %10s\n' "" "ms" "RSS MiB"
printf '%-30s %10s %10s\n' "/bin/true (process start)" "$(get percall true 2)" "$(get percall true 3)"
printf '%-30s %10s %10s\n' "walvault-wal push (agent)" "$(get percall agent-push 2)" "$(get percall agent-push 3)"
printf '%-30s %10s %10s\n' "walvault wal-push" "$(get percall walpush-again 2)" "$(get percall walpush-again 3)"
echo
echo "Recovery from the $REC_STORE store: initdb's cluster replays $BACKLOG archived segments until it promotes, s (ratio: / pgBackRest)"
pr=$(get recover pbr 2)
for k in walfetch agent pbr; do
	printf '%-30s %10s %8s\n' "$k" "$(get recover $k 2)" "$(ratio "$(get recover $k 2)" "$pr")"
done
echo
echo "archiver failures during the drains (retries): $(awk '$5 > 0 { printf "%s=%d ", $1, $5 }' "$WORK/drain")"
echo "took $(($(date +%s) - T_START)) s"
