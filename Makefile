# provisiond — see README.md. `make run` serves examples/, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/provisiond
FUZZTIME ?= 30s

.PHONY: build run test fuzz bench fmt vet clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/provisiond

# Serves examples/ on :8080 with the state database and assets under ./data.
run: build
	mkdir -p data/assets
	./$(BIN) serve --profiles examples --data-dir ./data --assets ./data/assets --http-addr :8080 --wipe-profile wipe

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Unit, integration and (as root) network-namespace and VM tests.
test: vet
	$(GO) test -race -timeout 40m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzBootQuery$$' -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzMAC$$' -fuzztime $(FUZZTIME) ./internal/ident
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME) ./internal/dhcp
	$(GO) test -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME) ./internal/tftp

# Figures for the closing notes: Go benchmarks, then wrk against a generated
# 10,000-machine profiles directory.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/profiles ./internal/boot
	./scripts/bench-http.sh
	./scripts/bench-tftp.sh

clean:
	rm -rf bin
