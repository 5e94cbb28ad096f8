#!/usr/bin/env bash
# Installs the storage servers the integration tests run against, pinned, into
# a cache directory (default: <repo>/.cache). Idempotent: what is present is
# kept. Usage: integration/install-test-servers.sh [CACHE_DIR]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-$repo/.cache}
mkdir -p "$cache/bin"
cache=$(cd "$cache" && pwd)

VERSITYGW=v1.8.0
FAKE_GCS=v1.56.1
AZURITE=3.37.0

if [[ ! -x $cache/bin/versitygw ]]; then
	echo "installing versitygw $VERSITYGW into $cache/bin"
	GOBIN=$cache/bin go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW"
fi
if [[ ! -x $cache/bin/fake-gcs-server ]]; then
	echo "installing fake-gcs-server $FAKE_GCS into $cache/bin"
	GOBIN=$cache/bin go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS"
fi
if [[ ! -x $cache/azurite/node_modules/.bin/azurite-blob ]]; then
	command -v npm >/dev/null || { echo "npm not found: install Node.js (apt-get install nodejs npm)" >&2; exit 1; }
	echo "installing azurite $AZURITE into $cache/azurite"
	npm install --prefix "$cache/azurite" --no-audit --no-fund "azurite@$AZURITE"
fi
echo "test servers ready in $cache"
