# fwdlog - Docker logging driver plugin shipping to Fluentd / Fluent Bit (Forward protocol).
#
#   make                  build build/fwdlogd
#   make test             build and run every test (installs missing deps first)
#   make SAN=address,undefined test   the same with sanitizers, in build/address,undefined/
#   make ERR=1            warnings are errors (CI)
#   make deps             install build and test dependencies (Debian 12, as root)
#   make valgrind         unit tests under valgrind
#   make fuzz             build the libFuzzer targets (clang) and run each briefly
#   make format / format-check / lint
#   V=1                   show full command lines

CC      ?= cc
PYTHON  ?= /usr/bin/python3
SAN     ?=
comma   := ,
BUILD   := build$(if $(SAN),/$(SAN))
GEN     := $(BUILD)/gen
PKGS    := libmicrohttpd jansson msgpack libprotobuf-c libpcre2-8
VERSION := 0.1.0

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef \
        -Wnull-dereference -Wwrite-strings -Wvla
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong $(WARN) \
          -MMD -MP -Iinclude -I$(GEN) -DFWD_VERSION='"$(VERSION)"' \
          $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
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

.PHONY: all deps check-deps test unit integration e2e valgrind fuzz format format-check lint clean
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

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(LIBOBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags check) $(LDFLAGS) -o $@ $< $(LIBOBJS) \
	    $(LDLIBS) $(shell pkg-config --libs check)

# Debian 12 packages for building, testing and the end-to-end suite.
DEB_BUILD := build-essential pkg-config libmicrohttpd-dev libjansson-dev libmsgpack-dev \
             libprotobuf-c-dev protobuf-c-compiler libpcre2-dev
DEB_TEST  := check python3 python3-msgpack valgrind
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
	if [ $$missing = 1 ]; then echo "make: installing missing dependencies"; $(MAKE) deps; fi

test: check-deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit integration

unit: $(UNITS)
	$(Q)BUILD=$(BUILD) tests/run-unit.sh $(UNITS)

integration: $(BUILD)/fwdlogd
	$(Q)FWDLOGD=$(abspath $(BUILD)/fwdlogd) $(PYTHON) tests/integration/run.py

valgrind: $(UNITS)
	$(Q)for t in $(UNITS); do CK_FORK=no valgrind -q --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite $$t || exit 1; done

fuzz:
	$(Q)$(MAKE) --no-print-directory CC=clang SAN=fuzzer,address,undefined \
	    $(addprefix build/fuzzer$(comma)address$(comma)undefined/fuzz/,$(FUZZERS))
	$(Q)for f in $(FUZZERS); do mkdir -p build/fuzz-corpus/$$f; \
	    build/fuzzer,address,undefined/fuzz/$$f -max_total_time=$${FUZZ_SECONDS:-20} \
	    build/fuzz-corpus/$$f tests/fuzz/corpus/$$f || exit 1; done

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

FMT_FILES := $(wildcard driver/*.c include/*.h tests/unit/*.c tests/fuzz/*.c)
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
