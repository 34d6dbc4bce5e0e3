# provisiond in a container: `make docker`, or
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t provisiond .
#
# Run it on the host's network: proxyDHCP answers broadcasts on UDP 67 and
# 4011 and TFTP serves UDP 69 on the machines' L2 segment, which a bridged
# container network does not see (port publishing cannot forward broadcasts).
# It runs as a non-root user, so binding ports below 1024 needs
# CAP_NET_BIND_SERVICE (or the host's net.ipv4.ip_unprivileged_port_start),
# and the DHCP sockets' SO_BINDTODEVICE needs CAP_NET_RAW. Docker gives a
# non-root process no capabilities of its own (no ambient capabilities), so
# the binary carries both as file capabilities (setcap below); the container
# must keep them in its capability set: Docker's default set has both, and
# with --cap-drop ALL they are added back. (Not with
# --security-opt no-new-privileges, which ignores file capabilities.)
#
#   docker run -d --name provisiond --network host \
#     --cap-drop ALL --cap-add NET_BIND_SERVICE --cap-add NET_RAW \
#     -v /srv/provisiond/profiles:/profiles:ro \
#     -v /srv/provisiond/assets:/assets:ro \
#     -v provisiond-data:/var/lib/provisiond \
#     provisiond serve --profiles /profiles --assets /assets --dhcp-interface eth0
#
# The data directory (bbolt database, API token, secret key) defaults to the
# volume at /var/lib/provisiond; back up that volume. The CLI runs in the same
# container:
#   docker exec provisiond provisiond machines list --token-file /var/lib/provisiond/api-token
# Without --dhcp-interface
# only HTTP runs and `-p 8080:8080` on a bridged network is enough.

# Build stage: the same static build as `make build`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/provisiond ./cmd/provisiond \
 && mkdir -p /out/data
# File capabilities, kept by COPY --from under BuildKit (Docker 23 and later).
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service,cap_net_raw=+ep /out/provisiond

# Final stage: the binary and nothing else (no shell, no package manager),
# as uid 65532 ("nonroot"). The BMC's ipmitool is not in the image: Redfish
# BMCs work as they are; IPMI BMCs need an image that adds ipmitool.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/provisiond /usr/local/bin/provisiond
# An empty data directory owned by the runtime user, so a named volume mounted
# there starts writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/provisiond
ENV PROVISIOND_DATA_DIR=/var/lib/provisiond
USER 65532:65532
# What serve listens on (informational under --network host): HTTP, and with
# --dhcp-interface proxyDHCP, PXE boot server and TFTP.
EXPOSE 8080/tcp 67/udp 4011/udp 69/udp
ENTRYPOINT ["/usr/local/bin/provisiond"]
CMD ["--help"]
