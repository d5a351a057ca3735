#!/usr/bin/env bash
# Run an experiment on every worker of a Cloud TPU pod slice.
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh CONFIG WORKDIR [overrides...]
# WORKDIR should be shared storage (e.g. a gs:// bucket path orbax can write) so every host
# checkpoints into the same place. Every worker needs this repository at REPO_DIR (default
# ~/rlfb_jax) with its requirements; the first time, from a checkout of it:
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh --setup
# copies the checkout's committed HEAD to every worker (git archive + gcloud scp), unpacks it
# at REPO_DIR and installs requirements.txt, jax[tpu] and gcsfs (for a gs:// WORKDIR) there.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_DIR=${REPO_DIR:-~/rlfb_jax}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}
if [[ "${1:-}" == "--setup" ]]; then
  archive=$(mktemp --suffix=.tar.gz)
  trap 'rm -f "$archive"' EXIT
  git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
  gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME":rlfb_jax.tar.gz --zone="$ZONE" \
    --worker=all
  ssh_all "mkdir -p $REPO_DIR && tar -xzf rlfb_jax.tar.gz -C $REPO_DIR && rm rlfb_jax.tar.gz \
    && cd $REPO_DIR && pip install -r requirements.txt 'jax[tpu]' gcsfs"
  exit 0
fi
config=${1:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
shift 2
printf -v extra ' %q' "$@"
ssh_all "cd $REPO_DIR && RLFB_MULTIHOST=1 python -m rlfb_jax.main --config=$config --workdir=$workdir$extra"
