#!/usr/bin/env bash
# Run an experiment on every worker of a Cloud TPU pod slice.
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh CONFIG WORKDIR [overrides...]
# WORKDIR should be shared storage (e.g. a gs:// bucket path orbax can write) so every host
# checkpoints into the same place. The repo must be checked out at REPO_DIR on every worker
# (first time: launch/tpu_pod.sh --setup).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_DIR=${REPO_DIR:-~/rlfb_jax}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}
if [[ "${1:-}" == "--setup" ]]; then
  ssh_all "cd $REPO_DIR && pip install -r requirements.txt 'jax[tpu]'"
  exit 0
fi
config=${1:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
shift 2
printf -v extra ' %q' "$@"
ssh_all "cd $REPO_DIR && RLFB_MULTIHOST=1 python -m rlfb_jax.main --config=$config --workdir=$workdir$extra"
