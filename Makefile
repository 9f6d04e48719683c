# fwdlog - Docker logging driver plugin shipping to Fluentd / Fluent Bit (Forward protocol).
#
#   make                  build build/fwdlogd
#   make test             build and run every test (installs missing deps first)
#   make SAN=address,undefined test   the same with sanitizers, in build/address,undefined/
#   make ERR=1            warnings are errors (CI)
#   make deps             install build and test dependencies (Debian 12, as root)
#   make valgrind         unit tests under valgrind
#   make fuzz             build the libFuzzer targets (clang) and run each FUZZ_SECONDS (30);
#                         the corpus in tests/fuzz/corpus grows with what they find
#   make bench            benchmarks against the built-in fluentd driver (see tests/bench/run.py)
#   make format / format-check / lint
#   make plugin           build the managed plugin from the Dockerfile (no registry needed:
#                         the base image is made with debootstrap when the daemon lacks it)
#   make plugin-local     the same plugin from the host build, without docker build
#   make plugin PLUGIN=REGISTRY/fwdlog:TAG plugin-push   publish the plugin
#   make release-test     the release path: Dockerfile, push to a local registry,
#                         docker plugin install, the e2e suite against it (not under SAN)
#   make plugin-enable / plugin-disable / plugin-rm
#   make e2e              end-to-end tests against a real (private) dockerd, as root
#   make demo             build, enable and show records arriving
#   V=1                   show full command lines

CC      ?= cc
PYTHON  ?= /usr/bin/python3
SAN     ?=
comma   := ,
BUILD   := build$(if $(SAN),/$(SAN))
GEN     := $(BUILD)/gen
PKGS    := libmicrohttpd jansson msgpack libprotobuf-c libpcre2-8 zlib libssl libcrypto libcares yajl
VERSION := 0.1.0

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef \
        -Wnull-dereference -Wwrite-strings -Wvla
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong -pthread $(WARN) \
          -MMD -MP -Iinclude -I$(GEN) -DFWD_VERSION='"$(VERSION)"' \
          $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDFLAGS += -pthread
ifeq ($(ERR),1)
CFLAGS  += -Werror
endif
ifneq ($(SAN),)
CFLAGS  += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

SRCS    := $(wildcard driver/*.c)
OBJS    := $(patsubst driver/%.c,$(BUILD)/obj/%.o,$(SRCS)) $(BUILD)/obj/entry.pb-c.o
LIBOBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNITS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/check_*.c))
FUZZERS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps check-deps test unit integration e2e demo valgrind fuzz fuzz-deps bench bench-deps format format-check lint clean \
        plugin plugin-rootfs-local plugin-local plugin-create plugin-enable plugin-disable plugin-rm \
        plugin-push base-image release-test
all: $(BUILD)/fwdlogd

$(GEN)/entry.pb-c.c $(GEN)/entry.pb-c.h: proto/entry.proto
	@mkdir -p $(GEN)
	$(Q)protoc-c --c_out=$(GEN) -Iproto $<

$(BUILD)/obj/entry.pb-c.o: $(GEN)/entry.pb-c.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -w -c -o $@ $<

$(BUILD)/obj/%.o: driver/%.c $(GEN)/entry.pb-c.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/fwdlogd: $(OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h tests/unit/show.h $(LIBOBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags check) $(LDFLAGS) -o $@ $< $(LIBOBJS) \
	    $(LDLIBS) $(shell pkg-config --libs check)

# The fault-injection shim (LD_PRELOAD) the integration tests use: see its header.
# Built without sanitizers or _FORTIFY_SOURCE (it defines open, read, ... itself).
SHIM := $(BUILD)/tests/faultshim.so
$(SHIM): tests/faultshim.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(filter-out -fsanitize=% -fno-sanitize-recover=% -D_FORTIFY_SOURCE=%,$(CFLAGS)) \
	    -U_FORTIFY_SOURCE -fPIC -shared -o $@ $< -ldl

# Debian 12 packages for building, testing and the end-to-end suite.
DEB_BUILD := build-essential pkg-config libmicrohttpd-dev libjansson-dev libmsgpack-dev \
             libprotobuf-c-dev protobuf-c-compiler libpcre2-dev zlib1g-dev libssl-dev libc-ares-dev \
             libyajl-dev
DEB_TEST  := check python3 python3-msgpack python3-prometheus-client valgrind docker.io busybox-static openssl \
             debootstrap docker-registry strace tzdata ca-certificates iproute2
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_BUILD) $(DEB_TEST)

# Installs what is missing, so a fresh machine needs only `make test`.
check-deps:
	@missing=0; \
	for p in $(PKGS) check; do pkg-config --exists $$p || missing=1; done; \
	command -v protoc-c >/dev/null || missing=1; \
	$(PYTHON) -c 'import msgpack' 2>/dev/null || missing=1; \
	$(PYTHON) -c 'import prometheus_client' 2>/dev/null || missing=1; \
	for c in dockerd debootstrap docker-registry strace openssl ss; do \
	    command -v $$c >/dev/null || missing=1; done; \
	[ -f /usr/share/zoneinfo/Etc/UTC ] || missing=1; \
	[ -x /bin/busybox ] && /bin/busybox --list | grep -qx seq || missing=1; \
	if [ $$missing = 1 ]; then echo "make: installing missing dependencies"; $(MAKE) deps; fi

test: check-deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit integration e2e

unit: $(UNITS)
	$(Q)BUILD=$(BUILD) tests/run-unit.sh $(UNITS)

integration: $(BUILD)/fwdlogd $(SHIM)
	$(Q)FWDLOGD=$(abspath $(BUILD)/fwdlogd) FAULTSHIM=$(abspath $(SHIM)) \
	    $(PYTHON) tests/integration/run.py

# End-to-end: a private dockerd (unless FWDLOG_E2E_DOCKER_HOST names one to use), the
# plugin from plugin-local, the project's receiver on 127.0.0.1. See tests/e2e/run.py.
e2e: $(BUILD)/fwdlogd
	$(Q)SAN=$(SAN) $(PYTHON) tests/e2e/run.py

# The plugin as it is released: `make plugin` from the Dockerfile, pushed to a local
# registry (Debian's docker-registry on 127.0.0.1), `docker plugin install`ed, then the
# e2e suite against it, plus the check that both rootfs variants open the same files.
# Once per CI run (.ci/run), not under the sanitizers: the image builds its own fwdlogd.
release-test: check-deps
ifneq ($(SAN),)
	$(error release-test builds the plugin from the Dockerfile: run it without SAN)
endif
	$(Q)$(MAKE) --no-print-directory all
	$(Q)FWDLOG_E2E_PLUGIN=release $(PYTHON) tests/e2e/run.py

demo: check-deps all
	$(Q)SAN=$(SAN) $(PYTHON) tests/e2e/demo.py

# ---- managed plugin ---------------------------------------------------------------
# The plugin directory docker plugin create takes: config.json + rootfs/.
PLUGIN      ?= fwdlog
PLUGIN_DIR  := build/plugin
DOCKER      ?= docker

# The Dockerfile's base, debian:bookworm-slim. A daemon that lacks it (no registry
# reachable, as in CI's private dockerd) gets it made here: debootstrap's minbase, the
# variant Debian's own images start from, from this machine's Debian mirror, imported
# under that name. The tarball stays in build/base/ for the next daemon.
BASE_IMAGE    := debian:bookworm-slim
BASE_TAR      := build/base/bookworm-minbase.tar
DEBIAN_MIRROR ?= $(or $(shell cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '($$1 == "URIs:" || $$1 == "deb") { \
    for (i = 2; i <= NF; i++) if ($$i ~ /^https?:\/\/.*\/debian\/?$$/) { print $$i; exit } }'), \
    http://deb.debian.org/debian)

$(BASE_TAR):
	@if [ "$$(id -u)" != 0 ]; then echo "debootstrap needs root (or: docker pull $(BASE_IMAGE))"; \
	    exit 1; fi
	@mkdir -p $(dir $@) && rm -rf $(dir $@)root
	@echo "  DEBOOTSTRAP bookworm minbase from $(DEBIAN_MIRROR)"
	$(Q)debootstrap --variant=minbase bookworm $(dir $@)root $(DEBIAN_MIRROR) \
	    >$(dir $@)debootstrap.log 2>&1 || { tail -20 $(dir $@)debootstrap.log; exit 1; }
	$(Q)tar -C $(dir $@)root --exclude='./var/cache/apt/archives/*.deb' \
	    --exclude='./var/cache/apt/*.bin' --exclude='./var/lib/apt/lists/*_*' \
	    --exclude='./usr/share/man/*' --exclude='./usr/share/locale/*' \
	    --exclude='./usr/share/info/*' -cf $@.tmp . && mv $@.tmp $@
	$(Q)rm -rf $(dir $@)root

base-image:
	$(Q)if ! $(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory $(BASE_TAR) && \
	    $(DOCKER) import - $(BASE_IMAGE) <$(BASE_TAR) >/dev/null; fi

# From the Dockerfile (multi-stage): the rootfs users get. --network host: the build's
# apt-get needs the host's network (a daemon may run with its bridge off).
# PLUGIN names the plugin created, e.g. REGISTRY/fwdlog:TAG for plugin-push.
plugin: base-image
	rm -rf $(PLUGIN_DIR) && mkdir -p $(PLUGIN_DIR)/rootfs
	$(DOCKER) build --network host --build-arg VERSION=$(VERSION) -t fwdlog:rootfs .
	$(DOCKER) rm -vf fwdlog-rootfs >/dev/null 2>&1 || true
	$(DOCKER) create --name fwdlog-rootfs fwdlog:rootfs true
	$(DOCKER) export fwdlog-rootfs | tar -x -C $(PLUGIN_DIR)/rootfs
	$(DOCKER) rm -vf fwdlog-rootfs
	cp config.json $(PLUGIN_DIR)/
	$(MAKE) --no-print-directory plugin-create

plugin-push:
	$(DOCKER) plugin push $(PLUGIN)

# The same layout from the host build: fwdlogd, the shared libraries ldd resolves for it
# (symlinks dereferenced) and the dynamic loader, and what is loaded or read at run time
# that ldd never lists, as Debian's image has it: libgcc_s (glibc's pthread_exit and
# pthread_cancel dlopen it), Debian's default nsswitch.conf (hosts: files dns), host.conf,
# UTC as localtime, OpenSSL's openssl.cnf, the CA bundle and an ld.so.cache. dockerd
# bind-mounts /etc/hosts and /etc/resolv.conf into a plugin. tests/e2e/rootfs.py checks
# that this rootfs and the Dockerfile's open the same files. No docker build.
PLUGIN_DLOPEN := libgcc_s.so.1
plugin-rootfs-local: $(BUILD)/fwdlogd
	$(Q)rm -rf $(PLUGIN_DIR) && mkdir -p $(PLUGIN_DIR)/rootfs/usr/bin \
	    $(PLUGIN_DIR)/rootfs/run/docker/plugins $(PLUGIN_DIR)/rootfs/run/docker/logging \
	    $(PLUGIN_DIR)/rootfs/etc/ssl/certs $(PLUGIN_DIR)/rootfs/usr/lib/ssl \
	    $(PLUGIN_DIR)/rootfs/etc/fwdlog $(PLUGIN_DIR)/rootfs/tmp
	$(Q)cp $(BUILD)/fwdlogd $(PLUGIN_DIR)/rootfs/usr/bin/fwdlogd
	$(Q)for lib in $$(ldd $(BUILD)/fwdlogd | awk '$$2 == "=>" && $$3 ~ /^\// {print $$3} \
	        $$1 ~ /^\// {print $$1}'); do \
	    mkdir -p $(PLUGIN_DIR)/rootfs$$(dirname $$lib) && cp -L $$lib $(PLUGIN_DIR)/rootfs$$lib \
	    || exit 1; done
	$(Q)libdir=$$(dirname $$(ldd $(BUILD)/fwdlogd | awk '$$1 == "libc.so.6" {print $$3}')) && \
	    for so in $(PLUGIN_DLOPEN); do cp -L $$libdir/$$so $(PLUGIN_DIR)/rootfs$$libdir/ || exit 1; done
	$(Q)cp -L /etc/ssl/certs/ca-certificates.crt $(PLUGIN_DIR)/rootfs/etc/ssl/certs/
	$(Q)cp -L /usr/lib/ssl/openssl.cnf $(PLUGIN_DIR)/rootfs/usr/lib/ssl/
	$(Q)cp /usr/share/libc-bin/nsswitch.conf /etc/host.conf $(PLUGIN_DIR)/rootfs/etc/
	$(Q)cp -L /usr/share/zoneinfo/Etc/UTC $(PLUGIN_DIR)/rootfs/etc/localtime
	$(Q)ldconfig -r $(PLUGIN_DIR)/rootfs
	$(Q)cp config.json $(PLUGIN_DIR)/
	@echo "  PLUGIN  $(PLUGIN_DIR) ($$(du -sh $(PLUGIN_DIR) | cut -f1))"

plugin-local: plugin-rootfs-local
	$(Q)$(MAKE) --no-print-directory plugin-create

plugin-create:
	$(Q)$(DOCKER) plugin rm -f $(PLUGIN) >/dev/null 2>&1 || true
	$(DOCKER) plugin create $(PLUGIN) $(PLUGIN_DIR)

# --timeout 0: the CLI's default of 30 s becomes the HTTP timeout of every call to the
# plugin, until dockerd restarts (moby plugin manager); 0 matches docker plugin install.
plugin-enable:
	$(DOCKER) plugin enable --timeout 0 $(PLUGIN)
plugin-disable:
	$(DOCKER) plugin disable $(if $(FORCE),-f) $(PLUGIN)
plugin-rm:
	$(DOCKER) plugin rm -f $(PLUGIN)

valgrind: $(UNITS)
	$(Q)for t in $(UNITS); do CK_FORK=no valgrind -q --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite $$t || exit 1; done

# make fuzz: every tests/fuzz/fuzz_*.c target for FUZZ_SECONDS (30) each, clang's
# libFuzzer with ASan+UBSan. Each run starts from tests/fuzz/corpus/<target> and works
# in build/fuzz-corpus/<target>; then what it found that reaches code the corpus did
# not is merged into tests/fuzz/corpus/<target> (-merge=1 adds only those inputs), so
# the corpus grows with coverage, not with every input tried: commit it. A crash stops
# the run, its input is left as build/fuzz-crash/<target>-crash-*.
# Debian 12: clang alone lacks the fuzzer runtime (libclang-rt is only recommended).
DEB_FUZZ := clang libclang-rt-dev
FUZZ_SECONDS ?= 30
FUZZ_BUILD := build/fuzzer$(comma)address$(comma)undefined
fuzz-deps:
	$(Q)if ! command -v clang >/dev/null || \
	    ! ls "$$(clang --print-runtime-dir 2>/dev/null)"/libclang_rt.fuzzer-*.a >/dev/null 2>&1; \
	then echo "make: installing $(DEB_FUZZ) for make fuzz"; \
	    if [ "$$(id -u)" != 0 ]; then echo "make fuzz-deps: run as root (apt-get)"; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_FUZZ); fi

fuzz: fuzz-deps
	$(Q)$(MAKE) --no-print-directory CC=clang SAN=fuzzer,address,undefined \
	    $(addprefix $(FUZZ_BUILD)/fuzz/,$(FUZZERS))
	$(Q)mkdir -p build/fuzz-crash
	$(Q)for f in $(FUZZERS); do rm -rf build/fuzz-corpus/$$f; \
	    mkdir -p build/fuzz-corpus/$$f tests/fuzz/corpus/$$f; \
	    echo "  FUZZ    $$f ($(FUZZ_SECONDS) s)"; \
	    $(FUZZ_BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz-crash/$$f- build/fuzz-corpus/$$f tests/fuzz/corpus/$$f \
	        >build/fuzz-corpus/$$f.log 2>&1 || { tail -40 build/fuzz-corpus/$$f.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|new_units_added)' build/fuzz-corpus/$$f.log \
	        | tr '\n' ' '; echo; \
	    before=$$(ls tests/fuzz/corpus/$$f | wc -l); \
	    $(FUZZ_BUILD)/fuzz/$$f -merge=1 tests/fuzz/corpus/$$f build/fuzz-corpus/$$f \
	        >build/fuzz-corpus/$$f.merge.log 2>&1 || { tail -20 build/fuzz-corpus/$$f.merge.log; exit 1; }; \
	    echo "          corpus tests/fuzz/corpus/$$f: $$before -> $$(ls tests/fuzz/corpus/$$f | wc -l) inputs"; \
	    done

# make bench: not part of make test (it takes minutes and wants an idle machine).
BENCH_DEB := gnuplot-nox
bench-deps:
	$(Q)command -v gnuplot >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_DEB); }

bench: bench-deps $(BUILD)/fwdlogd $(BUILD)/bench/framegen $(BUILD)/bench/sink $(BUILD)/bench/parsecost
	$(Q)BUILD=$(BUILD) $(PYTHON) tests/bench/run.py $(BENCH_ARGS)

$(BUILD)/bench/framegen: tests/bench/framegen.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

$(BUILD)/bench/parsecost: tests/bench/parsecost.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

$(BUILD)/bench/sink: tests/bench/sink.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

FMT_FILES := $(wildcard driver/*.c include/*.h tests/unit/*.c tests/fuzz/*.c tests/bench/*.c) \
             tests/faultshim.c
format:
	clang-format -i $(FMT_FILES)
format-check:
	clang-format --dry-run -Werror $(FMT_FILES)
lint: $(GEN)/entry.pb-c.h
	cppcheck -q --enable=warning,performance,portability --error-exitcode=1 \
	    --suppress=missingIncludeSystem -Iinclude -I$(GEN) driver/
	clang-tidy -quiet $(SRCS) -- $(CFLAGS) 2>/dev/null | (! grep -E 'warning|error')

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(UNITS:=.d)
