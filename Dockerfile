# Pillion: one image with the proxy (`pillion`) and the certificate tool (`pillion-certs`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pillion-proxy -p pillion-certs -p pillion-control --bins

FROM debian:bookworm-slim
# iptables for `pillion init` (run as an init container with NET_ADMIN).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 2102 pillion \
 && useradd --uid 2102 --gid 2102 --no-create-home --shell /usr/sbin/nologin pillion
COPY --from=build /src/target/release/pillion /src/target/release/pillion-certs /src/target/release/pillion-control /usr/local/bin/
# The proxy runs as UID 2102: `pillion init` exempts that UID from redirection (no loops).
USER 2102:2102
EXPOSE 15001 15006 15020
ENTRYPOINT ["/usr/local/bin/pillion"]
CMD ["run", "--config", "/etc/pillion/config.yaml"]
