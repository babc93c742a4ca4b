# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full toolchain, ship only the binary, the bundled handlers
# and a production config on a slim base, running as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so editing the code does not rebuild them.
# (benches/ is copied because Cargo.toml names a bench target, which cargo checks exists.)
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin hookwise \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin hookwise

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/hookwise hookwise
COPY --from=build /src/target/release/hookwise /usr/local/bin/hookwise
COPY handlers /etc/hookwise/handlers
COPY deploy/hookwise.toml /etc/hookwise/hookwise.toml
USER hookwise
WORKDIR /var/lib/hookwise
ENV HOOKWISE_CONFIG=/etc/hookwise/hookwise.toml \
    HOOKWISE_LISTEN=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/var/lib/hookwise"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
# `serve` stops cleanly on SIGTERM: in-flight requests finish and queued events are committed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hookwise"]
CMD ["serve"]
