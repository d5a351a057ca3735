#!/usr/bin/env bash
# Multi-host GPU launch: run this same command on every host.
#   COORDINATOR=host0:12345 NUM_HOSTS=2 HOST_ID=0 launch/gpu_host.sh CONFIG WORKDIR [overrides]
# With one host, COORDINATOR may be left unset (single process over all local GPUs).
# Under SLURM, jax.distributed.initialize() reads the job's environment: set only
# RLFB_MULTIHOST=1 and start one task per host.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi
config=${1:?usage: launch/gpu_host.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/gpu_host.sh CONFIG WORKDIR [overrides...]}
shift 2
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
if [[ -n "${COORDINATOR:-}" ]]; then
  exec python -m rlfb_jax.main --config="$config" --workdir="$workdir" --multihost \
    --coordinator="$COORDINATOR" --num_processes="${NUM_HOSTS:?}" --process_id="${HOST_ID:?}" "$@"
fi
exec python -m rlfb_jax.main --config="$config" --workdir="$workdir" "$@"
