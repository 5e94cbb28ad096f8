#!/usr/bin/env bash
# Incremental backups (issue 11's performance targets), one run, with
# pgBackRest 2.45's --type=incr on the same updates. See bench/README.md.
#
#   bash bench/incremental.sh [path/to/walvault]      (default: bin/walvault; make build)
#   SCALE=50 RSS_SCALES="10 50" bash bench/incremental.sh
#
# Needs root (it installs Debian's pgbackrest and time when missing and
# runs PostgreSQL, walvault and pgBackRest as the postgres user) and
# PostgreSQL 15's server binaries.
#
# 1. pgbench -i -s SCALE in two byte-identical clusters, one archiving with
#    each tool; a full backup with each.
# 2. UPDATE 1% of pgbench_accounts spread over the table (aid % 100 = 0),
#    then an incremental with each tool; then 1% clustered (the first
#    aids), another incremental: wall time and stored bytes against the
#    full's.
# 3. walvault alone: a new full, then a chain of 6 incrementals with a
#    small update before each, then a full of that same state; restore
#    (files only) of the 6th incremental against restore of that full.
# 4. Peak RSS (/usr/bin/time %M) of walvault's full backup, of the first
#    incremental of the chain (after a 1% spread update) and of both
#    restores, at each scale of RSS_SCALES (step 3 again, walvault alone).
set -euo pipefail

BIN=$(readlink -f "${1:-bin/walvault}")
SCALE=${SCALE:-50}
RSS_SCALES=${RSS_SCALES:-"10 50"}
# walvault stores changed blocks only when hint-bit writes are WAL-logged
# (data checksums or wal_log_hints); without, a changed relation file is
# stored whole. CHECKSUMS=off measures that case.
CHECKSUMS=${CHECKSUMS:-on}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

die() { echo "incremental: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools run as the postgres user)"
[ -x "$BIN" ] || die "no walvault binary at $BIN (run make build)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
help=$("$BIN" backup-push --help 2>&1 || true)
grep -q -- '--incremental' <<<"$help" || die "$BIN backup-push has no --incremental: this walvault predates incremental backups"
# A chain of 6 must not be cut short by the default incremental-max-chain.
MAXCHAIN=()
grep -q -- '--incremental-max-chain' <<<"$help" && MAXCHAIN=(--incremental-max-chain 64)
if ! command -v pgbackrest >/dev/null || [ ! -x /usr/bin/time ]; then
	echo "incremental: installing pgbackrest and time from Debian" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest time >/dev/null
fi
PBR=$(command -v pgbackrest)
PBR_VERSION=$("$PBR" version)
[ "${PBR_VERSION#pgBackRest 2.45}" != "$PBR_VERSION" ] || echo "incremental: warning: $PBR_VERSION, not 2.45" >&2

T_START=$(date +%s)
WORK=$(mktemp -d /tmp/wvincr-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
	for d in "$WORK"/data-*; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp "$BIN" "$WORK/walvault"
chmod 755 "$WORK/walvault"
WV="$WORK/walvault"
# walvault signs what it writes and checks what it reads: a key pair for
# this run, in the environment of everything started from here (the
# clusters' archive_command too).
VERIFY_KEY=$(as_pg "$WV" keygen --signing-key "$WORK/signing.key" 2>/dev/null | tail -n 1)
[ "${VERIFY_KEY#walvault-verify-}" != "$VERIFY_KEY" ] || die "walvault keygen --signing-key printed no verify key"
export WALVAULT_SIGNING_KEY=$WORK/signing.key WALVAULT_VERIFY_KEY=$VERIFY_KEY

# timed OUT CMD...: runs CMD as postgres; "seconds peak_rss_kib" in OUT,
# its stdout in OUT.out. The clock is read inside runuser.
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

export PGHOST=$WORK PGUSER=postgres PGDATABASE=postgres
psql() { "$PGBIN/psql" -XAtq -p "$1" -c "$2"; }
wait_archived() { # wait_archived PORT: until the archiver has caught up with a switch
	local last
	last=$(psql "$1" "SELECT pg_walfile_name(pg_switch_wal())")
	for _ in $(seq 600); do
		[ "$(psql "$1" "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" = t ] && return 0
		sleep 0.2
	done
	die "archiver on port $1 did not reach $last"
}
settle() { for p in "$@"; do psql "$p" "CHECKPOINT" >/dev/null; wait_archived "$p"; done; sleep 1; } # names carry the second
# cluster NAME PORT SCALE ARCHIVE_COMMAND: a running pgbench cluster
cluster() {
	local d=$WORK/data-$1
	local ck=()
	[ "$CHECKSUMS" = on ] && ck=(--data-checksums)
	as_pg "$PGBIN/initdb" -D "$d" --no-sync -U postgres --auth=trust -E UTF8 --locale=C "${ck[@]}" >/dev/null
	# An incremental stores whole every database created less than an hour
	# before its parent began (one copied from a template while the parent
	# was read may be in it half copied; see the README). These databases
	# were made a minute ago; a production cluster's are older: date their
	# PG_VERSION two hours back, as the integration tests do.
	as_pg find "$d/base" -name PG_VERSION -exec touch -d '2 hours ago' {} +
	cat >>"$d/postgresql.conf" <<EOC
listen_addresses = ''
port = $2
unix_socket_directories = '$WORK'
fsync = off
max_wal_size = '4GB'
checkpoint_timeout = '1h'
archive_mode = on
archive_command = '$4'
EOC
	as_pg "$PGBIN/pg_ctl" -D "$d" -l "$WORK/$1.log" -w start >/dev/null
	"$PGBIN/pgbench" -p "$2" -i -s "$3" -q >/dev/null 2>&1
}
stored() { du -sb "$1" | awk '{ print $1 }'; }
# wv_backup KEY STORE PORT ARGS...: a walvault backup; sets NAME
wv_backup() {
	local key=$1 store=$2 port=$3; shift 3
	PGPORT=$port timed "$key" "$WV" backup-push --store "file://$store" --fast-checkpoint --log-level warn "$@"
	NAME=$(awk '{ print $2; exit }' "$WORK/t.out")
	[ -n "$NAME" ] && [ -d "$store/backups/$NAME" ] || die "no backup name in: $(cat "$WORK/t.out")"
}
wv_type() { # wv_type STORE NAME: full or incr, as backup-list's PARENT column (the last) says
	as_pg "$WV" backup-list --store "file://$1" | awk -v n="$2" '$1 == n { print ($NF == "-" ? "full" : "incr") }'
}
wv_restore() { # wv_restore KEY STORE NAME
	rm -rf "$WORK/restore"
	as_pg mkdir -m 700 "$WORK/restore"
	sync
	timed "$1" "$WV" restore --store "file://$2" --backup "$3" --log-level warn "$WORK/restore"
	[ -s "$WORK/restore/global/pg_control" ] || die "restore of $3 has no pg_control"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
ok() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "meets" : "MISSES" }'; } # ok VALUE TARGET

# --- 1. two identical clusters, a full backup with each tool
echo "incremental: pgbench -s $SCALE, two clusters ($(date -u +%H:%M:%S))" >&2
WVBK=$WORK/wv-bk REPO=$WORK/pbr-repo
as_pg mkdir -p "$WVBK" "$REPO" "$WORK/pbr-log" "$WORK/pbr-lock" "$WORK/pbr-spool"
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
# One cluster made, stopped and copied: the same bytes under both tools.
cluster wv 5441 "$SCALE" "$WV wal-push --store file://$WVBK %p"
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-wv" -m fast -w stop >/dev/null
as_pg cp -a "$WORK/data-wv" "$WORK/data-pbr"
as_pg sed -i "s|^port = 5441|port = 5442|; s|^archive_command = .*|archive_command = '$PBR --config=$WORK/pgbackrest.conf --stanza=bk archive-push %p'|" "$WORK/data-pbr/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-wv" -l "$WORK/wv.log" -w start >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-pbr" -l "$WORK/pbr.log" -w start >/dev/null
as_pg "${PB[@]}" stanza-create >/dev/null
size=$(du -sb --exclude=pg_wal "$WORK/data-wv" | awk '{ print $1 }')
pbr_label() { as_pg "${PB[@]}" info --output=json | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4; }

settle 5441 5442
wv_backup wv_full "$WVBK" 5441 --full
WV_FULL_STORED=$(stored "$WVBK/backups/$NAME")
timed pbr_full "${PB[@]}" backup --type=full
PBR_FULL_STORED=$(stored "$REPO/backup/bk/$(pbr_label)")

# --- 2. 1% spread, then 1% clustered, each followed by an incremental
rows=$((SCALE * 100000))
for kind in spread clustered; do
	if [ "$kind" = spread ]; then
		where="aid % 100 = 0"
	else
		where="aid <= $((rows / 100))"
	fi
	echo "incremental: 1% $kind update ($where) and an incremental ($(date -u +%H:%M:%S))" >&2
	# How much of the heap the update touches: a block-level incremental
	# cannot store less than the pages holding an updated row.
	printf -v "PAGES_$kind" '%s' "$(psql 5441 "SELECT count(DISTINCT (ctid::text::point)[0]) || ' of ' || pg_relation_size('pgbench_accounts') / current_setting('block_size')::int
		|| ' (' || round(100.0 * count(DISTINCT (ctid::text::point)[0]) / (pg_relation_size('pgbench_accounts') / current_setting('block_size')::int), 1) || '%)'
		FROM pgbench_accounts WHERE $where")"
	for p in 5441 5442; do psql "$p" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE $where" >/dev/null; done
	settle 5441 5442
	wv_backup "wv_$kind" "$WVBK" 5441 --incremental "${MAXCHAIN[@]}"
	[ "$(wv_type "$WVBK" "$NAME")" = incr ] || die "walvault took $NAME as a full backup, not an incremental: $(cat "$WORK/t.out")"
	printf -v "WV_STORED_$kind" '%s' "$(stored "$WVBK/backups/$NAME")"
	timed "pbr_$kind" "${PB[@]}" backup --type=incr
	printf -v "PBR_STORED_$kind" '%s' "$(stored "$REPO/backup/bk/$(pbr_label)")"
done
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-pbr" -m fast -w stop >/dev/null

# --- 3. a chain of 6, restored, against a full of the same state
# run_chain SCALE PORT STORE: full, 6 incrementals, full; restores.
# Sets the RSS_* and SECS_* of chain_full, chain_incr1..6,
# chain_restore_incr and chain_restore_full.
run_chain() {
	local port=$2 store=$3 i
	settle "$port"
	wv_backup chain_full "$store" "$port" --full
	for i in 1 2 3 4 5 6; do
		# the first: 1% spread (its peak RSS is reported); then small ones
		where="aid % 1000 = $i"
		[ "$i" = 1 ] && where="aid % 100 = 50"
		psql "$port" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE $where" >/dev/null
		settle "$port"
		wv_backup "chain_incr$i" "$store" "$port" --incremental "${MAXCHAIN[@]}"
		[ "$(wv_type "$store" "$NAME")" = incr ] || die "incremental $i of the chain ($NAME) was taken as a full backup: $(cat "$WORK/t.out")"
	done
	INCR6=$NAME
	settle "$port"
	wv_backup chain_after "$store" "$port" --full
	FULL_SAME=$NAME
	# one run each, full first, then the sixth incremental
	wv_restore chain_restore_full "$store" "$FULL_SAME"
	wv_restore chain_restore_incr "$store" "$INCR6"
	rm -rf "$WORK/restore"
}
echo "incremental: a chain of 6 at -s $SCALE ($(date -u +%H:%M:%S))" >&2
run_chain "$SCALE" 5441 "$WVBK"
CHAIN_RESTORE_INCR=$SECS_chain_restore_incr CHAIN_RESTORE_FULL=$SECS_chain_restore_full
declare -A RSS
RSS[$SCALE]="$RSS_chain_full $RSS_chain_incr1 $RSS_chain_restore_incr $RSS_chain_restore_full"
as_pg "$PGBIN/pg_ctl" -D "$WORK/data-wv" -m fast -w stop >/dev/null

# --- 4. peak RSS at the other scales (walvault alone)
port=5450
for s in $RSS_SCALES; do
	[ "$s" = "$SCALE" ] && continue
	echo "incremental: peak RSS at -s $s ($(date -u +%H:%M:%S))" >&2
	as_pg mkdir -p "$WORK/wv-rss-$s"
	cluster "rss-$s" "$port" "$s" "$WV wal-push --store file://$WORK/wv-rss-$s %p"
	run_chain "$s" "$port" "$WORK/wv-rss-$s"
	RSS[$s]="$RSS_chain_full $RSS_chain_incr1 $RSS_chain_restore_incr $RSS_chain_restore_full"
	as_pg "$PGBIN/pg_ctl" -D "$WORK/data-rss-$s" -m immediate -w stop >/dev/null
	rm -rf "$WORK/data-rss-$s" "$WORK/wv-rss-$s"
	port=$((port + 1))
done

# --- the table
echo
echo "$("$WV" version 2>/dev/null | head -n 1) vs $PBR_VERSION (--type=incr: file level); file store, lz4, no encryption"
echo "pgbench -s $SCALE: $(mib "$size") MiB of data, data checksums $CHECKSUMS; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); one run each"
printf '%-52s %14s %14s %12s %12s\n' "" "walvault" "pgBackRest" "walvault %" "target"
printf '%-52s %14s %14s\n' "full backup, wall (s)" "$SECS_wv_full" "$SECS_pbr_full"
printf '%-52s %14s %14s\n' "full backup, stored (MiB)" "$(mib "$WV_FULL_STORED")" "$(mib "$PBR_FULL_STORED")"
for kind in spread clustered; do
	ws=SECS_wv_$kind ps=SECS_pbr_$kind wb=WV_STORED_$kind pb=PBR_STORED_$kind
	printf '%-52s %14s %14s %12s %12s\n' "incremental after 1% $kind update, wall (s)" "${!ws}" "${!ps}" "$(pct "${!ws}" "$SECS_wv_full")" \
		"$([ "$kind" = spread ] && echo "<= 35%: $(ok "$(awk -v a="${!ws}" -v b="$SECS_wv_full" 'BEGIN { print a / b }')" 0.35)")"
	printf '%-52s %14s %14s %12s %12s\n' "incremental after 1% $kind update, stored (MiB)" "$(mib "${!wb}")" "$(mib "${!pb}")" "$(pct "${!wb}" "$WV_FULL_STORED")" \
		"$([ "$kind" = spread ] && echo "<= 3%: $(ok "$(awk -v a="${!wb}" -v b="$WV_FULL_STORED" 'BEGIN { print a / b }')" 0.03)")"
done
for kind in spread clustered; do
	pg=PAGES_$kind
	printf '%-52s %14s\n' "  pgbench_accounts pages with a row updated ($kind)" "${!pg}"
done
ratio=$(awk -v a="$CHAIN_RESTORE_INCR" -v b="$CHAIN_RESTORE_FULL" 'BEGIN { printf "%.2f", a / b }')
printf '%-52s %14s\n' "restore of a full (files only), wall (s)" "$CHAIN_RESTORE_FULL"
printf '%-52s %14s %14s %12s %12s\n' "restore of the 6th incremental, wall (s)" "$CHAIN_RESTORE_INCR" "" "${ratio}x" "<= 1.3x: $(ok "$ratio" 1.3)"
echo
printf '%-10s %16s %16s %18s %18s %12s\n' "peak RSS" "full backup" "incr (1% spread)" "restore 6th incr" "restore full" "target"
for s in $RSS_SCALES; do
	[ -n "${RSS[$s]:-}" ] || continue
	read -r a b c d <<<"${RSS[$s]}"
	worst=$(printf '%s\n' "$a" "$b" "$c" "$d" | sort -g | tail -n 1)
	printf '%-10s %16s %16s %18s %18s %12s\n' "-s $s" "$a MiB" "$b MiB" "$c MiB" "$d MiB" "<= 200: $(ok "$worst" 200)"
done
echo
echo "wall: from inside runuser; incrementals and fulls wait until their WAL is archived (both tools)"
echo "peak RSS: /usr/bin/time's %M (walvault is one process)"
echo "took $(($(date +%s) - T_START)) s"
