# syntax=docker/dockerfile:1
#
# cloudtail container image: a drop-in for amazon/aws-xray-daemon.
#
#   docker build -t cloudtail .
#   docker run --rm -p 2000:2000/udp -p 2000:2000/tcp -e AWS_REGION=us-east-1 cloudtail
#
# Two stages. The builder compiles on Debian 12 (glibc 2.36); the final image is distroless/cc
# on the same Debian 12, so the glibc the binary was linked against is the one it runs on.
# Why distroless/cc rather than scratch + musl: it ships exactly what a glibc Rust binary needs
# at run time (glibc, libgcc_s, CA certificates for TLS to AWS, tzdata, /etc/passwd) and no
# shell or package manager; a musl build would need the musl target and musl-gcc for aws-lc,
# musl's allocator is markedly slower under the agent's many small allocations, and scratch
# would have us copy CA certificates by hand.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Everything the manifest names (src/, bench/ for its [[example]] entries, tests/); what is
# not needed is kept out by .dockerignore.
COPY . .
# Cache mounts keep the crate registry and compiled dependencies between builds (BuildKit).
# --locked: build exactly the versions in Cargo.lock, fail rather than resolve new ones.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cloudtail \
    && cp target/release/cloudtail /cloudtail

FROM gcr.io/distroless/cc-debian12
COPY --from=builder /cloudtail /cloudtail
# A fixed, unprivileged uid/gid that owns nothing else on the host (ports above 1024 need no
# capability). Numeric, so it works although distroless' /etc/passwd does not list it.
USER 10001:10001
# 2000/udp: segments from the X-Ray SDKs. 2000/tcp: the sampling proxy (GetSamplingRules,
# SamplingTargets). 2020/tcp: /metrics and /healthz; cloudtail binds it on 127.0.0.1 by default,
# which `cloudtail status` and other containers of an awsvpc task can reach; append
# `--telemetry-address 0.0.0.0:2020` to the run arguments to publish it beyond the container.
EXPOSE 2000/udp 2000/tcp 2020/tcp
# Like the daemon's image: listen on every interface so other containers can reach it. Arguments
# given to `docker run IMAGE ...` (or the ECS `command`) are appended to these.
ENTRYPOINT ["/cloudtail", "-b", "0.0.0.0:2000", "-t", "0.0.0.0:2000"]
# No shell in the image: exec form only. Exits non-zero when the telemetry server does not answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/cloudtail", "status"]
