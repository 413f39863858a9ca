# pcp: make (build bin/), make test, make bench, make install PREFIX=...
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
GO ?= go

.PHONY: all build commands man test check cross fuzz bench bench-link bench-tree bench-dht soak dist install uninstall clean help

all: build ## build the commands into bin/ (the default)

build: commands man ## build the commands into bin/ and their man pages into man/

commands: ## build the commands into bin/
	$(GO) build -buildvcs=auto -o bin/ ./cmd/...

# The man pages are written in markdown (man/*.md); their OPTIONS sections
# are checked against, and their flags' terms written from, the flag sets
# of the commands just built.
man: commands ## build the man pages (man/*.1, man/*.7) from man/*.md
	$(GO) run ./internal/mangen --bin bin --out man man/*.md

check: ## gofmt, go vet, and cross-compile for macOS and Windows
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(MAKE) cross

cross: ## cross-compile everything for macOS and Windows
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...

test: build check ## run every test; network tests run in private network namespaces
	$(GO) mod download # the tests run without a network: make dist's test needs nfpm's modules
	PCP_BIN=$(CURDIR)/bin $(GO) test -count=1 -timeout 15m ./...

# Every fuzz target for FUZZTIME each (7 targets: about 4 minutes at 30s).
# Minimizing a new input is bounded by executions, not by go's default of 60 s:
# with that default, FuzzExtract spent its whole run minimizing its first input.
FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each (default 30s, about 4 minutes in all)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 20x $$pkg; \
		done; \
	done

bench: build ## measure throughput, rendezvous time, memory, many small files, a long stream, NAT traversal, emulated links and resuming (prints figures)
	PCP_BIN=$(CURDIR)/bin bash bench/bench.sh
	PCP_BIN=$(CURDIR)/bin bash bench/tree.sh
	PCP_BIN=$(CURDIR)/bin bash bench/soak.sh
	PCP_BIN=$(CURDIR)/bin $(GO) test -count=1 -timeout 90m -run '^$$' -bench 'NAT|Link|Resume' -benchtime 1x ./tests
	$(MAKE) --no-print-directory bench-dht

bench-dht: ## only the meeting on a simulated public DHT of 1,000 servers (internal/dhtsim): p50 and p95 over 50 codes
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench DHTMeeting -benchtime 1x ./lib/discovery

bench-link: build ## only the emulated home and WAN links: pcp against a TCP copy (and croc when on PATH)
	PCP_BIN=$(CURDIR)/bin $(GO) test -count=1 -timeout 90m -run '^$$' -bench Link -benchtime 1x ./tests

bench-tree: build ## only the tree of 100,000 small files: pcp against tar c | tar x (and croc when on PATH)
	PCP_BIN=$(CURDIR)/bin bash bench/tree.sh

soak: build ## only a 20 GiB stream through pcp-pipe: both sides' memory, goroutines and open files every second
	PCP_BIN=$(CURDIR)/bin bash bench/soak.sh

dist: ## release archives (commands, man pages, completions, README, LICENSE), .deb and .rpm, SHA256SUMS in DIST (dist/) for PLATFORMS
	GO=$(GO) bash packaging/dist.sh

install: build ## install the commands and man pages under PREFIX
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 755 bin/* $(DESTDIR)$(BINDIR)/
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/*.7 $(DESTDIR)$(MANDIR)/man7/

uninstall: ## remove what install installed
	cd $(DESTDIR)$(BINDIR) && rm -f $(notdir $(wildcard bin/*))
	cd $(DESTDIR)$(MANDIR)/man1 && rm -f $(notdir $(wildcard man/*.1))
	cd $(DESTDIR)$(MANDIR)/man7 && rm -f $(notdir $(wildcard man/*.7))

clean: ## remove bin/, dist/ and the built man pages
	rm -rf bin dist man/*.1 man/*.7

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
