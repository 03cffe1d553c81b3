#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run inside a clean Debian 12 chroot by tests/py/test_deb.py:
#   deb-install.sh DEBDIR WORKLOAD
# installs the packages of DEBDIR with apt, starts the loader's unit
# command as systemd would, builds an archive of WORKLOAD into the
# loader's source directory, runs it from the published archive, checks
# the man pages, then purges the packages.  Prints KEY=VALUE lines for the
# test to judge, and the state of the interpreter before and after under
# /tmp/pycds-deb/.
set -u
debs=$1 workload=$2
out=/tmp/pycds-deb
rm -rf "$out" && mkdir -p "$out"
APT="-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -o Dpkg::Use-Pty=0"
export DEBIAN_FRONTEND=noninteractive

# What the interpreter looks like without pycds.
state() {
	python3 -c 'import sys; print(sys.path); print(sorted(sys.modules))' > "$out/$1.python" 2>&1
	python3 -c pass > "$out/$1.pass" 2>&1; echo "status $?" >> "$out/$1.pass"
	ls -la /usr/lib/python3/dist-packages /usr/local/lib/python3.11/dist-packages 2>&1 |
		awk '{ print $1, $NF }' > "$out/$1.site"
	find /etc /usr /var/lib -path /var/lib/dpkg -prune -o -path /var/lib/apt -prune -o \
		-name '*pycds*' -print 2>/dev/null | sort > "$out/$1.files"
}

# A leftover of an earlier run that died: purge it first.
apt-get $APT purge -y -qq pycds python3-pycds >/dev/null 2>&1
state before

apt-get $APT update -qq >/dev/null 2>&1
if apt-get $APT install -y -qq "$debs"/pycds_*.deb "$debs"/python3-pycds_*.deb \
	> "$out/install.log" 2>&1; then
	echo "installed=yes"
else
	echo "installed=no"; tail -5 "$out/install.log"
fi
dpkg-query -W -f='${Package} ${Version} ${Status}\n' pycds python3-pycds 2>&1 |
	sed 's/^/package=/'
[ -L /etc/systemd/system/sysinit.target.wants/pycds-loader.service ] &&
	echo "unit_enabled=yes" || echo "unit_enabled=no"

# A package upgrade under /usr/lib/python3 fires pycds's trigger (its
# postinst then asks a running loader to heal: without systemd here, a
# no-op).
apt-get $APT install -y python3-six > "$out/trigger.log" 2>&1
grep -q "Processing triggers for pycds" "$out/trigger.log" &&
	echo "trigger=yes" || echo "trigger=no"
apt-get $APT purge -y -qq python3-six >/dev/null 2>&1

# The unit's command, as systemd would run it.
cmd=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/pycds-loader.service)
echo "unit_command=$cmd"
$cmd > "$out/loader.log" 2>&1 &
loader=$!
i=0
while ! grep -q watching "$out/loader.log" && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done

# An archive of the workload, built where the loader looks.
cp "$workload" /tmp/work.py
cd /tmp
pycds build -o /var/lib/pycds/app.pycds -- python3 work.py > "$out/build.log" 2>&1
echo "build_status=$?"
i=0
while ! grep -q "published /run/pycds/app.pycds" "$out/loader.log" && [ $i -lt 100 ]; do
	sleep 0.2; i=$((i + 1))
done
PYCDS_ARCHIVE= python3 work.py > "$out/stock.out" 2>&1
PYCDS_ARCHIVE=/run/pycds/app.pycds python3 -c '
import runpy, sys, _pycds
sys.argv = ["work.py"]
runpy.run_path("work.py", run_name="__main__")
s = _pycds.stats()
print("hits=%d error=%s" % (s["hits"], s["error"]), file=sys.stderr)
' > "$out/served.out" 2> "$out/served.err"
echo "served_status=$?"
cmp -s "$out/stock.out" "$out/served.out" && echo "same_output=yes" || echo "same_output=no"
echo "served_$(tail -1 "$out/served.err")"
pycds-loader --status --mount /run/pycds > "$out/status.txt" 2>&1
echo "status_line=$(grep app.pycds "$out/status.txt")"
for page in "1 pycds" "8 pycds-loader" "8 pycds-top" "5 pycds-archive"; do
	set -- $page
	if man "$1" "$2" 2>/dev/null | grep -q .; then echo "man_$2=yes"; else echo "man_$2=no"; fi
done

kill "$loader" 2>/dev/null; wait "$loader" 2>/dev/null
umount -l /run/pycds 2>/dev/null
rm -f /var/lib/pycds/app.pycds
if apt-get $APT purge -y -qq pycds python3-pycds > "$out/purge.log" 2>&1; then
	echo "purged=yes"
else
	echo "purged=no"; tail -5 "$out/purge.log"
fi
state after
for k in python pass site files; do
	cmp -s "$out/before.$k" "$out/after.$k" && echo "same_$k=yes" || {
		echo "same_$k=no"; diff "$out/before.$k" "$out/after.$k" | head -5; }
done
echo "files_after=$(tr '\n' ' ' < "$out/after.files")"
