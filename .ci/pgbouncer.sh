#!/usr/bin/env bash
# PgBouncer 1.21+ for tests/it/pooler.rs. sqlx prepares every query as a named statement; in
# transaction mode only PgBouncer 1.21+ with `max_prepared_statements` keeps that working for
# concurrent clients, and Debian 12 ships 1.18. When no pgbouncer >= 1.21 is on this machine,
# build 1.24.1 from Debian 13's source package (upstream tarball + Debian's patches, sha256
# pinned) into a fixed prefix the tests look in:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/agent-backend/pgbouncer-1.24.1/bin/pgbouncer
#
# Idempotent: a prefix holding a working binary is left alone. Run by `.ci/run`; by hand:
# `bash .ci/pgbouncer.sh` (root installs the build dependencies with apt-get; others are told
# which to install). Prints the binary's path last.
set -euo pipefail

version=1.24.1
debian_revision=1+deb13u2
orig_sha256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
debian_sha256=2325bcaa2e71919d399b9e5aef5b94ff988fc1f1d296908c3937b682b7be5cbb
pool=http://deb.debian.org/debian/pool/main/p/pgbouncer
prefix="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/agent-backend/pgbouncer-$version"

# "1.24.1" from "PgBouncer 1.24.1" (first line of --version); true when >= 1.21.
recent() {
  local v
  v=$("$1" --version 2>/dev/null | head -n 1 | awk '{print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '1.21\n%s\n' "$v" | sort -V | head -n 1)" = 1.21 ]
}

for candidate in "${PGBOUNCER:-}" "$prefix/bin/pgbouncer" "$(command -v pgbouncer || true)" \
  /usr/sbin/pgbouncer; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && recent "$candidate"; then
    echo "PgBouncer: $("$candidate" --version | head -n 1) at $candidate (nothing to build)" >&2
    echo "$candidate"
    exit 0
  fi
done

echo "PgBouncer: no pgbouncer >= 1.21 here; building $version from Debian's source into $prefix" >&2
started=$(date +%s)

# Build dependencies from the running Debian (bookworm): a C toolchain, libevent, OpenSSL.
# c-ares, PAM and systemd support are left out: the tests reach PostgreSQL by IP address.
missing=()
for pkg in gcc make pkg-config libevent-dev libssl-dev curl xz-utils patch; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "PgBouncer: install the build dependencies first: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fetch() { # file sha256
  curl -fsSL --retry 3 -o "$1" "$pool/$1"
  echo "$2  $1" | sha256sum --check --quiet --strict -
}
fetch "pgbouncer_$version.orig.tar.gz" "$orig_sha256"
fetch "pgbouncer_$version-$debian_revision.debian.tar.xz" "$debian_sha256"
tar -xzf "pgbouncer_$version.orig.tar.gz"
cd "pgbouncer-$version"
tar -xJf "../pgbouncer_$version-$debian_revision.debian.tar.xz"
# Debian's patches, in the order of its series: the CVE fixes of its security updates, and the
# sample pgbouncer.ini's paths (unused here; applied so the tree is Debian's).
while read -r p; do
  case "$p" in '' | '#'*) continue ;; esac
  patch -p1 --quiet --forward < "debian/patches/$p"
done < debian/patches/series

./configure --quiet --prefix="$prefix" --without-cares --without-pam --without-systemd \
  >/dev/null
make -s -j"$(nproc)" >/dev/null
# Install atomically: a half-built prefix never looks like a finished one.
rm -rf "$prefix.tmp"
install -D -m 0755 pgbouncer "$prefix.tmp/bin/pgbouncer"
install -D -m 0644 COPYRIGHT "$prefix.tmp/share/doc/pgbouncer/COPYRIGHT"
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
recent "$prefix/bin/pgbouncer"
echo "PgBouncer: built $("$prefix/bin/pgbouncer" --version | head -n 1) in $(($(date +%s) - started)) s" >&2
echo "$prefix/bin/pgbouncer"
