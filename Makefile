# xnic: a software offload NIC on AF_XDP. `sudo make demo` and `sudo make test`
# are all a fresh Debian 12 / Ubuntu 24.04 machine needs: both provision first
# when a tool is missing (vagrant/provision.sh is idempotent).

SHELL   := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin
XNIC    := $(BIN)/xnic
PKGS    := ./...
# Tools and mounts the targets rely on; any one missing triggers provisioning.
NEEDED  := go clang llvm-strip bpftool ethtool ip tcpdump iperf3 cc

.PHONY: all setup need generate generate-check build test test-unit fuzz demo bench lint clean

all: build

setup:
	bash vagrant/provision.sh

# need: provision only when something is missing, so repeated runs are quick.
need:
	@missing=""; for t in $(NEEDED); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	[ -e /usr/include/xdp/xsk.h ] || missing="$$missing libxdp-dev"; \
	mount | grep -q ' /sys/fs/bpf type bpf' || missing="$$missing bpffs"; \
	if [ -n "$$missing" ]; then echo "make: missing:$$missing; provisioning"; bash vagrant/provision.sh; fi

generate: need
	$(GO) generate ./bpf/...

# CI: the committed bpf2go output must match what the sources generate.
generate-check: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output differs from what is committed: run make generate and commit"; exit 1; }

build: need
	@mkdir -p $(BIN)
	$(GO) build -o $(XNIC) ./cmd/xnic
	$(MAKE) -s -C bench/peers OUT=$(CURDIR)/$(BIN)

# Unit tests need no root; the rest build veth labs and need root. Under
# CI=true a privileged test fails instead of skipping. Then every fuzz
# target runs for FUZZTIME.
test: need build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(MAKE) -s fuzz

# fuzz: every fuzz target in the repo (func FuzzX in a _test.go file, found
# afresh each time) for FUZZTIME each, new inputs kept in the Go cache.
# go test -fuzz takes one target per run, so they run one by one; all run,
# and the step fails at the end naming each one that failed (its failing
# input is then in the package's testdata/fuzz). A target that needs root
# follows the rules of the other tests: it skips without root, and fails
# instead under CI=true. Minimizing an input that adds coverage takes time
# quadratic in its length and go test counts none of it until done (60 s
# by default), so it is bounded by FUZZMINIMIZE executions. Go 1.26's fuzz
# coordinator can fail a target with a bare "context deadline exceeded" as
# -fuzztime ends (go.dev/issue/75804, fixed in 1.27): such a run, with no
# input written and no test failure, is run once more; anything else fails.
FUZZTIME ?= 3s
FUZZMINIMIZE ?= 1000x
fuzz:
	@targets=$$(grep -rEo --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . | \
		sed -E 's#^(.*)/[^/]+:func (Fuzz[A-Za-z0-9_]*)\($$#\1 \2#' | sort -u); \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets found"; exit 1; fi; \
	failed=""; start=$$(date +%s); \
	log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	while read -r dir name; do \
		for try in 1 2; do \
			echo "fuzz: $$name in $$dir for $(FUZZTIME)"; \
			if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) "$$dir" 2>&1 | tee "$$log"; \
				[ "$${PIPESTATUS[0]}" = 0 ]; then break; fi; \
			if [ "$$try" = 1 ] && grep -q 'context deadline exceeded' "$$log" && \
				! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$$log"; then \
				echo "fuzz: $$name: a bare 'context deadline exceeded' at the end of -fuzztime, no input written: Go's fuzz coordinator race (go.dev/issue/75804, fixed in Go 1.27); once more"; \
				continue; \
			fi; \
			failed="$$failed $$dir:$$name"; break; \
		done; \
	done <<< "$$targets"; \
	echo "fuzz: $$(wc -l <<< "$$targets") targets in $$(( $$(date +%s) - start ))s"; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

test-unit:
	$(GO) test -count=1 ./umem/... ./flows/... ./engine/

demo: need build
	$(XNIC) demo

bench: need build
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./umem/... ./engine/... ./flows/...
	$(XNIC) bench --rounds 3 --duration 5s --peers $(BIN)
	bench/steering.sh $(XNIC) 3 4
	for n in 16 1000 100000 1000000; do $(XNIC) bench --only xnic-rx,xnic-pipe-w1,xnic-pipe-w64 --rounds 3 --duration 3s --flows $$n --pipe-cache 64 --peers $(BIN) || exit 1; done
	$(XNIC) bench conns --svg $(BIN)/conns.svg --markdown
	$(XNIC) bench steer-prog --rounds 5
	$(XNIC) bench offload --rounds 5 --duration 2s --peers $(BIN) --markdown
	$(XNIC) bench tcp --rounds 3 --duration 5s --markdown
	$(XNIC) bench migrate --reps 10 --markdown
	$(XNIC) bench qos --rounds 3 --duration 5s --markdown
	$(XNIC) bench latency --rounds 5 --requests 10000 --markdown --plot $(BIN)/latency.svg
	$(XNIC) bench soak --duration 10m --interval 10s --markdown --svg $(BIN)/soak.svg

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN)
