#!/usr/bin/env bash
# Run an experiment on this machine (CPU or local GPUs/TPU).
#   launch/local.sh CONFIG WORKDIR [overrides...]
#   e.g. launch/local.sh experiments/smoke.py /tmp/smoke --config.train.steps=10
# Simulate N devices on CPU with: XLA_FLAGS=--xla_force_host_platform_device_count=N
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi
config=${1:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
shift 2
exec python -m rlfb_jax.main --config="$config" --workdir="$workdir" "$@"
