#!/usr/bin/env bash
# Local stand-ins for the Dockerfile's FROM images, which this machine cannot pull (no registry
# but Debian's, crates.io, PyPI and npm), tagged exactly as the FROM lines name them once the
# Dockerfile's ARGs are resolved, so `buildah bud --pull=never` builds the Dockerfile unchanged:
#
#   debian:<DEBIAN_RELEASE>-slim   debootstrap --variant=minbase of that release from Debian's
#                                  mirror, security updates applied, trimmed as the official
#                                  slim image is (no docs, man pages, locales; apt lists and
#                                  caches removed; its dpkg/apt settings), CMD bash
#   rust:<RUST_VERSION>-slim-<DEBIAN_RELEASE>
#                                  that image + ca-certificates, gcc, libc6-dev (what the
#                                  official slim image installs) + this machine's Rust toolchain
#                                  of that version (rustc, cargo, rust-std: rustup's minimal
#                                  profile) and rustup, copied, never downloaded, under
#                                  RUSTUP_HOME=/usr/local/rustup and CARGO_HOME=/usr/local/cargo
#                                  with cargo's bin on PATH, as the official image sets them;
#                                  and the CAs this machine trusts locally
#                                  (/usr/local/share/ca-certificates: its egress proxy's)
#
# Idempotent and cached: each image carries an annotation (not a label, which the project's
# image would inherit) with the hash of what made it: this script's text, the release and
# mirror; for Rust also the Debian image's id, `rustc -vV`, cargo's and rustup's versions and
# the local CAs. An image whose hash matches is kept (the second run takes under a second); any
# change makes it again, and with it every cached layer of the project's image (a cold build).
# `--rebuild` makes both regardless. Storage: .ci/containers.sh. Run by .ci/image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/containers.sh

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rebuild=false
[ "${1:-}" = --rebuild ] && rebuild=true

say() { printf 'base images: %s\n' "$*" >&2; }

arg() {
  local value
  value=$(sed -n "s/^ARG $1=\(.*\)$/\1/p" Dockerfile)
  [ -n "$value" ] || { echo "Dockerfile: no default for ARG $1" >&2; exit 1; }
  printf '%s' "$value"
}
rust_version=$(arg RUST_VERSION)
release=$(arg DEBIAN_RELEASE)
debian_image="debian:$release-slim"
rust_image="rust:$rust_version-slim-$release"

# The FROM lines, ARGs resolved: every external base must be one this script makes.
for from in $(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile \
  | sed "s/\${RUST_VERSION}/$rust_version/g; s/\${DEBIAN_RELEASE}/$release/g"); do
  case "$from" in
    "$debian_image" | "$rust_image") ;;
    *) grep -qi "^FROM .* AS $from\$" Dockerfile \
      || { echo "Dockerfile: FROM $from has no stand-in in $0" >&2; exit 1; } ;;
  esac
done

# The host toolchain of RUST_VERSION (1.95 matches 1.95.x): the default one, else any rustup has.
toolchain=""
for sysroot in "$(rustc --print sysroot 2> /dev/null || true)" "$HOME"/.rustup/toolchains/*; do
  if [ -x "$sysroot/bin/rustc" ] && [ -x "$sysroot/bin/cargo" ] \
    && "$sysroot/bin/rustc" -V | grep -q "^rustc $rust_version[. ]"; then
    toolchain=$(readlink -f "$sysroot")
    break
  fi
done
[ -n "$toolchain" ] || { echo "no Rust $rust_version toolchain on this machine (rustup)" >&2; exit 1; }
full_version=$("$toolchain/bin/rustc" -V | awk '{print $2}')
host=$("$toolchain/bin/rustc" -vV | sed -n 's/^host: //p')
rustup_bin=$(command -v rustup) || { echo "rustup not found" >&2; exit 1; }

annotation=agent-backend.stand-in
key() { { cat "$0"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16; }
current() { # IMAGE KEY: the image exists and was made by this script from the same inputs
  [ "$(buildah inspect --type image --format "{{index .ImageAnnotations \"$annotation\"}}" \
    "docker.io/library/$1" 2> /dev/null)" = "$2" ]
}

# --- debian:<release>-slim --------------------------------------------------------------------
debian_key=$(key "$release" "$mirror")
if ! $rebuild && current "$debian_image" "$debian_key"; then
  say "$debian_image is current (annotation $annotation=$debian_key): kept"
else
  started=$(date +%s)
  say "making $debian_image: debootstrap --variant=minbase $release from $mirror"
  work=$(mktemp -d "$containers_dir/debootstrap.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  debootstrap --variant=minbase "$release" "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  # The official image's sources (deb822, with -updates and -security) and its settings.
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: ${mirror}
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror}-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  echo 'force-unsafe-io' > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" << 'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" << 'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::GzipIndexes "true";' > "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' \
    > "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  # Security updates, as the official image (built from a snapshot of all three suites) has.
  chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade' > "$work/upgrade.log" 2>&1 \
    || { tail -n 20 "$work/upgrade.log" >&2; exit 1; }
  # Trimmed: what the excludes above keep out of later installs, out of this one too.
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/tmp/*
  : > "$rootfs/etc/resolv.conf"
  rm -f "$rootfs/etc/hostname"

  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
  buildah umount "$ctr" > /dev/null
  buildah config --cmd '["bash"]' \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --annotation "$annotation=$debian_key" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "docker.io/library/$debian_image" > /dev/null
  rm -rf "$work"
  trap - EXIT
  say "$debian_image made in $(($(date +%s) - started)) s"
fi

# --- rust:<version>-slim-<release> ------------------------------------------------------------
debian_id=$(buildah inspect --type image --format '{{.FromImageID}}' "docker.io/library/$debian_image")
rust_key=$(key "$debian_id" "$("$toolchain/bin/rustc" -vV)" "$("$toolchain/bin/cargo" -V)" \
  "$("$rustup_bin" --version 2> /dev/null | head -n 1)" \
  "$(cat /usr/local/share/ca-certificates/*.crt 2> /dev/null || true)")
if ! $rebuild && current "$rust_image" "$rust_key"; then
  say "$rust_image is current (annotation $annotation=$rust_key): kept"
else
  started=$(date +%s)
  name="$full_version-$host"
  say "making $rust_image: $debian_image + ca-certificates gcc libc6-dev + Rust $full_version from $toolchain"
  ctr=$(buildah from --pull=never "docker.io/library/$debian_image")
  trap 'buildah rm "$ctr" > /dev/null 2>&1 || true' EXIT
  buildah run "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev > /dev/null \
    && rm -rf /var/lib/apt/lists/*'
  mnt=$(buildah mount "$ctr")
  # This machine reaches crates.io through an egress proxy that re-signs TLS with a CA of its
  # own, which the host trusts (/usr/local/share/ca-certificates): so must cargo in this image.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
    chroot "$mnt" update-ca-certificates > /dev/null
  fi
  # rustup's minimal profile: rustc (with rustdoc), cargo, rust-std; no docs, clippy or rustfmt.
  dest="$mnt/usr/local/rustup/toolchains/$name"
  mkdir -p "$dest" "$mnt/usr/local/cargo/bin"
  tar -C "$toolchain" -cf - --exclude=./share/doc/rust/html \
    --exclude='./bin/cargo-clippy' --exclude='./bin/clippy-driver' \
    --exclude='./bin/rustfmt' --exclude='./bin/cargo-fmt' \
    --exclude='./lib/rustlib/manifest-clippy*' --exclude='./lib/rustlib/manifest-rustfmt*' \
    --exclude='./lib/rustlib/manifest-rust-docs*' . | tar -C "$dest" -xf -
  grep -E '^(rustc|cargo|rust-std)' "$toolchain/lib/rustlib/components" > "$dest/lib/rustlib/components"
  cat > "$mnt/usr/local/rustup/settings.toml" << EOF
version = "12"
default_toolchain = "$name"
profile = "minimal"

[overrides]
EOF
  install -m 0755 "$rustup_bin" "$mnt/usr/local/cargo/bin/rustup"
  for proxy in cargo cargo-clippy cargo-fmt cargo-miri clippy-driver rls rust-analyzer rust-gdb \
    rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
    ln -f "$mnt/usr/local/cargo/bin/rustup" "$mnt/usr/local/cargo/bin/$proxy"
  done
  chmod -R a+w "$mnt/usr/local/rustup" "$mnt/usr/local/cargo"
  buildah umount "$ctr" > /dev/null
  buildah config \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env "RUST_VERSION=$full_version" \
    --annotation "$annotation=$rust_key" \
    "$ctr"
  # As the official Dockerfile checks its install: the proxies resolve offline.
  buildah run "$ctr" -- sh -c 'rustup --version 2> /dev/null && cargo --version && rustc --version' >&2
  buildah commit --quiet --rm "$ctr" "docker.io/library/$rust_image" > /dev/null
  trap - EXIT
  say "$rust_image made in $(($(date +%s) - started)) s"
fi

for image in "$debian_image" "$rust_image"; do
  say "$image ready: $(buildah images --format '{{.Size}}' "docker.io/library/$image")"
done
