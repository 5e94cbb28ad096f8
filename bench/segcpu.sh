#!/usr/bin/env bash
# The CPU an archiver takes from the primary per 16 MiB segment, and the
# cold drain, through PostgreSQL's own archiver, side by side in one run:
# the walvault agent and wal-push of one or two builds, pgBackRest async,
# and WAL-G's daemon when a wal-g binary is given. See bench/README.md.
#
#   bash bench/segcpu.sh NEW [OLD]          walvault binaries (walvault-wal beside each)
#   WALG=/path/to/wal-g WALG_CLIENT=/path/to/walg-daemon-client bash bench/segcpu.sh bin/walvault
#   DURATION=30 STORES="file s3" ENC="plain enc" bash bench/segcpu.sh bin/walvault
#
# CPU is counted by a cgroup (cpuacct, v1 or v2's cpu.stat) holding
# PostgreSQL's archiver process and, for the agent and WAL-G's daemon, the
# resident process: every archive_command (and its shell), every process
# they start (pgBackRest's async process) and the resident process are
# counted, PostgreSQL's other processes are not. /bin/true's row is the
# floor (the archiver and the shell it starts per segment).
#
# 1. Cold drain: the backlog of >= 32 .ready segments pgbench -i -s SCALE
#    left, a new empty store; the clock (and the agent) starts with the
#    reload that sets archive_command and stops when no .ready is left:
#    segments/s and CPU ms per segment.
# 2. Sustained: a WAL-heavy bulk load (pgbench, 2 clients, a transaction
#    inserting 10,000 rows of 256 bytes, synchronous_commit off) for
#    DURATION seconds, then until the backlog is archived: CPU ms per
#    archived segment, and WAL MB/s the load achieved. Every row runs
#    plain and encrypted (ENC); WAL-G's daemon, which has no age, runs
#    plain and with its OpenPGP encryption (when gpg is installed): /walg
#    compares a row with WAL-G under the same encryption, /walg0 with
#    WAL-G unencrypted.
# With WV_PROFILE_DIR set, the agents write CPU profiles there.
# Needs root (cgroups; PostgreSQL runs as postgres), PostgreSQL 15's server
# binaries, pgbackrest (installed from Debian when missing), for S3 rows
# versitygw (make test-deps; WALVAULT_TEST_CACHE or ./.cache).
set -euo pipefail

NEW=$(readlink -f "${1:-bin/walvault}")
OLD=${2:+$(readlink -f "$2")}
DURATION=${DURATION:-30}
SCALE=${SCALE:-40}
STORES=${STORES:-file s3}
ENC=${ENC:-plain enc}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
CACHE=${WALVAULT_TEST_CACHE:-$(pwd)/.cache}
WALG=${WALG:-}
WALG_CLIENT=${WALG_CLIENT:-${WALG:+$(dirname "$WALG")/walg-daemon-client}}

die() { echo "segcpu-bench: $*" >&2; exit 2; }
say() { echo "segcpu-bench: $* ($(date -u +%H:%M:%S))" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (cgroups; PostgreSQL and the tools run as the postgres user)"
[ -x "$NEW" ] || die "no walvault binary at $NEW (run make build)"
[ -x "$(dirname "$NEW")/walvault-wal" ] || die "no walvault-wal beside $NEW"
[ -z "$OLD" ] || [ -x "$(dirname "$OLD")/walvault-wal" ] || die "no walvault-wal beside $OLD"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql-15)"
if ! command -v pgbackrest >/dev/null; then
	say "installing pgbackrest from Debian"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null
fi
PBR=$(command -v pgbackrest)
if [ -n "$WALG" ] && { [ ! -x "$WALG" ] || [ ! -x "$WALG_CLIENT" ]; }; then
	die "WALG=$WALG: wal-g or walg-daemon-client ($WALG_CLIENT) missing"
fi
VGW=$CACHE/bin/versitygw
case " $STORES " in *" s3 "*) [ -x "$VGW" ] || { echo "segcpu-bench: no versitygw at $VGW (make test-deps): S3 rows skipped" >&2; STORES=${STORES//s3/}; } ;; esac

# --- the cgroup: v1 cpuacct or v2
CG=
if [ -d /sys/fs/cgroup/cpuacct ] && [ -w /sys/fs/cgroup/cpuacct ]; then
	CG=/sys/fs/cgroup/cpuacct/wvsegcpu-$$
	cg_ns() { cat "$CG/cpuacct.usage"; }
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/wvsegcpu-$$
	cg_ns() { awk '$1 == "usage_usec" { print $2 * 1000 }' "$CG/cpu.stat"; }
else
	die "no cgroup to count CPU with (/sys/fs/cgroup/cpuacct or cgroup v2)"
fi
mkdir "$CG" || die "cannot create the cgroup $CG"

T_START=$(date +%s)
WORK=$(mktemp -d /tmp/wvsegcpu-XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
RES_PID= # the resident process (agent, WAL-G daemon): runuser's pid
VGW_PID=
cleanup() {
	stop_resident
	[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null || true
	for d in "$WORK"/data "$WORK"/load; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	# The cgroup can go once empty: its processes moved back to the root.
	if [ -f "$CG/cgroup.procs" ]; then
		while read -r p; do echo "$p" >"$(dirname "$CG")/cgroup.procs" 2>/dev/null || true; done <"$CG/cgroup.procs"
	fi
	rmdir "$CG" 2>/dev/null || true
	rm -rf "$WORK"
}
stop_resident() {
	[ -n "$RES_PID" ] || return 0
	local c
	c=$(pgrep -P "$RES_PID" || true)
	[ -n "$c" ] && kill "$c" 2>/dev/null
	wait "$RES_PID" 2>/dev/null || true
	RES_PID=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binaries, readable by postgres.
mkdir -p "$WORK/new" "$WORK/old"
cp "$NEW" "$(dirname "$NEW")/walvault-wal" "$WORK/new/"
[ -x "$(dirname "$NEW")/walvault-full" ] && cp "$(dirname "$NEW")/walvault-full" "$WORK/new/"
if [ -n "$OLD" ]; then
	cp "$OLD" "$(dirname "$OLD")/walvault-wal" "$WORK/old/"
	[ -x "$(dirname "$OLD")/walvault-full" ] && cp "$(dirname "$OLD")/walvault-full" "$WORK/old/"
fi
chmod -R 755 "$WORK/new" "$WORK/old"
BUILDS=new
[ -n "$OLD" ] && BUILDS="old new"
keys=$(cd "$WORK" && as_pg "$WORK/new/walvault" keygen --signing-key "$WORK/sign.key" "$WORK/id.key" 2>/dev/null)
RECIPIENT=$(sed -n 1p <<<"$keys")
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
mkfifo "$WORK/tick"
exec 9<>"$WORK/tick"
tick() { read -r -t "$1" -u 9 _ || true; }
nready() { local r=("$1"/pg_wal/archive_status/*.ready); echo "${#r[@]}"; }
# into_cg PGDATA PORT: PostgreSQL's archiver process joins the cgroup
into_cg() {
	local pm a
	pm=$(head -n 1 "$1/postmaster.pid")
	for a in $(pgrep -P "$pm"); do
		if grep -q "archiver" "/proc/$a/cmdline" 2>/dev/null; then echo "$a" >"$CG/cgroup.procs"; return 0; fi
	done
	die "no archiver process under the postmaster of $1"
}

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
	export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
	export AWS_EC2_METADATA_DISABLED=true AWS_CA_BUNDLE=$WORK/tls.crt
fi

store_url() { if [ "$1" = s3 ]; then echo "s3://bench/$2"; else echo "file://$WORK/stores/$2"; fi; }
wv_opts() { # wv_opts STORE NAME ENC
	local o="--store $(store_url "$1" "$2") --signing-key $WORK/sign.key --log-level warn"
	[ "$1" = s3 ] && o="$o --s3-endpoint https://127.0.0.1:$VGW_PORT --s3-path-style"
	[ "$3" = enc ] && o="$o --recipient $RECIPIENT"
	echo "$o"
}
pbr_conf() { # pbr_conf STORE NAME ENC PGDATA PORT: a pgBackRest configuration (async)
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
		echo "compress-type=lz4"; echo "process-max=2"; echo "archive-async=y"
		echo "log-level-console=warn"; echo "log-level-file=off"
		echo "log-path=$WORK/pbr-log"; echo "lock-path=$WORK/pbr-lock-$2"; echo "spool-path=$WORK/pbr-spool-$2"
		echo "[bench]"; echo "pg1-path=$4"; echo "pg1-port=$5"; echo "pg1-socket-path=$WORK"
	} >"$f"
	chmod 644 "$f"
	as_pg mkdir -p "$WORK/pbr-log" "$WORK/pbr-lock-$2" "$WORK/pbr-spool-$2"
	[ "$1" = s3 ] || as_pg mkdir -p "$WORK/stores/$2"
	echo "$f"
}
# WAL-G has no age: its encrypted rows use its OpenPGP encryption, to a
# public key made here (when gpg is installed).
WALG_PGP=
if [ -n "$WALG" ] && command -v gpg >/dev/null; then
	GH=$WORK/gnupg
	mkdir -m 700 "$GH"
	gpg --homedir "$GH" --batch --pinentry-mode loopback --passphrase '' --quick-gen-key 'walvault bench <bench@walvault.invalid>' rsa2048 sign never 2>/dev/null
	fpr=$(gpg --homedir "$GH" --list-keys --with-colons 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
	gpg --homedir "$GH" --batch --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" rsa2048 encr never 2>/dev/null
	gpg --homedir "$GH" --armor --export >"$WORK/walg-pgp.pub" 2>/dev/null
	chmod 644 "$WORK/walg-pgp.pub"
	[ -s "$WORK/walg-pgp.pub" ] && WALG_PGP=$WORK/walg-pgp.pub
fi
# walg_env STORE NAME PGDATA PORT ENC: WAL-G's settings, as env assignments
walg_env() {
	local e="WALG_COMPRESSION_METHOD=lz4 PGDATA=$3 PGPORT=$4 PGHOST=$WORK PGUSER=postgres WALG_LOG_LEVEL=ERROR"
	[ "$5" = enc ] && e="$e WALG_PGP_KEY_PATH=$WALG_PGP"
	if [ "$1" = s3 ]; then
		e="$e WALG_S3_PREFIX=s3://bench/$2 AWS_ENDPOINT=https://127.0.0.1:$VGW_PORT AWS_S3_FORCE_PATH_STYLE=true WALG_S3_CA_CERT_FILE=$WORK/tls.crt"
	else
		as_pg mkdir -p "$WORK/stores/$2"
		e="$e WALG_FILE_PREFIX=$WORK/stores/$2"
	fi
	echo "$e"
}
# start_resident PGDATA SOCKET CMD...: a resident process in the cgroup,
# up once SOCKET exists
start_resident() {
	local d=$1 sock=$2
	shift 2
	# shellcheck disable=SC2068
	(echo "$BASHPID" >"$CG/cgroup.procs"; cd "$d" && exec runuser -u postgres -- "$@" >>"$WORK/resident.log" 2>&1) &
	RES_PID=$!
	for _ in $(seq 500); do
		[ -S "$sock" ] && return 0
		kill -0 "$RES_PID" 2>/dev/null || break
		tick 0.02
	done
	die "$* did not start: $(tail -n 3 "$WORK/resident.log")"
}
# archiver KIND BUILD STORE ENC NAME PGDATA PORT: sets CMD (archive_command),
# RES (a resident process's command line, or empty), PBR_CONF
archiver() {
	local kind=$1 b=$2 store=$3 enc=$4 name=$5 d=$6 port=$7 prof=
	CMD= RES= PBR_CONF= SOCK=
	case $kind in
	true) CMD=/bin/true ;;
	agent)
		[ -n "${WV_PROFILE_DIR:-}" ] && prof="--cpu-profile $WV_PROFILE_DIR/agent-$b-$name.prof"
		CMD="$WORK/$b/walvault-wal push %p"
		SOCK=$d/pg_wal/.walvault/agent.sock
		RES="$WORK/$b/walvault agent --pgdata $d $(wv_opts "$store" "$name" "$enc") $prof" ;;
	walpush) CMD="$WORK/$b/walvault wal-push $(wv_opts "$store" "$name" "$enc") %p" ;;
	pbr)
		PBR_CONF=$(pbr_conf "$store" "$name" "$enc" "$d" "$port")
		CMD="$PBR --config=$PBR_CONF --stanza=bench archive-push %p" ;;
	walg)
		SOCK=$WORK/walg-$name.sock
		CMD="$WALG_CLIENT $SOCK wal-push %f"
		RES="env $(walg_env "$store" "$name" "$d" "$port" "$enc") $WALG daemon $SOCK" ;;
	esac
}
# The rows: KIND:BUILD:ENCRYPTED
rows() {
	local r="true:-:plain"
	for e in $ENC; do
		for b in $BUILDS; do r="$r agent:$b:$e walpush:$b:$e"; done
		r="$r pbr:-:$e"
		[ -n "$WALG" ] && { [ "$e" = plain ] || [ -n "$WALG_PGP" ]; } && r="$r walg:-:$e"
	done
	echo "$r"
}

# --- the data: WAL of pgbench -i, never archived
say "making a pgbench -s $SCALE cluster with its WAL not archived"
DATA=$WORK/data
as_pg mkdir -p "$WORK/stores"
as_pg "$PGBIN/initdb" -D "$DATA" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$DATA" 5452
echo "wal_keep_size = '8GB'" >>"$DATA/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
"$PGBIN/pgbench" -p 5452 -i -s "$SCALE" -q >/dev/null 2>&1
psql 5452 "SELECT pg_switch_wal()" >/dev/null
while [ "$(nready "$DATA")" -lt 32 ]; do
	psql 5452 "VACUUM FULL pgbench_accounts" >/dev/null
	psql 5452 "SELECT pg_switch_wal()" >/dev/null
done
psql 5452 "CHECKPOINT" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
BACKLOG=$(nready "$DATA")

# drain KEY: the backlog through one archiver (set by archiver)
drain() {
	local key=$1 f n t0 t1 c0 c1 failed
	for f in "$DATA"/pg_wal/archive_status/*.done; do mv "$f" "${f%.done}.ready"; done
	rm -rf "$DATA/pg_wal/.walvault"
	n=$(nready "$DATA")
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/data.log" -w start >/dev/null
	into_cg "$DATA"
	[ -n "$PBR_CONF" ] && as_pg "$PBR" --config="$PBR_CONF" --stanza=bench stanza-create >/dev/null
	psql 5452 "ALTER SYSTEM SET archive_command = '$CMD'" >/dev/null
	c0=$(cg_ns)
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2086
	[ -n "$RES" ] && start_resident "$DATA" "$SOCK" $RES
	psql 5452 "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 12000); do
		[ "$(nready "$DATA")" = 0 ] && break
		tick 0.02
	done
	t1=$EPOCHREALTIME
	c1=$(cg_ns)
	[ "$(nready "$DATA")" = 0 ] || die "$key: backlog not drained in 240 s: $(psql 5452 "SELECT * FROM pg_stat_archiver")"
	failed=$(psql 5452 "SELECT failed_count FROM pg_stat_archiver")
	psql 5452 "ALTER SYSTEM RESET archive_command" >/dev/null
	psql 5452 "SELECT pg_reload_conf()" >/dev/null
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
	stop_resident
	awk -v k="$key" -v n="$n" -v a="$t0" -v b="$t1" -v f="$failed" -v c="$((c1 - c0))" \
		'BEGIN { printf "%s %d %.3f %.1f %.1f %d\n", k, n, b - a, n / (b - a), c / 1e6 / n, f }' >>"$WORK/drain"
}

for store in $STORES; do
	for row in $(rows); do
		IFS=: read -r kind b enc <<<"$row"
		key="$store-$kind-$b-$enc"
		say "cold drain of $BACKLOG segments: $key"
		archiver "$kind" "$b" "$store" "$enc" "drain-$key" "$DATA" 5452
		drain "$key"
	done
done

# --- sustained: a bulk load against each archiver
LOAD=$WORK/load
as_pg "$PGBIN/initdb" -D "$LOAD" --no-sync -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pgconf "$LOAD" 5453
echo "synchronous_commit = off" >>"$LOAD/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -l "$WORK/load.log" -w start >/dev/null
into_cg "$LOAD"
psql 5453 "CREATE TABLE bulk (id int, pad text)" >/dev/null
echo "INSERT INTO bulk SELECT i, repeat('x', 250) FROM generate_series(1, 10000) i;" >"$WORK/bulk.sql"
chmod 644 "$WORK/bulk.sql"
sustain() { # sustain KEY DURATION
	local key=$1 dur=$2 lsn0 lsn1 a0 a1 c0 c1 t0 t1
	psql 5453 "TRUNCATE bulk" >/dev/null
	psql 5453 "ALTER SYSTEM SET archive_command = '/bin/true'" >/dev/null
	psql 5453 "SELECT pg_reload_conf()" >/dev/null
	psql 5453 "CHECKPOINT" >/dev/null
	for _ in $(seq 300); do [ "$(nready "$LOAD")" = 0 ] && break; sleep 0.1; done
	rm -rf "$LOAD/pg_wal/.walvault"
	# shellcheck disable=SC2086
	[ -n "$RES" ] && start_resident "$LOAD" "$SOCK" $RES
	[ -n "$PBR_CONF" ] && as_pg "$PBR" --config="$PBR_CONF" --stanza=bench stanza-create >/dev/null
	psql 5453 "ALTER SYSTEM SET archive_command = '$CMD'" >/dev/null
	psql 5453 "SELECT pg_reload_conf()" >/dev/null
	a0=$(psql 5453 "SELECT archived_count FROM pg_stat_archiver")
	lsn0=$(psql 5453 "SELECT pg_current_wal_lsn()")
	c0=$(cg_ns)
	t0=$EPOCHREALTIME
	"$PGBIN/pgbench" -p 5453 -n -c 2 -j 2 -T "$dur" -f "$WORK/bulk.sql" >"$WORK/pgbench-$key.out" 2>&1 ||
		die "$key: pgbench failed: $(tail -n 3 "$WORK/pgbench-$key.out")"
	t1=$EPOCHREALTIME
	lsn1=$(psql 5453 "SELECT pg_current_wal_lsn()")
	for _ in $(seq 1200); do [ "$(nready "$LOAD")" = 0 ] && break; tick 0.05; done
	c1=$(cg_ns)
	a1=$(psql 5453 "SELECT archived_count FROM pg_stat_archiver")
	stop_resident
	local mb
	mb=$(psql 5453 "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / 1048576 / ($t1 - $t0), 1)")
	awk -v k="$key" -v n="$((a1 - a0))" -v c="$((c1 - c0))" -v mb="$mb" \
		'BEGIN { printf "%s %d %.1f %s\n", k, n, (n > 0 ? c / 1e6 / n : 0), mb }' >>"$WORK/sustain"
}
say "sustained: ${DURATION}s of bulk load per archiver"
archiver true - file plain warmup "$LOAD" 5453
sustain warmup 10
for store in $STORES; do
	for row in $(rows); do
		IFS=: read -r kind b enc <<<"$row"
		key="$store-$kind-$b-$enc"
		say "sustained: $key"
		archiver "$kind" "$b" "$store" "$enc" "load-$key" "$LOAD" 5453
		sustain "$key" "$DURATION"
	done
done
as_pg "$PGBIN/pg_ctl" -D "$LOAD" -m fast -w stop >/dev/null

# --- the tables
get() { awk -v k="$2" -v c="$3" '$1 == k { print $c; found = 1 } END { if (!found) print "-" }' "$WORK/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
label() { # label KIND BUILD
	case $1 in
	true) echo "/bin/true (floor)" ;;
	agent) echo "walvault agent ($2)" ;;
	walpush) echo "walvault wal-push ($2)" ;;
	pbr) echo "pgBackRest async" ;;
	walg) echo "WAL-G daemon" ;;
	esac
}
echo
echo "new: $("$NEW" version 2>/dev/null | head -n 1)${OLD:+; old: $("$OLD" version 2>/dev/null | head -n 1)}; $($PBR version)${WALG:+; WAL-G $("$WALG" --version 2>/dev/null | head -n 1 | cut -f1-2)}"
echo "lz4; /pbr and /walg: against pgBackRest (aes-256-cbc) and WAL-G's daemon (OpenPGP) with the same encryption; /walg0: against WAL-G unencrypted"
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); CPU from a cgroup holding the archiver process and the resident process"
for store in $STORES; do
	wc0=$(get sustain "$store-walg---plain" 3)
	echo
	echo "$store store: cold drain of $BACKLOG ready segments (segments/s, CPU ms/segment), sustained bulk load ${DURATION}s (CPU ms/segment, WAL MB/s)"
	printf '%-28s %-6s %8s %8s %8s %8s | %8s %8s %8s %8s %8s\n' "" "" "seg/s" "/pbr" "cpu ms" "/pbr" "cpu ms" "/walg" "/walg0" "/pbr" "WAL MB/s"
	for row in $(rows); do
		IFS=: read -r kind b enc <<<"$row"
		key="$store-$kind-$b-$enc"
		pbr="$store-pbr---$enc" # each row against the peers with the same encryption
		s=$(get drain "$key" 4); c=$(get drain "$key" 5); sc=$(get sustain "$key" 3)
		printf '%-28s %-6s %8s %8s %8s %8s | %8s %8s %8s %8s %8s\n' "$(label "$kind" "$b")" "$enc" "$s" "$(ratio "$s" "$(get drain "$pbr" 4)")" "$c" "$(ratio "$c" "$(get drain "$pbr" 5)")" \
			"$sc" "$(ratio "$sc" "$(get sustain "$store-walg---$enc" 3)")" "$(ratio "$sc" "$wc0")" "$(ratio "$sc" "$(get sustain "$pbr" 3)")" "$(get sustain "$key" 4)"
	done
done
echo
echo "archiver failures during the drains (retries): $(awk '$6 > 0 { printf "%s=%d ", $1, $6 }' "$WORK/drain")"
echo "took $(($(date +%s) - T_START)) s"
