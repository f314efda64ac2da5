# Sourced by .ci/base-images.sh and .ci/image.sh: buildah and debootstrap (Debian's packages,
# installed when missing), and the container storage both use, kept out of the repository:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/agent-backend/containers/{storage,run,storage.conf}
#
# Exported, so every buildah call below and in the image test (tests/it/image.rs) sees the same
# images: CONTAINERS_STORAGE_CONF (overlay when this kernel mounts it, else vfs, which copies
# every layer) and BUILDAH_ISOLATION=chroot (no OCI runtime here: RUN steps and `buildah run`
# are chroots in namespaces of their own, on the host's network).

containers_dir="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/agent-backend/containers"

missing=()
command -v buildah > /dev/null 2>&1 || missing+=(buildah)
command -v debootstrap > /dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "containers: installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

if [ ! -f "$containers_dir/storage.conf" ]; then
  mkdir -p "$containers_dir"/{storage,run}
  probe=$(mktemp -d)
  mkdir "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay \
    -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" \
    2> /dev/null; then
    umount "$probe/merged"
    driver=overlay
  else
    driver=vfs
  fi
  rm -rf "$probe"
  printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$driver" "$containers_dir/storage" "$containers_dir/run" > "$containers_dir/storage.conf"
fi
export CONTAINERS_STORAGE_CONF="$containers_dir/storage.conf"
export BUILDAH_ISOLATION=chroot
