# syntax=docker/dockerfile:1
#
# smtpbind images.
#
#   docker build -t smtpbind:0.1.0 .                                    # the sidecar (default target)
#   docker build --target egress-lockdown -t smtpbind-egress-lockdown:0.1.0 .
#
# The sidecar image is distroless/static (no shell, no package manager, no
# libc: the binary is statically linked, see scripts/build-release.sh), runs as
# UID/GID 65532 and listens on 127.0.0.1:2525 (SMTP, loopback only) and
# 0.0.0.0:9525 (/healthz /readyz /metrics), as the policy's defaults and the
# Helm chart (helm/smtpbind) expect.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG LOCKDOWN_BASE_IMAGE=debian:bookworm-slim

# ---- build -----------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# scripts/build-release.sh: cargo build --release --locked, linked statically
# against glibc (crt-static), so the runtime image needs no libc at all.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    install -D -m 0755 "$(./scripts/build-release.sh)" /out/smtpbind

# ---- egress lock-down init container (optional, see docs/kubernetes.md) ------
# iptables (nft backend: needs NET_ADMIN only) and the one script the chart runs.
FROM ${LOCKDOWN_BASE_IMAGE} AS egress-lockdown
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 helm/smtpbind/files/egress-lockdown.sh /usr/local/bin/smtpbind-egress-lockdown
ENTRYPOINT ["/usr/local/bin/smtpbind-egress-lockdown"]

# ---- runtime (default target) ----------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/smtpbind /smtpbind
USER 65532:65532
EXPOSE 2525 9525
ENV SMTPBIND_POLICY=/etc/smtpbind/policy/policy.yaml
ENTRYPOINT ["/smtpbind"]
CMD ["run"]
