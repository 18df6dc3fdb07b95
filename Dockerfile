# banter: a multi-stage build; the runtime image holds one static-ish binary and runs as a
# non-root user.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that editing the code does not rebuild them.
# The workspace's other member (the load generator) is named but not built.
COPY Cargo.toml Cargo.lock ./
COPY banter-load/Cargo.toml ./banter-load/
# Patched dependencies ([patch.crates-io], vendor/PATCHES.md).
COPY vendor ./vendor
RUN mkdir -p src banter-load/src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > banter-load/src/main.rs \
    && cargo build --release --locked -p banter --bin banter \
    && rm -rf src
COPY src ./src
COPY migrations ./migrations
# Queries are checked at compile time against this data, without a database.
COPY .sqlx ./.sqlx
ENV SQLX_OFFLINE=true
# Make sure the real sources are newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p banter --bin banter

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin banter \
    && mkdir -p /data/uploads && chown banter /data/uploads
COPY --from=build /src/target/release/banter /usr/local/bin/banter
USER banter
ENV BANTER_ADDR=0.0.0.0:4000 \
    LOG_FORMAT=json \
    STORAGE_URL=file:///data/uploads
# Uploaded files when stored locally (a new named volume takes this folder's owner).
VOLUME /data/uploads
EXPOSE 4000
# bash's /dev/tcp keeps the image free of curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/4000 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"ok\"' <&3"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/banter"]
