# SPDX-License-Identifier: MIT
#
# pycds: the one entry point.
#
#   make            build the runtime extension, the tools and the tests
#   make check      install missing packages, build, run every test (TAP)
#   make install    install binaries and man pages under PREFIX and _pycds
#                   into PYTHON
#   make demo       mount /run/pycds, build an archive, compare a workload
#   make bench      stock against pycds, alternating, ratio of medians
#   make bench-memory  PSS and copied pages of 16 concurrent processes
#   make fuzz       libFuzzer over the validator (FUZZ_TIME seconds)
#   make conformance   CPython's own tests, stock and from an archive
#
# PYTHON selects the interpreter (default /usr/bin/python3); V=1 is verbose.

PYTHON ?= /usr/bin/python3

# A distribution interpreter this host does not have (trixie's python3.13,
# sid's python3.14 and python3.15): every goal runs in that Debian's
# chroot, built when missing (tools/chroot.sh).  CHROOT=SUITE forces one.
CHROOT ?= $(if $(wildcard $(PYTHON)),,$(shell sh tools/chroot.sh suite $(PYTHON)))
ifneq ($(CHROOT),)
GOALS := $(or $(MAKECMDGOALS),all)
$(firstword $(GOALS)):
	sh tools/chroot.sh run $(CHROOT) $(MAKE) --no-print-directory $(GOALS) $(MAKEOVERRIDES) PYTHON=$(PYTHON) CHROOT=
$(wordlist 2,99,$(GOALS)):
	@:
.PHONY: $(GOALS)
else

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= gcc

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Facts about the target interpreter, asked once: its include directory,
# extension suffix and site directory, and its identity.  Objects depend
# on the interpreter's headers, so each interpreter gets a build directory
# of its own, named after what it reports (cache tag, ABI flags, version)
# and a hash of its real path, version string and include directory: two
# venvs of different versions, or a pyenv and a Debian interpreter with
# the same file name, never share objects.
PY_FACTS := $(shell $(PYTHON) -c 'import hashlib, os, sys, sysconfig as s; inc = s.get_paths()["include"]; real = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable); ident = "\0".join((real, sys.version, inc, sys.abiflags)); print(inc, s.get_config_var("EXT_SUFFIX"), s.get_paths()["purelib"], "%s%s-%d.%d.%d-%s" % (sys.implementation.cache_tag, sys.abiflags, *sys.version_info[:3], hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:8]), "%d.%d" % sys.version_info[:2], real, s.get_config_var("LIBDIR") or "-", s.get_config_var("LDVERSION") or "-", s.get_config_var("LIBS") or "", s.get_config_var("SYSLIBS") or "")' 2>/dev/null)
PY_INCLUDE := $(word 1,$(PY_FACTS))
EXT_SUFFIX := $(word 2,$(PY_FACTS))
PY_SITE := $(word 3,$(PY_FACTS))
PY_IDENT := $(or $(word 4,$(PY_FACTS)),unknown)
PY_MM := $(word 5,$(PY_FACTS))
PY_REAL := $(word 6,$(PY_FACTS))
# Linking libpython into a test program (tests/writer_test.c).
PY_LIBDIR := $(word 7,$(PY_FACTS))
PY_EMBED_LIBS := -L$(PY_LIBDIR) -Wl,-rpath,$(PY_LIBDIR) -lpython$(word 8,$(PY_FACTS)) \
	$(wordlist 9,100,$(PY_FACTS))
BUILD ?= build/$(PY_IDENT)

WERROR ?= -Werror
CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra $(WERROR) -std=gnu11 -fno-strict-aliasing -MMD -MP
CPPFLAGS += -Iinclude
# The release: pycds --version, the man pages, the Debian packages.
PYCDS_VERSION := 0.5.0
CPPFLAGS += -DPYCDS_VERSION='"$(PYCDS_VERSION)"'
XXHASH_LIBS :=
# On x86-64 a second build of XXH3 with the AVX2 kernel, chosen at run time.
ifeq ($(shell uname -m),x86_64)
XXH_SRCS := userspace/lib/xxh_avx2.c
CPPFLAGS += -DPYCDS_XXH_AVX2
endif
# libpycds.a: the archive format in plain C (no Python.h), linked into the
# extension, the loader, the tools and the tests.  Position-independent
# and hidden, so the same objects serve the shared extension.
LIB_SRCS := userspace/lib/header.c userspace/lib/module.c \
	    userspace/lib/file.c userspace/lib/sum.c userspace/lib/table.c \
	    userspace/lib/health.c \
	    $(XXH_SRCS)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/lib/%.o)
LIB := $(BUILD)/libpycds.a
READER_OBJS := $(LIB)

EXT := $(BUILD)/_pycds$(EXT_SUFFIX)
RUNTIME_SRCS := $(addprefix userspace/runtime/,module.c interp.c session.c \
		map.c memory.c names.c prepare.c loader.c finder.c prefetch.c layout.c)
WRITER_SRCS := $(addprefix userspace/writer/,writer.c emit.c place.c assemble.c \
		record.c)
EXT_SRCS := $(RUNTIME_SRCS) $(WRITER_SRCS)
EXT_OBJS := $(EXT_SRCS:%.c=$(BUILD)/ext/%.o)

TOOL := $(BUILD)/pycds
TOOL_OBJS := $(addprefix $(BUILD)/obj/tools/pycds/,pycds.o build.o recipe.o) $(READER_OBJS)

LOADER := $(BUILD)/pycds-loader
LOADER_OBJS := $(BUILD)/obj/loader/pycds-loader.o $(BUILD)/obj/loader/stage.o \
	       $(BUILD)/obj/loader/heal.o \
	       $(READER_OBJS)
URING_LIBS := $(shell pkg-config --libs liburing 2>/dev/null || echo -luring)
# Linked into _pycds statically: every Python process loads it, and one
# more shared library would cost each of them a lookup and a mapping.
URING_STATIC := -Wl,-Bstatic -luring -Wl,-Bdynamic

TOP := $(BUILD)/pycds-top
BPF_CLANG ?= clang
BPFTOOL ?= bpftool
VMLINUX := $(BUILD)/vmlinux.h
TOP_SKEL := $(BUILD)/pycdstop.skel.h
TOP_LIBS := $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf -lelf -lz) \
	    $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw) \
	    $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) -lpthread

KSFT_DIR := $(BUILD)/kselftest
KSFT_HDR := $(KSFT_DIR)/kselftest_harness.h
KSFT_TARBALL := /usr/src/linux-source-6.1.tar.xz
# The harness's fixtures take unused arguments, and newer compilers see
# its setjmp-based teardown as clobbering locals it never reads after.
KSFT_CFLAGS := -Wno-unused-parameter -Wno-clobbered

C_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/*_test.c))

# Man pages, from Documentation/ (tools/mkman.py: docutils' manpage
# writer); one set for every interpreter.
MAN_DIR := build/man
MAN_SRC_pycds.1 := pycds.rst
MAN_SRC_pycds-loader.8 := pycds-loader.rst
MAN_SRC_pycds-top.8 := pycds-top.rst
MAN_SRC_pycds-archive.5 := archive-format.rst
MAN := $(addprefix $(MAN_DIR)/,pycds.1 pycds-loader.8 pycds-top.8 pycds-archive.5)
MKMAN_PYTHON ?= /usr/bin/python3

VENV := $(BUILD)/venv
VENV_PY := $(VENV)/bin/python
STAGED := $(VENV)/.staged

all: $(EXT) $(TOOL) $(LOADER) $(TOP) $(BUILD)/pycds_build.py $(BUILD)/bench-pages \
	$(BUILD)/bench-occupy.so $(MAN)

.SECONDEXPANSION:
$(MAN): $(MAN_DIR)/%: Documentation/$$(MAN_SRC_$$*) tools/mkman.py
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  MAN     $@")
	$(Q)$(MKMAN_PYTHON) tools/mkman.py --version $(PYCDS_VERSION) $@ $<

man: $(MAN)

$(BUILD)/bench-pages: tools/bench_pages.c $(READER_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(XXHASH_LIBS) -o $@

$(BUILD)/bench-occupy.so: tools/bench_occupy.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -fPIC -shared $< -o $@

$(BUILD)/ext/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -Iuserspace -I$(PY_INCLUDE) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

# _pycds is loaded by every process that names an archive: one R+X and one
# RW segment instead of four (code apart from headers and read-only data)
# is two mmap() calls and two page faults fewer at start-up, measured with
# `perf stat -e minor-faults python3 -c pass`.
EXT_LDFLAGS := -Wl,-z,noseparate-code

$(EXT): $(EXT_OBJS) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(EXT_LDFLAGS) $(LDFLAGS) $^ $(XXHASH_LIBS) $(URING_STATIC) -o $@

$(BUILD)/lib/userspace/lib/xxh_avx2.o: CFLAGS += -mavx2

$(BUILD)/lib/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(LIB): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(TOOL): $(TOOL_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(XXHASH_LIBS) -o $@

$(LOADER): $(LOADER_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(URING_LIBS) -o $@

# BPF: vmlinux.h from the running kernel's BTF, CO-RE object, skeleton.
$(VMLINUX):
	@mkdir -p $(BUILD)
	@echo "  GEN     $@"
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(BUILD)/pycdstop.bpf.o: bpf/pycdstop.bpf.c include/pycds/probes.h $(VMLINUX)
	@echo "  BPF     $@"
	$(Q)$(BPF_CLANG) -g -O2 -target bpf -D__TARGET_ARCH_x86 -I$(BUILD) \
		-Iinclude -I/usr/include/$(shell $(CC) -dumpmachine) -c $< -o $@

$(TOP_SKEL): $(BUILD)/pycdstop.bpf.o
	@echo "  SKEL    $@"
	$(Q)$(BPFTOOL) gen skeleton $< > $@

TOP_OBJS := $(addprefix $(BUILD)/obj/tools/top/,main.o metrics.o procs.o)
$(BUILD)/obj/tools/top/main.o: $(TOP_SKEL)
$(BUILD)/obj/tools/top/main.o: CPPFLAGS += -I$(BUILD)

$(TOP): $(TOP_OBJS) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(TOP_LIBS) $(XXHASH_LIBS) -o $@

$(BUILD)/pycds_build.py: tools/pycds_build.py
	@mkdir -p $(BUILD)
	$(Q)cp $< $@

# The kselftest harness comes from Debian's kernel source at build time.
$(KSFT_HDR):
	@mkdir -p $(KSFT_DIR)
	@test -r $(KSFT_TARBALL) || { echo "missing $(KSFT_TARBALL): run 'make deps' as root"; exit 1; }
	@echo "  EXTRACT kselftest harness"
	$(Q)tar -xJf $(KSFT_TARBALL) -C $(KSFT_DIR) --strip-components=4 \
		linux-source-6.1/tools/testing/selftests/kselftest_harness.h \
		linux-source-6.1/tools/testing/selftests/kselftest.h

$(BUILD)/tests/%: tests/%.c $(READER_OBJS) $(KSFT_HDR)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -I$(KSFT_DIR) $(CFLAGS) $(KSFT_CFLAGS) \
		$< $(READER_OBJS) $(XXHASH_LIBS) -o $@

# The loader's staging, with liburing.
$(BUILD)/tests/loader_test: tests/loader_test.c $(BUILD)/obj/loader/stage.o $(READER_OBJS) $(KSFT_HDR)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -Iloader -I$(KSFT_DIR) $(CFLAGS) $(KSFT_CFLAGS) \
		$< $(BUILD)/obj/loader/stage.o $(READER_OBJS) $(URING_LIBS) -o $@

# The writer in an embedded interpreter: the extension's objects linked
# in, with libpython.
$(BUILD)/tests/writer_test: tests/writer_test.c $(EXT_OBJS) $(LIB) $(KSFT_HDR)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -Iuserspace -I$(PY_INCLUDE) -I$(KSFT_DIR) $(CFLAGS) \
		$(KSFT_CFLAGS) -Wno-missing-field-initializers \
		-DPYCDS_TEST_PYTHON='"$(PY_REAL)"' \
		$< $(EXT_OBJS) $(LIB) $(XXHASH_LIBS) $(URING_STATIC) \
		$(PY_EMBED_LIBS) -o $@

# A private venv of PYTHON with _pycds and its hook, so tests exercise the
# real PYCDS_ARCHIVE start-up path without touching the system.
$(STAGED): $(EXT) userspace/00-pycds.pth
	$(Q)test -x $(VENV_PY) || $(PYTHON) -m venv --without-pip --system-site-packages $(VENV)
	$(Q)site=$$($(VENV_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
		rm -f $$site/pycds.pth && cp $(EXT) userspace/00-pycds.pth $$site/
	$(Q)touch $@

stage: $(STAGED)

TEST_ENV = PYCDS=$(abspath $(TOOL)) PYCDS_PYTHON=$(abspath $(VENV_PY)) \
	   PYCDS_LOADER=$(abspath $(LOADER)) PYCDS_TOP=$(abspath $(TOP)) \
	   PYCDS_WORKLOADS=$(abspath tests/workloads) \
	   PYCDS_TMPDIR=$(abspath $(BUILD)/tmp)

# Targets that install packages first go on in a new make: installing
# may upgrade the interpreter, and the build directory is named after it.
check: deps
	@$(MAKE) --no-print-directory check-run

check-run:
	$(PYTHON) tools/mkpth.py --check
	$(MAKE) all tests stage
	@mkdir -p $(BUILD)/tmp
	$(TEST_ENV) prove -v $(C_TESTS)
	@if ls tests/py/test_*.py >/dev/null 2>&1; then \
		$(TEST_ENV) prove -v --exec $(PYTHON) tests/py/test_*.py; fi
	$(MAKE) fuzz-smoke

tests: $(C_TESTS) $(BUILD)/format-layout

# The format's layout as JSON, for the Python tests (tests/py/pycdslib.py).
$(BUILD)/format-layout: tests/format_layout.c include/pycds/archive.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@

# libFuzzer over the validator, with real archives as the seed corpus.
FUZZ := $(BUILD)/archive_fuzz
FUZZ_TIME ?= 1800
FUZZ_CORPUS := $(BUILD)/fuzz-corpus

$(FUZZ): tests/fuzz/archive_fuzz.c $(LIB_SRCS) include/pycds/reader.h include/pycds/archive.h include/pycds/sum.h
	@mkdir -p $(BUILD)
	@echo "  FUZZ    $@"
	$(Q)clang -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -DPYCDS_CHECK_BOTH -Iinclude $(filter %.c,$^) -o $@

$(FUZZ_CORPUS)/.seeded: $(TOOL) $(STAGED)
	@mkdir -p $(FUZZ_CORPUS)
	$(Q)for m in keyword json; do \
		PYTHONNOUSERSITE=1 $(TOOL) build -o $(FUZZ_CORPUS)/$$m.pycds --python /usr/bin/python3.11 -m $$m >/dev/null 2>&1 || \
		$(TOOL) build -o $(FUZZ_CORPUS)/$$m.pycds --python $(abspath $(VENV_PY)) -m $$m >/dev/null || exit 1; \
	done
	$(Q)touch $@

fuzz: $(FUZZ) $(FUZZ_CORPUS)/.seeded
	$(FUZZ) -max_total_time=$(FUZZ_TIME) -max_len=4194304 -timeout=10 \
		-print_final_stats=1 $(FUZZ_CORPUS) 2>&1 | tail -25

fuzz-smoke: $(FUZZ) $(FUZZ_CORPUS)/.seeded
	$(Q)mkdir -p $(BUILD)/fuzz-smoke
	$(FUZZ) -max_total_time=$(or $(FUZZ_SMOKE_TIME),60) -max_len=4194304 \
		-timeout=10 -artifact_prefix=$(BUILD)/ $(BUILD)/fuzz-smoke $(FUZZ_CORPUS) \
		> $(BUILD)/fuzz-smoke.log 2>&1 \
		&& echo "ok - fuzz smoke run ($(or $(FUZZ_SMOKE_TIME),60) s) found no crash" \
		|| { tail -30 $(BUILD)/fuzz-smoke.log; exit 1; }

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pycds
	install -m 0755 $(TOOL) $(DESTDIR)$(PREFIX)/bin/pycds
	install -m 0755 $(LOADER) $(DESTDIR)$(PREFIX)/bin/pycds-loader
	install -m 0755 $(TOP) $(DESTDIR)$(PREFIX)/bin/pycds-top
	install -m 0644 tools/pycds_build.py $(DESTDIR)$(PREFIX)/lib/pycds/
	install -d $(DESTDIR)$(PY_SITE)
	install -m 0644 $(EXT) $(DESTDIR)$(PY_SITE)/
	install -m 0644 userspace/00-pycds.pth $(DESTDIR)$(PY_SITE)/00-pycds.pth
	for m in $(MAN); do \
		d=$(DESTDIR)$(PREFIX)/share/man/man$${m##*.}; \
		install -d $$d && install -m 0644 $$m $$d/; \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/pycds $(DESTDIR)$(PREFIX)/bin/pycds-loader $(DESTDIR)$(PREFIX)/bin/pycds-top $(DESTDIR)$(PREFIX)/lib/pycds/pycds_build.py
	rm -f $(DESTDIR)$(PY_SITE)/_pycds$(EXT_SUFFIX) $(DESTDIR)$(PY_SITE)/00-pycds.pth
	for m in $(notdir $(MAN)); do \
		rm -f $(DESTDIR)$(PREFIX)/share/man/man$${m##*.}/$$m; \
	done

# Debian packages everything needs.
# For a Debian interpreter, its own -dev, -venv and test suite packages;
# the kselftest harness from Debian 12's kernel source unless it is there
# already (a chroot has the host's bound in).
DEB_PY := $(if $(and $(PY_MM),$(filter /usr/bin/%,$(PY_REAL))),python$(PY_MM)-dev \
	python$(PY_MM)-venv libpython$(PY_MM)-testsuite,python3-dev python3.11-venv \
	libpython3.11-testsuite)
DEB_PACKAGES := $(DEB_PY) libxxhash-dev xxhash liburing-dev \
	libbpf-dev libelf-dev zlib1g-dev bpftool clang llvm hyperfine tmux \
	prometheus curl bindfs $(if $(wildcard $(KSFT_TARBALL)),,linux-source-6.1) \
	systemtap-sdt-dev libncurses-dev libmicrohttpd-dev pkg-config \
	python3-docutils man-db python3-requests python3-jinja2 python3-rich perl \
	debhelper lintian fakeroot dpkg-dev debootstrap

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null || \
			{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
		else \
			echo "missing Debian packages (run 'make deps' as root): $$missing"; exit 1; \
		fi; \
	fi

# Debian packages (pycds, python3-pycds) for /usr/bin/python3, with the
# packaging files of contrib/debian, in build/deb; lintian must pass them.
DEB_DIR := build/deb
DEB_SRC := $(DEB_DIR)/pycds-$(PYCDS_VERSION)
deb: deps
	@$(MAKE) --no-print-directory deb-run

deb-run:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	if [ -d .git ]; then git ls-files -z | xargs -0 cp --parents -t $(DEB_SRC); \
	else tar -c --exclude=./build . | tar -x -C $(DEB_SRC); fi
	rm -rf $(DEB_SRC)/debian && cp -r contrib/debian $(DEB_SRC)/debian
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
		{ tail -40 ../build.log; exit 1; }
	lintian --fail-on error,warning $(DEB_DIR)/*.changes
	@ls $(DEB_DIR)/*.deb

demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run:
	$(MAKE) all stage
	PYCDS=$(abspath $(TOOL)) PYCDS_PYTHON=$(abspath $(VENV_PY)) \
		PYCDS_LOADER=$(abspath $(LOADER)) PYCDS_TOP=$(abspath $(TOP)) \
		sh tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory bench-run

bench-run:
	$(MAKE) all stage
	PYCDS=$(abspath $(TOOL)) PYCDS_PYTHON=$(abspath $(VENV_PY)) \
		PYCDS_WORKLOADS=$(abspath tests/workloads) \
		PYCDS_LOADER=$(abspath $(LOADER)) PYCDS_TOP=$(abspath $(TOP)) \
		PYCDS_BENCH_PAGES=$(abspath $(BUILD)/bench-pages) \
		PYCDS_BENCH_OCCUPY_SO=$(abspath $(BUILD)/bench-occupy.so) \
		$(PYTHON) tools/bench.py --out $(BUILD)/bench

bench-memory: deps
	@$(MAKE) --no-print-directory bench-memory-run

bench-memory-run:
	$(MAKE) all stage
	PYCDS=$(abspath $(TOOL)) PYCDS_PYTHON=$(abspath $(VENV_PY)) \
		PYCDS_WORKLOADS=$(abspath tests/workloads) \
		PYCDS_LOADER=$(abspath $(LOADER)) \
		$(PYTHON) tools/bench_memory.py --out $(BUILD)/bench-memory

# CPython's own tests: stock, recorded by pycds build, and from the archive
# (Debian's test suite package; installing it may upgrade the interpreter
# to its version).  A subset by default; CONFORMANCE=--all for the whole
# suite, or CONFORMANCE="test_x test_y".
conformance: deps
	@$(MAKE) --no-print-directory conformance-run

conformance-run:
	$(MAKE) all stage
	PYCDS=$(abspath $(TOOL)) PYCDS_PYTHON=$(abspath $(VENV_PY)) \
		$(PYTHON) tools/conformance.py --out $(BUILD)/conformance $(CONFORMANCE)

# Only the extension, for PYTHON (tests build one for another interpreter).
ext: $(EXT)

# Where the build for PYTHON lives (for scripts: make -s builddir).
builddir:
	@echo $(BUILD)

clean:
	rm -rf build build-*

.PHONY: deb deb-run check-run demo-run bench-run bench-memory-run conformance-run
.PHONY: man ext builddir all check tests install uninstall deps demo bench bench-memory clean stage fuzz fuzz-smoke conformance

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

endif # CHROOT
