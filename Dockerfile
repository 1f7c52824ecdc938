# capbill's container image: `docker build -t capbill:0.1.0 .`
#
# Stage 1 builds the release binary; stage 2 is distroless (glibc, CA
# certificates, tzdata, no shell) and runs it as the non-root user 65532.
# Layer order: the dependencies (polars, the AWS SDK: most of the build time)
# are compiled in their own layer, from Cargo.toml, Cargo.lock and benches/
# only, so that a change under src/ rebuilds capbill alone.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Dependencies only: stand-ins for src/main.rs and src/lib.rs. Cargo parses
# every target the manifest declares, so the benches must be there too (they
# are not built: `cargo build` builds the library and the binary only).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# capbill itself. touch: COPY keeps the files' old mtimes, which cargo would
# otherwise take for the stand-ins' and reuse the empty binary.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/capbill --version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="capbill" \
      org.opencontainers.image.description="Nightly batch job that bills storage usage on every edge of a partner channel" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/capbill /usr/local/bin/capbill
USER 65532:65532
# checkov:skip=CKV_DOCKER_2: capbill is a batch job (Kubernetes CronJob, systemd oneshot); its exit code is its health
ENTRYPOINT ["/usr/local/bin/capbill"]
CMD ["run"]
