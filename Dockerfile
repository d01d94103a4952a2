# syntax=docker/dockerfile:1
# aqueduct and the randomuser stand-in API: built in the Rust image (Debian 12), run in
# debian:bookworm-slim. The binaries link librdkafka statically (rdkafka's `cmake-build`) and
# need only OpenSSL and zlib at run time. The example pipelines are in the image, under
# /usr/share/aqueduct, the working directory, so `aqueduct run pipelines/users.toml` works.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# The native build dependencies of rdkafka-sys (the same list as .ci/run).
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		cmake pkg-config libssl-dev libzstd-dev zlib1g-dev libcurl4-openssl-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The context is only what .dockerignore lets through: Cargo.*, src/, standin/ (the stand-in
# API's crate), benches/ (a [[bench]] target must exist for cargo to load the manifest) and
# pipelines/.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
	--mount=type=cache,target=/src/target \
	cargo build --release --locked --workspace --bins \
	&& install -D -m 0755 -t /out target/release/aqueduct target/release/randomuser-standin

FROM debian:bookworm-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		ca-certificates libssl3 zlib1g \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --no-create-home --shell /usr/sbin/nologin aqueduct
COPY --from=build /out/ /usr/local/bin/
COPY pipelines /usr/share/aqueduct/pipelines
WORKDIR /usr/share/aqueduct
# A broken example spec fails the image build, not the first run.
RUN aqueduct check pipelines/*.toml
USER aqueduct
ENTRYPOINT ["aqueduct"]
CMD ["run", "pipelines/users.toml"]
