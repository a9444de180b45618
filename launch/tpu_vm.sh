#!/usr/bin/env bash
# Run a vau_jax job on every worker of a Cloud TPU VM slice.
#   launch/tpu_vm.sh TPU_NAME ZONE "--config=configs/vagpt.py:paper --workdir=gs://BUCKET/runs/vagpt-paper"
set -euo pipefail
TPU_NAME=$1; ZONE=$2; ARGS=$3
REPO=${REPO:-vau_jax}
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  cd ~/$REPO || { echo 'copy the repository to ~/$REPO on every worker first (gcloud ... scp --worker=all)'; exit 1; }
  python3 -m venv ~/venv && . ~/venv/bin/activate
  pip install -q -e . 'jax[tpu]==0.10.2'
  python -m vau_jax.main $ARGS
"
