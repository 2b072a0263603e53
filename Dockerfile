# Multi-stage build: a Rust builder (gcc for aws-lc-sys) and a slim runtime.
FROM rust:1-bookworm AS build
WORKDIR /src
# Everything Cargo.toml names must be here, or cargo refuses the manifest: the [[bench]]
# targets live in benches/ (benches/translate.rs embeds config/wsdl, and src/ embeds config/).
# tests/dockerfile.rs rebuilds this context from these lines and checks it.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY config config
RUN cargo build --profile release-lto --locked && strip target/release-lto/veneer

FROM debian:bookworm-slim
# ca-certificates: HTTPS backends are verified against the system roots.
# curl: the HEALTHCHECK below.
# /var/lib/veneer: the embedded store (queued writes, Idempotency-Key answers), owned by the
# runtime user; mount a volume there. The config may be read-only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home veneer \
 && mkdir -p /var/lib/veneer && chown veneer:veneer /var/lib/veneer
COPY --from=build /src/target/release-lto/veneer /usr/local/bin/veneer
COPY config /etc/veneer
USER veneer
WORKDIR /var/lib/veneer
VOLUME /var/lib/veneer
# Set VENEER_PUBLIC_URL to the URL clients reach (tokens and the docs page name it).
ENV VENEER_CONFIG=/etc/veneer VENEER_LISTEN=0.0.0.0:8080 VENEER_DATA=/var/lib/veneer VENEER_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["veneer"]
CMD ["serve"]
