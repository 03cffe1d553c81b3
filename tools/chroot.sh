#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Debian chroots for the test matrix: the distributions' own interpreters
# (trixie's python3.13, sid's python3.14 and python3.15), and a clean
# Debian 12 (bookworm) for installing the packages, built with
# debootstrap from the archive apt already uses, cached, refreshed, and
# entered with what the tests need (the tree at the same path, /proc,
# /sys, /dev, a private /run and /tmp, BPF and tracefs).
#
#   chroot.sh create SUITE        build it if missing (minbase + packages)
#   chroot.sh refresh SUITE       apt-get update and upgrade inside it
#   chroot.sh run SUITE CMD...    run CMD inside it (in a private mount
#                                 namespace: nothing stays mounted)
#   chroot.sh suite PYTHON        the suite that ships PYTHON, or nothing
#   chroot.sh path SUITE          where it lives
#
# PYCDS_CHROOTS (default /var/cache/pycds/chroots) holds them; MIRROR
# (default: the first deb.debian.org-style URI apt uses) is the archive.
set -eu

ROOT=${PYCDS_CHROOTS:-/var/cache/pycds/chroots}
TREE=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "chroot.sh: $*" >&2; exit 1; }

suite_of() {
	case "$(basename "$1")" in
	python3.13) echo trixie ;;
	python3.14|python3.15) echo sid ;;
	*) ;;
	esac
}

# What building and every test need, beyond minbase.  bookworm is the
# clean system the Debian packages are installed into and purged from
# (tests/py/test_deb.py): its python3 and man, nothing else.
packages() {
	case "$1" in
	trixie) pys="python3.13" ;;
	sid) pys="python3.14 python3.15" ;;
	bookworm) echo "python3 man-db"; return ;;
	*) die "unknown suite $1 (trixie, sid or bookworm)" ;;
	esac
	echo "make gcc libc6-dev pkg-config binutils xz-utils ca-certificates \
	      libxxhash-dev xxhash liburing-dev libbpf-dev libelf-dev zlib1g-dev \
	      bpftool clang llvm systemtap-sdt-dev libncurses-dev \
	      libmicrohttpd-dev perl curl prometheus bindfs procps util-linux \
	      hyperfine tmux libclang-rt-dev python3-docutils man-db \
	      python3-requests python3-jinja2 python3-rich"
	for p in $pys; do
		echo "$p $p-dev $p-venv lib$p-testsuite"
	done
}

mirror() {
	if [ -n "${MIRROR:-}" ]; then echo "$MIRROR"; return; fi
	m=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\{0,1\}$/\1/p' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ { print $2; exit }' \
		/etc/apt/sources.list 2>/dev/null)
	echo "${m:-http://deb.debian.org/debian}"
}

# apt inside the chroot: sid's Release file may be past its Valid-Until.
APT_OPTS="-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false \
	  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

in_chroot() {
	dir=$1; shift
	DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
		chroot "$dir" "$@"
}

create() {
	suite=$1
	dir=$ROOT/$suite
	pk=$(packages "$suite")
	if [ -f "$dir/.pycds-ready" ] && [ "$(cat "$dir/.pycds-ready")" = "$(echo $pk)" ]; then
		return 0
	fi
	[ "$(id -u)" = 0 ] || die "building a chroot needs root"
	command -v debootstrap >/dev/null || {
		echo "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			debootstrap >/dev/null
	}
	if [ ! -x "$dir/usr/bin/apt-get" ]; then
		echo "debootstrap $suite into $dir (minbase, from $(mirror))"
		rm -rf "$dir.new"
		mkdir -p "$ROOT"
		debootstrap --variant=minbase "$suite" "$dir.new" "$(mirror)" \
			> "$ROOT/$suite.debootstrap.log" 2>&1 ||
			{ tail -20 "$ROOT/$suite.debootstrap.log" >&2; die "debootstrap $suite failed"; }
		rm -rf "$dir"
		mv "$dir.new" "$dir"
	fi
	echo "installing into $suite: $(echo $pk)"
	# No services start inside the chroot.
	printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
	chmod 0755 "$dir/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
	# shellcheck disable=SC2086
	in_chroot "$dir" apt-get $APT_OPTS -qq update >/dev/null
	# shellcheck disable=SC2086
	in_chroot "$dir" apt-get $APT_OPTS -y -qq install $pk \
		> "$ROOT/$suite.install.log" 2>&1 ||
		{ tail -20 "$ROOT/$suite.install.log" >&2; die "installing into $suite failed"; }
	in_chroot "$dir" apt-get clean
	echo $pk > "$dir/.pycds-ready"
}

refresh() {
	dir=$ROOT/$1
	[ -d "$dir" ] || { create "$1"; return; }
	# shellcheck disable=SC2086
	in_chroot "$dir" apt-get $APT_OPTS -qq update >/dev/null
	# shellcheck disable=SC2086
	in_chroot "$dir" apt-get $APT_OPTS -y -qq dist-upgrade >/dev/null
	in_chroot "$dir" apt-get clean
}

# Inside a private mount namespace: the tree at its own path, the
# kernel's file systems, the host's kselftest source, a tmpfs /run and
# /tmp (the loader's mount point and the tests' scratch).
run() {
	suite=$1; shift
	dir=$ROOT/$suite
	create "$suite"
	exec unshare --mount --propagation private /bin/sh -eu -c '
		dir=$1 tree=$2; shift 2
		mount --rbind /proc "$dir/proc"
		mount --rbind /sys "$dir/sys"
		mount --rbind /dev "$dir/dev"
		mount -t tmpfs -o mode=1777 tmpfs "$dir/dev/shm"
		mount -t tmpfs -o mode=0755 tmpfs "$dir/run"
		mount -t tmpfs -o mode=1777 tmpfs "$dir/tmp"
		mkdir -p "$dir/$tree" "$dir/usr/src"
		mount --bind "$tree" "$dir/$tree"
		t=/usr/src/linux-source-6.1.tar.xz
		if [ -r "$t" ]; then
			touch "$dir/$t"
			mount --bind "$t" "$dir/$t"
		fi
		cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
		cd "$dir/$tree"
		exec chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 TERM="${TERM:-dumb}" \
			/bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$tree" "$@"
	' sh "$dir" "$TREE" "$@"
}

[ $# -ge 1 ] || die "usage: chroot.sh create|refresh|run|suite|path ..."
cmd=$1; shift
case "$cmd" in
create) [ $# = 1 ] || die "usage: chroot.sh create SUITE"; create "$1" ;;
refresh) [ $# = 1 ] || die "usage: chroot.sh refresh SUITE"; refresh "$1" ;;
run) [ $# -ge 2 ] || die "usage: chroot.sh run SUITE CMD..."; run "$@" ;;
suite) [ $# = 1 ] || die "usage: chroot.sh suite PYTHON"; suite_of "$1" ;;
path) [ $# = 1 ] || die "usage: chroot.sh path SUITE"; echo "$ROOT/$1" ;;
*) die "unknown command $cmd" ;;
esac
