# provisiond — see README.md. `make run` serves examples/, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/provisiond
# The agent binaries serve hands out at /agent/ARCH (provisiond agent), beside
# bin/provisiond, for the architectures other than the one it serves itself.
HOST     := $(shell $(GO) env GOOS)-$(shell $(GO) env GOARCH)
AGENTS   := $(filter-out bin/provisiond-$(HOST),bin/provisiond-linux-amd64 bin/provisiond-linux-arm64)
FUZZTIME ?= 30s

.PHONY: build run test fuzz bench fmt vet clean sbom docker screenshots

build: $(AGENTS)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/provisiond

# go build knows what is stale: always ask it.
.PHONY: $(AGENTS)
$(AGENTS): bin/provisiond-linux-%:
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/provisiond

# Serves examples/ on :8080 with the state database and assets under ./data.
run: build
	mkdir -p data/assets
	./$(BIN) serve --profiles examples --data-dir ./data --assets ./data/assets --http-addr :8080 --wipe-profile wipe --trust-loopback

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
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/boot

# Figures for the closing notes: Go benchmarks, then wrk against a generated
# 10,000-machine profiles directory (beside matchbox), then a boot storm on a
# 3-member etcd beside bbolt, with an etcd leader change and an instance joining.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/profiles ./internal/boot ./internal/metrics
	$(GO) test -run '^$$' -bench . -benchtime 10x ./internal/web
	./scripts/bench-http.sh
	./scripts/bench-tftp.sh
	./scripts/bench-cluster.sh

# A CycloneDX SBOM (JSON) of the modules compiled into bin/provisiond, for the
# same CGO_ENABLED=0 build. cyclonedx-gomod is built at a pinned version in a
# throwaway module; its sources are checked against the Go checksum database.
# (`go run <tool>@<version>` would be shorter, but it also asks the module proxy
# for the tool's version list, which proxies that serve pinned versions only
# refuse.) Bump CYCLONEDX_GOMOD_VERSION to update the tool.
CYCLONEDX_GOMOD_VERSION ?= v1.7.0
CYCLONEDX_GOMOD := bin/cyclonedx-gomod-$(CYCLONEDX_GOMOD_VERSION)
SBOM     := bin/provisiond.cdx.json

sbom: $(CYCLONEDX_GOMOD)
	CGO_ENABLED=0 ./$(CYCLONEDX_GOMOD) app -json -licenses=false -output $(SBOM) -main cmd/provisiond .
	@echo "wrote $(SBOM)"

$(CYCLONEDX_GOMOD):
	mkdir -p bin
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cd "$$tmp" \
	  && $(GO) mod init provisiond-sbom-tool >/dev/null 2>&1 \
	  && $(GO) get github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION) \
	  && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$@ github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod

# The container image (see Dockerfile). Needs a Docker engine with BuildKit;
# the CI machines have none.
IMAGE ?= provisiond:$(VERSION)
docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

# Refreshes the dashboard screenshots in docs/screenshots (headless Chromium).
screenshots:
	$(GO) test -count=1 -run '^TestBrowserReprovision$$' ./internal/web -screenshots $(CURDIR)/docs/screenshots

clean:
	rm -rf bin
