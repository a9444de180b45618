#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create or reuse it, copy and install the code on every
# worker, stage the dataset and converted checkpoints in a GCS bucket, run vau_jax.main on
# all workers at once, and start again after a preemption (the run resumes from its latest
# orbax checkpoint, which lives in the bucket).
#
#   launch/tpu_vm.sh --tpu=NAME --zone=ZONE --bucket=gs://BUCKET [--project=PROJECT]
#       [--accelerator=v5litepod-8] [--runtime=v2-alpha-tpuv5-lite] [--spot]
#       [--run=RUN] [--data=LOCAL_DIR] [--checkpoints=LOCAL_DIR] [--max_restarts=20]
#       [--dry_run] -- --config=configs/vadllama.py:paper [more vau_jax.main flags]
#
# On the workers the bucket is mounted with gcsfuse at /mnt/gcs, so the run's workdir
# (metrics, TensorBoard, orbax checkpoints) is gs://BUCKET/runs/RUN, shared by every host as
# multi-host orbax needs. --data / --checkpoints upload a local dataset tree / a folder of
# converted checkpoints to gs://BUCKET/data/<name> / gs://BUCKET/checkpoints/ once (rsync);
# point the main flags at them as /mnt/gcs/data/<name> and /mnt/gcs/checkpoints/<role>.
# The data dir (tokenizers, feature caches) is gs://BUCKET/data_cache too: process 0 encodes
# the features and every host reads them (vau_jax/data/features.py).
# jax.distributed.initialize() finds the slice's topology itself (vau_jax/distributed.py).
# --dry_run prints every command instead of running it.
set -euo pipefail

TPU="" ZONE="" BUCKET="" PROJECT="" ACCEL="v5litepod-8" RUNTIME="v2-alpha-tpuv5-lite"
SPOT=0 RUN="" DATA="" CKPTS="" MAX_RESTARTS=20 DRY=0
MAIN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tpu=*) TPU=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --bucket=*) BUCKET=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --accelerator=*) ACCEL=${1#*=} ;;
    --runtime=*) RUNTIME=${1#*=} ;;
    --spot) SPOT=1 ;;
    --run=*) RUN=${1#*=} ;;
    --data=*) DATA=${1#*=} ;;
    --checkpoints=*) CKPTS=${1#*=} ;;
    --max_restarts=*) MAX_RESTARTS=${1#*=} ;;
    --dry_run) DRY=1 ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) echo "error: $0: unknown option $1 (main's flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
for need in TPU ZONE BUCKET; do
  if [ -z "${!need}" ]; then
    echo "error: $0: --$(echo "$need" | tr '[:upper:]' '[:lower:]')=... is required" >&2
    exit 2
  fi
done
case "$BUCKET" in gs://*) ;; *) echo "error: $0: --bucket must be gs://NAME" >&2; exit 2 ;; esac
if [ ${#MAIN_ARGS[@]} -eq 0 ]; then
  echo "error: $0: no vau_jax.main flags after -- (at least --config=...)" >&2
  exit 2
fi
RUN=${RUN:-$TPU}
BUCKET_NAME=${BUCKET#gs://}
GC=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[ -n "$PROJECT" ] && WHERE+=(--project="$PROJECT")
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARBALL=/tmp/vau_jax-$RUN.tgz

# One command: printed (dry run) or run.
run() {
  if [ "$DRY" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}
on_all_workers() {  # a shell script run on every worker of the slice
  run "${GC[@]}" ssh "$TPU" "${WHERE[@]}" --worker=all --command="$1"
}

state() {  # READY, CREATING, PREEMPTED, ... or "" when the TPU does not exist
  "${GC[@]}" describe "$TPU" "${WHERE[@]}" --format='value(state)' 2>/dev/null || true
}

ensure_tpu() {
  local s
  if [ "$DRY" = 1 ]; then
    echo "# create the slice unless '$TPU' is READY (a PREEMPTED one is deleted first):"
    run "${GC[@]}" describe "$TPU" "${WHERE[@]}" --format='value(state)'
  else
    s=$(state)
    [ "$s" = READY ] && { echo "reusing TPU $TPU"; return; }
    [ -n "$s" ] && run "${GC[@]}" delete "$TPU" "${WHERE[@]}" --quiet
  fi
  local create=("${GC[@]}" create "$TPU" "${WHERE[@]}" --accelerator-type="$ACCEL"
                --version="$RUNTIME")
  [ "$SPOT" = 1 ] && create+=(--spot)
  run "${create[@]}"
}

stage_data() {
  [ -n "$DATA" ] && run gsutil -m rsync -r "$DATA" "$BUCKET/data/$(basename "$DATA")"
  [ -n "$CKPTS" ] && run gsutil -m rsync -r "$CKPTS" "$BUCKET/checkpoints"
  return 0
}

install_code() {
  run git -C "$REPO" archive --format=tar.gz -o "$TARBALL" HEAD
  run "${GC[@]}" scp "$TARBALL" "$TPU:~/vau_jax.tgz" "${WHERE[@]}" --worker=all
  on_all_workers "set -e
rm -rf ~/vau_jax && mkdir -p ~/vau_jax && tar xzf ~/vau_jax.tgz -C ~/vau_jax
python3 -m venv ~/venv && . ~/venv/bin/activate && pip install -q -e \"\$HOME/vau_jax[tpu]\"
command -v gcsfuse >/dev/null || { export GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s)
  echo \"deb https://packages.cloud.google.com/apt \$GCSFUSE_REPO main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list
  curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -
  sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; }
sudo mkdir -p /mnt/gcs && sudo chmod 777 /mnt/gcs
mountpoint -q /mnt/gcs || gcsfuse --implicit-dirs $BUCKET_NAME /mnt/gcs"
}

train() {  # every worker runs the same command; rerunning resumes from the workdir
  local args
  args=$(printf '%q ' "${MAIN_ARGS[@]}")
  on_all_workers "cd ~/vau_jax && . ~/venv/bin/activate && python -m vau_jax.main $args \
--workdir=/mnt/gcs/runs/$RUN --config.data_dir=/mnt/gcs/data_cache"
}

stage_data
ensure_tpu
install_code
if [ "$DRY" = 1 ]; then
  echo "# then, until main exits 0 (at most $MAX_RESTARTS restarts): after a failure, if the"
  echo "# slice is no longer READY (preempted), recreate it and install again, then rerun:"
  train
  exit 0
fi
for attempt in $(seq 0 "$MAX_RESTARTS"); do
  if train; then echo "run $RUN finished: $BUCKET/runs/$RUN"; exit 0; fi
  echo "attempt $attempt failed (state: $(state)); resuming" >&2
  if [ "$(state)" != READY ]; then ensure_tpu; install_code; fi
  sleep 30
done
echo "error: $0: $RUN did not finish after $MAX_RESTARTS restarts" >&2
exit 1
