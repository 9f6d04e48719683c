# fwdlog managed-plugin rootfs: `make plugin` builds this image, exports its filesystem
# into build/plugin/rootfs and runs `docker plugin create fwdlog build/plugin`.
# (`make plugin-local` builds the same layout from the host's build, with no registry.)

FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential pkg-config libmicrohttpd-dev libjansson-dev libmsgpack-dev \
      libprotobuf-c-dev protobuf-c-compiler libpcre2-dev zlib1g-dev libssl-dev libyajl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto ./proto
COPY include ./include
COPY driver ./driver
RUN make ERR=1

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libmicrohttpd12 libjansson4 libprotobuf-c1 libpcre2-8-0 zlib1g libssl3 libyajl2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/docker/plugins /var/lib/fwdlog
COPY --from=build /src/build/fwdlogd /usr/bin/fwdlogd
ENTRYPOINT ["/usr/bin/fwdlogd"]
