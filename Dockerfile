# fwdlog managed-plugin rootfs: `make plugin` builds this image (docker build --network
# host), exports its filesystem into build/plugin/rootfs and runs `docker plugin create`;
# `make plugin PLUGIN=REGISTRY/fwdlog:TAG plugin-push` publishes it. Without a registry,
# make makes debian:bookworm-slim itself with debootstrap. (`make plugin-local` builds the
# same layout from the host's build; tests/e2e/rootfs.py checks both open the same files.)

FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential pkg-config libmicrohttpd-dev libjansson-dev libmsgpack-dev \
      libprotobuf-c-dev protobuf-c-compiler libpcre2-dev zlib1g-dev libssl-dev libc-ares-dev \
      libyajl-dev \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto ./proto
COPY include ./include
COPY driver ./driver
# make plugin passes the Makefile's VERSION (a test upgrade builds a different one)
ARG VERSION=
RUN make ERR=1 ${VERSION:+VERSION=$VERSION}

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libmicrohttpd12 libjansson4 libprotobuf-c1 libpcre2-8-0 zlib1g libssl3 libc-ares2 libyajl2 \
      ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/docker/plugins /run/docker/logging
COPY --from=build /src/build/fwdlogd /usr/bin/fwdlogd
ENTRYPOINT ["/usr/bin/fwdlogd"]
