#!/usr/bin/env bash
# The image Render builds, built and run here. No Docker engine or registry on this machine:
#   1. .ci/base-images.sh: stand-ins for the Dockerfile's FROM images (cached)
#   2. buildah bud of the Dockerfile as it is (every stage and RUN step: cargo-chef from
#      crates.io, the runtime's apt-get), the context as .dockerignore leaves it, Docker's image
#      format (it keeps HEALTHCHECK, as Render's Docker build does), layers cached: after a
#      source change only the planner, the crate's own build and the runtime stage run again
#   3. the context the planner stage received (its `COPY . .`): nothing .dockerignore excludes
#      (no target/, no .git/), and the image's size against the binary's
#   4. tests/it/image.rs in the image (buildah run): render.yaml's pre-deploy command on a fresh
#      database, the service as the image starts it, /health/ready, the HEALTHCHECK's exit codes,
#      the uid, SIGTERM, and an https:// collector trusted through the image's CA bundle
# Any failure fails the script. Run by .ci/run; by hand: `bash .ci/image.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/containers.sh

image=${AGENT_BACKEND_IMAGE:-localhost/agent-backend:ci}
log() { printf '\n==> %s\n' "$*"; }

began=$(date +%s)
log "base images (.ci/base-images.sh)"
bash .ci/base-images.sh
base_seconds=$(($(date +%s) - began))

dockerfile_state="as committed"
git diff --quiet HEAD -- Dockerfile 2> /dev/null || dockerfile_state="with uncommitted changes"
log "buildah bud: $image from the Dockerfile ($dockerfile_state, sha256 $(sha256sum Dockerfile | cut -c1-16))"
build_log="$containers_dir/build.log"
started=$(date +%s)
# The planner and builder stages are tagged too: the planner's context is checked below, and
# pruning keeps the builder's cached layers (the cooked dependencies) while it drops what no
# tagged image uses (stale layers of earlier sources).
for target in planner builder ""; do
  tag="$image${target:+-$target}"
  if ! nice buildah bud --format docker --layers --force-rm --pull=never ${target:+--target "$target"} \
    --tag "$tag" . > "$build_log" 2>&1; then
    tail -n 60 "$build_log"
    echo "image build failed (full log: $build_log)" >&2
    exit 1
  fi
  # Each step, whether it ran or came from the cache, and cargo's summaries.
  grep -E '^\[[0-9]+/[0-9]+\] STEP|^--> Using cache|Finished `release`|Installed package|COMMIT' \
    "$build_log" | sed 's/^/    /'
done
build_seconds=$(($(date +%s) - started))
for _ in 1 2 3 4 5 6 7 8; do # a removed leaf may leave its parent dangling in turn
  [ -n "$(buildah images --quiet --filter dangling=true)" ] || break
  buildah rmi --prune > /dev/null
done

# The context as the build received it: /src of the planner stage, less the recipe it wrote.
ctr=$(buildah from --pull=never "$image-planner")
src="$(buildah mount "$ctr")/src"
leaked=()
while read -r pattern; do
  case "$pattern" in '' | '#'*) continue ;; esac
  pattern=${pattern%/}
  if [[ $pattern == '**/'* ]]; then
    found=$(find "$src" -name "${pattern#'**/'}" -print -quit)
  else
    found=$(compgen -G "$src/$pattern" | head -n 1 || true)
  fi
  [ -z "$found" ] || leaked+=("${found#"$src"/}")
done < .dockerignore
context_files=$(find "$src" -type f -not -path "$src/recipe.json" | wc -l)
context_size=$(du -sh --exclude=recipe.json "$src" | cut -f1)
buildah rm "$ctr" > /dev/null
if [ ${#leaked[@]} -gt 0 ]; then
  echo "the build context holds what .dockerignore excludes: ${leaked[*]}" >&2
  exit 1
fi
log "build context: $context_files files, $context_size; none of what .dockerignore excludes ($(grep -v '^#' .dockerignore | tr '\n' ' '))"

ctr=$(buildah from --pull=never "$image")
binary=$(stat -c %s "$(buildah mount "$ctr")/app/server")
buildah rm "$ctr" > /dev/null
log "image $image built in ${build_seconds} s: $(buildah images --format '{{.Size}}' "$image"), of which /app/server $((binary / 1000000)) MB ($binary bytes); storage $(du -sh "$containers_dir/storage" | cut -f1)"

log "the image run as Render runs it (tests/it/image.rs)"
# Working containers an interrupted run left behind.
buildah containers --format '{{.ContainerName}}' | { grep '^ab-image-test-' || true; } \
  | xargs -r buildah rm > /dev/null
AGENT_BACKEND_IMAGE=$image cargo test --locked --test it image:: -- --ignored --nocapture \
  --test-threads 1 2>&1 | tee "$containers_dir/test.log"
grep -q '^test result: ok. 2 passed' "$containers_dir/test.log" \
  || { echo "tests/it/image.rs: expected 2 passed" >&2; exit 1; }
ended=$(date +%s)
log "image steps: ${base_seconds} s base images, ${build_seconds} s build, $((ended - started - build_seconds)) s checks and tests; $((ended - began)) s in all"
