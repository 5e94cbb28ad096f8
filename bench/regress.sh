#!/usr/bin/env bash
# No regression against an older build: the warm drain through the agent,
# backup-push, restore and (file store) recovery of two walvault builds,
# side by side in one run, interleaved. See bench/README.md.
#
#   bash bench/regress.sh NEW_WALVAULT OLD_WALVAULT
#   bash bench/regress.sh bin/walvault .cache/segcpu-597ba65/walvault   (about 3 minutes)
#   SCALE=40 RUNS=3 STORES="file s3" RECOVERY=1 bash bench/regress.sh NEW OLD
#
# walvault-wal (the agent's client) must lie beside each walvault, and
# walvault-full beside a front (make build's bin/walvault). Needs root
# (PostgreSQL and walvault run as the postgres user), PostgreSQL 15's
# server binaries, and for the S3 rows versitygw (make test-deps puts it in
# .cache/bin; WALVAULT_TEST_CACHE or ./.cache).
#
# Per store (file, S3 through versitygw with TLS) and per encryption (lz4;
# lz4 + age), RUNS rounds of each measurement, the two builds one right
# after the other and who goes first alternating from one pair to the next:
# 1. Warm drain: the >= 32 .ready segments pgbench -i -s SCALE left while
#    the archiver was off, a new empty store each run; the build's agent
#    starts 1 s before the clock, which starts with the reload that sets
#    archive_command = '<build>/walvault-wal push %p' and stops when no
#    .ready is left: segments/s, the agent's CPU per segment (utime+stime
#    from /proc) and its peak RSS.
# 2. Backup: walvault backup-push --fast-checkpoint of a second pgbench -i
#    -s SCALE cluster archiving with the same build's wal-push into the
#    same store, after a CHECKPOINT and with its archiver idle: wall, CPU
#    (user+sys, children included) and peak RSS from /usr/bin/time, stored
#    MiB from its summary line.
# 3. Restore of that backup into an empty directory, files only: the same
#    figures, and DEST/global/pg_control checked.
# 4. Recovery (file store, RECOVERY=1): the first cluster as initdb left it
#    replays every drained segment through '<build>/walvault wal-fetch' until
#    it promotes.
set -euo pipefail

USAGE="usage: bash bench/regress.sh NEW_WALVAULT OLD_WALVAULT"
NEW=$(readlink -f "${1:?$USAGE}")
OLD=$(readlink -f "${2:?$USAGE}")
SCALE=${SCALE:-40}
RUNS=${RUNS:-3}
STORES=${STORES:-file s3}
RECOVERY=${RECOVERY:-1}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
CACHE=${WALVAULT_TEST_CACHE:-$(pwd)/.cache}
HEAD_START=1

die() { echo "regress-bench: $*" >&2; exit 2; }
say() { echo "regress-bench: $* ($(date -u +%H:%M:%S))" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and walvault run as the postgres user)"
for b in "$NEW" "$OLD"; do
	[ -x "$b" ] || die "no walvault binary at $b"
	[ -x "$(dirname "$b")/walvault-wal" ] || die "no walvault-wal beside $b"
done
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
if [ ! -x /usr/bin/time ]; then
	say "installing time from Debian"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
VGW=$CACHE/bin/versitygw
case " $STORES " in *" s3 "*) [ -x "$VGW" ] || { echo "regress-bench: no versitygw at $VGW (make test-deps): S3 rows skipped" >&2; STORES=${STORES//s3/}; } ;; esac
[ -n "${STORES// /}" ] || die "no store to measure (STORES=file, s3 or both)"
HZ=$(getconf CLK_TCK)

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/wvregress-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
AGENT_PID= # runuser's pid; the agent is its child
VGW_PID=
stop_agent() {
	[ -n "$AGENT_PID" ] || return 0
	local c
	c=$(pgrep -P "$AGENT_PID" || true)
	if [ -n "$c" ]; then kill "$c" 2>/dev/null || true; else kill "$AGENT_PID" 2>/dev/null || true; fi
	wait "$AGENT_PID" 2>/dev/null || true
	AGENT_PID=
}
cleanup() {
	# A second Ctrl-C (or timeout's signal to the process group after the
	# one to this shell) must not cut the clean-up short.
	trap '' INT TERM
	stop_agent
	if [ -n "$VGW_PID" ]; then kill "$VGW_PID" 2>/dev/null || true; fi
	local d
	for d in "$WORK"/drain "$WORK"/bk "$WORK"/rec; do
		if [ -f "$d/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true; fi
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the two builds, each in its own directory postgres can run it from
for b in new old; do
	if [ "$b" = new ]; then src=$NEW; else src=$OLD; fi
	mkdir "$WORK/$b"
	cp "$src" "$WORK/$b/walvault"
	cp "$(dirname "$src")/walvault-wal" "$WORK/$b/"
	# The front (make build) runs everything but WAL through walvault-full beside it.
	if [ -x "$(dirname "$src")/walvault-full" ]; then cp "$(dirname "$src")/walvault-full" "$WORK/$b/"; fi
	chmod 755 "$WORK/$b" "$WORK/$b"/*
done
VERSION_NEW=$("$WORK/new/walvault" version 2>&1 | head -n 1 || true)
VERSION_OLD=$("$WORK/old/walvault" version 2>&1 | head -n 1 || true)
as_pg "$WORK/new/walvault" version >/dev/null 2>&1 || die "the new build does not run as postgres: $VERSION_NEW"
as_pg "$WORK/old/walvault" version >/dev/null 2>&1 || die "the old build does not run as postgres: $VERSION_OLD"

# Both builds must know the flags used here; a flag one lacks is left out
# for that build (and said so) when it is optional, fatal otherwise.
NOTES=
declare -A HELP
has_flag() { # has_flag BUILD COMMAND FLAG
	[ -n "${HELP[$1 $2]:-}" ] || HELP[$1 $2]=$("$WORK/$1/walvault" "$2" --help 2>&1 || true)
	grep -qE -- "(^|[ ,])$3( |,|\$)" <<<"${HELP[$1 $2]}"
}
for b in new old; do
	for cf in "agent --pgdata" "agent --store" "agent --signing-key" "agent --recipient" \
		"backup-push --store" "backup-push --recipient" "backup-push --signing-key" \
		"restore --backup" "restore --verify-key" "restore --identity-file" \
		"wal-push --recipient" "wal-fetch --verify-key" "wal-fetch --identity-file"; do
		read -r c f <<<"$cf"
		has_flag "$b" "$c" "$f" || die "the $b build's '$c' has no $f"
		if [[ " $STORES " == *" s3 "* ]]; then
			for f in --s3-endpoint --s3-path-style; do has_flag "$b" "$c" "$f" || die "the $b build's '$c' has no $f"; done
		fi
	done
done
declare -A BK_EXTRA
for b in new old; do
	BK_EXTRA[$b]=
	for f in --fast-checkpoint --pgdata; do
		if has_flag "$b" backup-push "$f"; then
			BK_EXTRA[$b]="${BK_EXTRA[$b]} $f"
		else
			NOTES="$NOTES; the $b build's backup-push has no $f: left out for it"
		fi
	done
done

keys=$(cd "$WORK" && as_pg "$WORK/new/walvault" keygen --signing-key "$WORK/sign.key" "$WORK/id.key" 2>/dev/null)
RECIPIENT=$(sed -n 1p <<<"$keys")
VERIFY=$(sed -n 2p <<<"$keys")
{ [ -n "$RECIPIENT" ] && [ -n "$VERIFY" ]; } || die "walvault keygen printed no keys"

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
# order N: the builds of pair N, who goes first alternating
order() { if [ $(($1 % 2)) = 0 ]; then echo "old new"; else echo "new old"; fi; }
PAIR=0
# record STORE ENC MEASURE BUILD VALUE
record() { echo "$*" >>"$WORK/results"; }

# --- S3: versitygw with TLS, as bench/agent.sh
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
	# Inherited by PostgreSQL, so by every archive_command and restore_command.
	export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
	# (the AWS SDK takes a private CA from AWS_CA_BUNDLE, not SSL_CERT_FILE)
	export AWS_EC2_METADATA_DISABLED=true AWS_CA_BUNDLE=$WORK/tls.crt
fi

# store_url STORE NAME; wv_opts STORE NAME ENC: the writers' settings;
# rd_opts STORE NAME ENC: the readers' (restore, wal-fetch)
store_url() { if [ "$1" = s3 ]; then echo "s3://bench/$2"; else echo "file://$WORK/stores/$2"; fi; }
s3_opts() { if [ "$1" = s3 ]; then echo "--s3-endpoint https://127.0.0.1:$VGW_PORT --s3-path-style"; fi; }
wv_opts() {
	local o
	o="--store $(store_url "$1" "$2") --signing-key $WORK/sign.key --log-level warn $(s3_opts "$1")"
	if [ "$3" = enc ]; then o="$o --recipient $RECIPIENT"; fi
	echo "$o"
}
rd_opts() {
	local o
	o="--store $(store_url "$1" "$2") --verify-key $VERIFY --log-level warn $(s3_opts "$1")"
	if [ "$3" = enc ]; then o="$o --identity-file $WORK/id.key"; fi
	echo "$o"
}
store_dir() { if [ "$1" = s3 ]; then echo "$WORK/vgw/bench/$2"; else echo "$WORK/stores/$2"; fi; }

start_agent() { # start_agent BUILD PGDATA OPTS...
	local b=$1 d=$2
	shift 2
	(cd "$d" && exec runuser -u postgres -- "$WORK/$b/walvault" agent --pgdata "$d" "$@" >>"$WORK/agent-$b.log" 2>&1) &
	AGENT_PID=$!
	# Up once its socket answers: the agent listens after its start-up checks.
	for _ in $(seq 500); do
		[ -S "$d/pg_wal/.walvault/agent.sock" ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || break
		tick 0.02
	done
	die "the $b build's agent did not start: $(tail -n 3 "$WORK/agent-$b.log")"
}
# agent_usage: CPU seconds (user+sys, its reaped children too) and peak RSS
# MiB of the agent process, read from /proc while it runs
agent_usage() {
	local p
	p=$(pgrep -P "$AGENT_PID" | head -n 1)
	[ -n "$p" ] || die "no agent process under runuser ($AGENT_PID)"
	awk -v hz="$HZ" '{ sub(/^.*\) /, ""); printf "%.3f ", ($12 + $13 + $14 + $15) / hz }' "/proc/$p/stat"
	awk '/^VmHWM/ { printf "%.1f\n", $2 / 1024 }' "/proc/$p/status"
}

# --- the data
say "making the drain cluster: pgbench -i -s $SCALE with its WAL not archived"
DRAIN=$WORK/drain
as_pg mkdir -p "$WORK/stores"
as_pg "$PGBIN/initdb" -D "$DRAIN" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$DRAIN" 5450
echo "wal_keep_size = '8GB'" >>"$DRAIN/postgresql.conf"
as_pg cp -a "$DRAIN" "$WORK/base" # what recovery starts from: the cluster before any WAL
as_pg "$PGBIN/pg_ctl" -D "$DRAIN" -l "$WORK/drain.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5450 -i -s "$SCALE" -q >/dev/null 2>&1
psql 5450 "SELECT pg_switch_wal()" >/dev/null
# pgbench -i -s 40 writes about 32 segments; a rewrite of the table more.
while [ "$(nready "$DRAIN")" -lt 32 ]; do
	psql 5450 "VACUUM FULL pgbench_accounts" >/dev/null
	psql 5450 "SELECT pg_switch_wal()" >/dev/null
done
psql 5450 "CHECKPOINT" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DRAIN" -m fast -w stop >/dev/null
BACKLOG=$(nready "$DRAIN")

say "making the backup cluster: pgbench -i -s $SCALE"
BK=$WORK/bk
as_pg "$PGBIN/initdb" -D "$BK" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$BK" 5451
# Until the first backup, nothing to archive to.
echo "archive_command = '/bin/true'" >>"$BK/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$BK" -l "$WORK/bk.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5451 -i -s "$SCALE" -q >/dev/null 2>&1
psql 5451 "CHECKPOINT" >/dev/null
DB_MIB=$(psql 5451 "SELECT round(sum(pg_database_size(oid)) / 1048576) FROM pg_database")

# drain BUILD STORE ENC RUN: the backlog through the build's agent, warm
drain() {
	local b=$1 store=$2 enc=$3 run=$4 name f n t0 t1 failed usage cpu rss have opts
	name=drain-$b-$enc-$run
	read -ra opts <<<"$(wv_opts "$store" "$name" "$enc")"
	for f in "$DRAIN"/pg_wal/archive_status/*.done; do mv "$f" "${f%.done}.ready"; done
	rm -rf "$DRAIN/pg_wal/.walvault"
	n=$(nready "$DRAIN")
	sync
	as_pg "$PGBIN/pg_ctl" -D "$DRAIN" -l "$WORK/drain.log" -w start >/dev/null
	psql 5450 "ALTER SYSTEM SET archive_command = '$WORK/$b/walvault-wal push %p'" >/dev/null
	# Warm: the agent runs before the clock, as a resident agent does
	# while PostgreSQL's archiver is behind: it uploads ahead, the archiver
	# only asks.
	start_agent "$b" "$DRAIN" "${opts[@]}"
	tick "$HEAD_START"
	t0=$EPOCHREALTIME
	psql 5450 "SELECT pg_reload_conf()" >/dev/null
	# Polled every 10 ms: a warm drain can take a few tenths of a second.
	for _ in $(seq 24000); do
		[ "$(nready "$DRAIN")" = 0 ] && break
		tick 0.01
	done
	t1=$EPOCHREALTIME
	[ "$(nready "$DRAIN")" = 0 ] || die "drain $name: backlog not drained in 240 s: $(psql 5450 "SELECT * FROM pg_stat_archiver")"
	usage=$(agent_usage)
	read -r cpu rss <<<"$usage"
	failed=$(psql 5450 "SELECT failed_count FROM pg_stat_archiver")
	psql 5450 "ALTER SYSTEM RESET archive_command" >/dev/null
	psql 5450 "SELECT pg_reload_conf()" >/dev/null
	as_pg "$PGBIN/pg_ctl" -D "$DRAIN" -m fast -w stop >/dev/null
	stop_agent
	have=$(find "$(store_dir "$store" "$name")/wal" -type f -name '0*' | wc -l)
	[ "$have" -ge "$n" ] || die "drain $name: the store holds $have segments, want $n"
	record "$store" "$enc" drain_sps "$b" "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", n / (b - a) }')"
	record "$store" "$enc" drain_cpu "$b" "$(awk -v n="$n" -v c="$cpu" 'BEGIN { printf "%.1f", c * 1000 / n }')"
	record "$store" "$enc" drain_rss "$b" "$rss"
	[ "$failed" = 0 ] || echo "$name=$failed" >>"$WORK/failed"
}

# timed NAME CMD...: CMD as postgres under /usr/bin/time (from inside
# runuser: its start-up is not counted); its stdout in WORK/NAME.out
timed() {
	local name=$1
	shift
	sync
	as_pg /usr/bin/time -o "$WORK/time" -f '%e %U %S %M' "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" ||
		die "$name failed: $(tail -n 5 "$WORK/$name.err")"
	read -r T_WALL T_USER T_SYS T_RSS <"$WORK/time"
}
record_timed() { # record_timed STORE ENC OP BUILD
	record "$1" "$2" "$3_s" "$4" "$T_WALL"
	record "$1" "$2" "$3_cpu" "$4" "$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN { printf "%.2f", u + s }')"
	record "$1" "$2" "$3_user" "$4" "$T_USER"
	record "$1" "$2" "$3_rss" "$4" "$(awk -v k="$T_RSS" 'BEGIN { printf "%.1f", k / 1024 }')"
}

# backup BUILD STORE ENC RUN: a full backup of the backup cluster into the
# build's store, archiving with the build's wal-push into the same store
declare -A LAST_BACKUP
backup() {
	local b=$1 store=$2 enc=$3 run=$4 name opts extra=() bname
	name=bk-$b-$enc
	read -ra opts <<<"$(wv_opts "$store" "$name" "$enc")"
	[[ ${BK_EXTRA[$b]} != *--fast-checkpoint* ]] || extra+=(--fast-checkpoint)
	[[ ${BK_EXTRA[$b]} != *--pgdata* ]] || extra+=(--pgdata "$BK")
	psql 5451 "ALTER SYSTEM SET archive_command = '$WORK/$b/walvault wal-push ${opts[*]} %p'" >/dev/null
	psql 5451 "SELECT pg_reload_conf()" >/dev/null
	psql 5451 "CHECKPOINT" >/dev/null
	for _ in $(seq 6000); do
		[ "$(nready "$BK")" = 0 ] && break
		tick 0.02
	done
	[ "$(nready "$BK")" = 0 ] || die "backup $name: the archiver is not idle after 120 s: $(psql 5451 "SELECT * FROM pg_stat_archiver")"
	timed "backup-$b" env PGPORT=5451 "$WORK/$b/walvault" backup-push "${opts[@]}" "${extra[@]}"
	bname=$(sed -n 's/^backup \([^ ]*\) complete:.*/\1/p' "$WORK/backup-$b.out" | head -n 1)
	LAST_BACKUP[$b]=${bname:-LATEST}
	record_timed "$store" "$enc" backup "$b"
	# "... complete: 602.1 MiB read, 97.3 MiB stored (6.2:1), ..."
	record "$store" "$enc" backup_mib "$b" "$(awk 'match($0, /, [0-9.]+ [KMGT]?i?B stored/) {
		split(substr($0, RSTART + 2, RLENGTH - 2), a, " ")
		m = a[2] == "B" ? 1 / 1048576 : a[2] == "KiB" ? 1 / 1024 : a[2] == "MiB" ? 1 : a[2] == "GiB" ? 1024 : 1048576
		printf "%.1f", a[1] * m; exit }' "$WORK/backup-$b.out")"
	echo "$store $enc $b run $run: $(head -n 1 "$WORK/backup-$b.out")" >>"$WORK/summaries"
}

# restore BUILD STORE ENC RUN: the build's last backup, files only
restore() {
	local b=$1 store=$2 enc=$3 run=$4 opts dest=$WORK/restore
	read -ra opts <<<"$(rd_opts "$store" "bk-$b-$enc" "$enc")"
	rm -rf "$dest"
	as_pg mkdir -m 700 "$dest"
	timed "restore-$b" "$WORK/$b/walvault" restore "${opts[@]}" --backup "${LAST_BACKUP[$b]}" "$dest"
	[ -f "$dest/global/pg_control" ] || die "restore by the $b build: no global/pg_control in $dest"
	local mib
	mib=$(du -sm "$dest" | cut -f1)
	[ "$mib" -ge $((DB_MIB * 9 / 10)) ] || die "restore by the $b build: $dest holds $mib MiB, the databases $DB_MIB MiB"
	record_timed "$store" "$enc" restore "$b"
	rm -rf "$dest"
}

# recover BUILD ENC RUN: initdb's cluster replays every segment of the
# build's last drain store (file) through its wal-fetch until it promotes
recover() {
	local b=$1 enc=$2 run=$3 t0 t1 rec=$WORK/rec
	rm -rf "$rec"
	as_pg cp -a "$WORK/base" "$rec"
	as_pg rm -f "$rec"/pg_wal/0*
	cat >>"$rec/postgresql.conf" <<EOC
port = 5460
archive_mode = off
restore_command = '$WORK/$b/walvault wal-fetch $(rd_opts file "drain-$b-$enc-$RUNS" "$enc") %f %p'
EOC
	as_pg touch "$rec/recovery.signal"
	sync
	t0=$EPOCHREALTIME
	as_pg "$PGBIN/pg_ctl" -D "$rec" -l "$WORK/rec-$b.log" start >/dev/null || die "recovery by the $b build: the server did not start: $(tail -n 5 "$WORK/rec-$b.log")"
	for _ in $(seq 15000); do
		[ "$(psql 5460 "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
		tick 0.02
	done
	t1=$EPOCHREALTIME
	[ "$(psql 5460 "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] || die "recovery by the $b build did not end: $(tail -n 5 "$WORK/rec-$b.log")"
	[ "$(psql 5460 "SELECT count(*) FROM pgbench_accounts")" = $((SCALE * 100000)) ] || die "recovery by the $b build: rows missing"
	as_pg "$PGBIN/pg_ctl" -D "$rec" -m immediate -w stop >/dev/null
	rm -rf "$rec"
	record file "$enc" recovery_s "$b" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
}

for store in $STORES; do
	for enc in plain enc; do
		say "$store store, $enc: warm drain of $BACKLOG segments, $RUNS run(s) per build"
		for run in $(seq "$RUNS"); do
			for b in $(order "$PAIR"); do drain "$b" "$store" "$enc" "$run"; done
			PAIR=$((PAIR + 1))
		done
		say "$store store, $enc: backup-push and restore of pgbench -s $SCALE ($DB_MIB MiB), $RUNS run(s) per build"
		for run in $(seq "$RUNS"); do
			ord=$(order "$PAIR")
			for b in $ord; do backup "$b" "$store" "$enc" "$run"; done
			for b in $ord; do restore "$b" "$store" "$enc" "$run"; done
			PAIR=$((PAIR + 1))
		done
		if [ "$store" = file ] && [ "$RECOVERY" = 1 ]; then
			say "$store store, $enc: recovery of $BACKLOG segments, $RUNS run(s) per build"
			for run in $(seq "$RUNS"); do
				for b in $(order "$PAIR"); do recover "$b" "$enc" "$run"; done
				PAIR=$((PAIR + 1))
			done
		fi
	done
done
as_pg "$PGBIN/pg_ctl" -D "$BK" -m fast -w stop >/dev/null

# --- the table
echo
echo "new: $VERSION_NEW ($NEW)"
echo "old: $VERSION_OLD ($OLD)"
echo "$(nproc) cores; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "pgbench -s $SCALE ($DB_MIB MiB); drain backlog $BACKLOG segments, agent started ${HEAD_START} s before the clock; $RUNS run(s) per build, interleaved, who goes first alternating"
[ -z "$NOTES" ] || echo "note: ${NOTES#; }"
echo "median of the runs (min-max); ratio new/old: below 1 means new is smaller, i.e. faster or leaner, except where 'better' says higher"
echo
printf '%-5s %-8s %-26s %-7s %10s %10s %8s %17s %17s\n' store enc measurement better "old" "new" new/old "old min-max" "new min-max"
label() {
	case $1 in
	drain_sps) echo "drain segments/s" ;;
	drain_cpu) echo "drain agent CPU ms/seg" ;;
	drain_rss) echo "drain agent peak RSS MiB" ;;
	backup_s) echo "backup wall s" ;;
	backup_cpu) echo "backup CPU s (u+s)" ;;
	backup_user) echo "backup CPU s (user)" ;;
	backup_rss) echo "backup peak RSS MiB" ;;
	backup_mib) echo "backup stored MiB" ;;
	restore_s) echo "restore wall s" ;;
	restore_cpu) echo "restore CPU s (u+s)" ;;
	restore_user) echo "restore CPU s (user)" ;;
	restore_rss) echo "restore peak RSS MiB" ;;
	recovery_s) echo "recovery wall s" ;;
	esac
}
# stats STORE ENC MEASURE BUILD: "median min max" of the recorded runs
stats() {
	awk -v s="$1" -v e="$2" -v m="$3" -v b="$4" '$1 == s && $2 == e && $3 == m && $4 == b { print $5 }' "$WORK/results" | sort -g |
		awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "- - -"; exit }
			med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%g %g %g\n", med, v[1], v[NR] }'
}
for store in $STORES; do
	for enc in plain enc; do
		elabel=lz4
		[ "$enc" = enc ] && elabel=lz4+age
		for m in drain_sps drain_cpu drain_rss backup_s backup_cpu backup_user backup_rss backup_mib restore_s restore_cpu restore_user restore_rss recovery_s; do
			grep -q "^$store $enc $m " "$WORK/results" || continue
			read -r om omin omax <<<"$(stats "$store" "$enc" "$m" old)"
			read -r nm nmin nmax <<<"$(stats "$store" "$enc" "$m" new)"
			better=lower
			[ "$m" = drain_sps ] && better=higher
			printf '%-5s %-8s %-26s %-7s %10s %10s %8s %17s %17s\n' "$store" "$elabel" "$(label "$m")" "$better" "$om" "$nm" \
				"$(awk -v a="$nm" -v b="$om" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')" \
				"$omin-$omax" "$nmin-$nmax"
		done
	done
done
echo
echo "backup-push's summaries, last run:"
for store in $STORES; do
	for enc in plain enc; do
		for b in old new; do grep "^$store $enc $b run $RUNS: " "$WORK/summaries" | cut -d' ' -f1,2,3,6- || true; done
	done
done
echo
if [ -f "$WORK/failed" ]; then
	echo "archiver failures during the drains (retries): $(tr '\n' ' ' <"$WORK/failed")"
else
	echo "archiver failures during the drains: none"
fi
echo "took $(($(date +%s) - T_START)) s"
