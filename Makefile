# wskafka: `make run` serves Caddyfile.example on the embedded broker; `make test` runs every test.
GO       ?= go
PACKAGES  = $(shell $(GO) list ./... | grep -v /e2e)

.PHONY: build run test test-fast test-kafka test-e2e test-client vet fuzz e2e-deps kafka-up kafka-down clean bench bench-scale

build:
	$(GO) build -o caddy ./cmd/caddy

run: build
	./caddy run --config Caddyfile.example --adapter caddyfile

# gofmt, go vet, staticcheck and errcheck (pinned; fetched through the Go module proxy on first use). errcheck
# reads the module and its tools, not tests: an error left unchecked there is marked `_ =` with the reason.
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2
ERRCHECK    = github.com/kisielk/errcheck@v1.9.0
ERRCHECKED  = $(PACKAGES)
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(ERRCHECK) -ignoretests $(ERRCHECKED)

# Unit and integration tests on the in-process broker: no Java, no Node, no network.
test-fast: vet
	env -u KAFKA_BROKERS $(GO) test -race -count=1 $(PACKAGES)

# The integration tests and the Kafka adapter's own again, against the cluster in KAFKA_BROKERS (skipped when it is
# not set).
test-kafka:
	@if [ -n "$$KAFKA_BROKERS" ]; then $(GO) test -count=1 -timeout 15m . ./kafkago/ ; \
	else echo "test-kafka: KAFKA_BROKERS is not set, skipped"; fi

# The end-to-end suite: the real binary, real clients, KAFKA_BROKERS or an in-process broker.
test-e2e: e2e-deps
	$(GO) test -count=1 -timeout 20m ./e2e/

# The JavaScript client library: unit tests against a fake server, the type test, the size budget, and the browser
# test in headless Chromium (skipped without /usr/bin/chromium; .ci/run installs it); then the demo page, served
# from this build's embedded file system, in Chromium. The library's live tests against the real binary run in the
# end-to-end suite (TestClientLibrary).
test-client: build
	cd client && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run typecheck && npm run size && npm run test:browser
	cd client/browser && npm ci --no-audit --no-fund --loglevel=error && CADDY=$(CURDIR)/caddy npm test

test: test-fast test-kafka test-e2e test-client

# A bounded run of every protocol fuzz target; crashers land in protocol/testdata/fuzz and become regression cases
# (scripts/fuzz says how it tells them from a race in Go 1.26's fuzzing coordinator).
FUZZTIME ?= 20s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz

# The benchmarks of BENCHMARKS.md (not tests: nothing in `make test` depends on timing). The in-process broker by
# default, KAFKA_BROKERS for a real one (KAFKA_VERSION names it in the results; the group-per-subscriber fan-out
# then has 250 subscribers, see BENCHMARKS.md); BENCHFLAGS adds wskbench flags.
# The peer, Centrifugo, is built by wskbench with `go install` into the run's temp dir (CENTRIFUGO_VERSION), or taken
# from CENTRIFUGO (a binary); it is never a dependency of this module.
BENCH_SUFFIX = $(if $(KAFKA_BROKERS),-kafka)
CENTRIFUGO_VERSION ?= v6.9.1
BENCH_PEER = -centrifugo-version $(CENTRIFUGO_VERSION) $(if $(CENTRIFUGO),-centrifugo $(CENTRIFUGO))
bench: build
	$(GO) run ./cmd/wskbench -caddy ./caddy -out BENCHMARKS.md -profile bench/produce$(BENCH_SUFFIX).pprof \
		-fanout-profile bench/fanout$(BENCH_SUFFIX).pprof $(if $(KAFKA_BROKERS),-group-subs=250) $(BENCH_PEER) $(BENCHFLAGS)

# Many sockets: 19,000 on one Caddy, then 100,000 over six Caddy instances and eleven wskbench worker processes on
# loopback source addresses of their own (a process here may hold 20,000 files); its own section of BENCHMARKS.md.
# SCALE lists the sizes.
SCALE ?= 19000,100000
bench-scale: build
	$(GO) run ./cmd/wskbench -caddy ./caddy -out BENCHMARKS.md -only scale -scale $(SCALE) $(BENCHFLAGS)

e2e-deps:
	@if [ -f e2e/node/package.json ]; then cd e2e/node && npm ci --no-audit --no-fund --loglevel=error; fi
	cd client && npm ci --no-audit --no-fund --loglevel=error

kafka-up:
	@scripts/kafka up

kafka-down:
	@scripts/kafka down

clean:
	rm -f caddy
