# Salve's image for people with Docker (or BuildKit, Podman, Kaniko):
#   docker build -t ghcr.io/salve-sre/salve:0.1.0 --build-arg VERSION=0.1.0 .
# The same image is built without any container engine or base image by
# `task image` (scripts/image.sh): that is the build CI runs and tests.
# Both give a static binary at /usr/local/bin/salve running as the non-root
# user 65532, with CA certificates and time zone data beside it.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/salve-sre/salve/internal/cli.Version=${VERSION}" \
      -o /out/salve ./cmd/salve

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="salve" \
      org.opencontainers.image.description="Salve: event-driven auto-remediation (Alertmanager webhooks in, durable Temporal runbook runs out)" \
      org.opencontainers.image.source="https://github.com/salve-sre/salve" \
      org.opencontainers.image.url="https://github.com/salve-sre/salve" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/salve /usr/local/bin/salve
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/salve"]
