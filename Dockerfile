# The driftwatch agent image: built in a Rust image, shipped on a distroless base with the
# binary only, running as a non-root user. Build: docker build -t driftwatch .
FROM rust:1.91-bookworm AS build
# cmake, OpenSSL and curl headers build the bundled librdkafka.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY agent ./agent
COPY benches ./benches
RUN cargo build --release --locked --bin driftwatch \
    && strip target/release/driftwatch

# glibc, libgcc and OpenSSL, no shell; uid 65532. zlib (librdkafka's compression) is not
# in the base: it comes from the build stage (x86-64 path).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/agent.toml"]
