#!/usr/bin/env bash
# Train on a SLURM GPU cluster: install the code once on shared storage, stage the dataset
# and converted checkpoints there, and submit one job that runs vau_jax.main as one process
# per GPU on every node, restarting (and resuming from its latest orbax checkpoint) after a
# failure or a preemption (the job is also --requeue'd by SLURM).
#
#   launch/gpu_slurm.sh --shared=/shared/vau_jax [--nodes=2] [--gpus_per_node=8]
#       [--partition=P] [--account=A] [--time=48:00:00] [--run=RUN]
#       [--data=LOCAL_DIR] [--checkpoints=LOCAL_DIR] [--max_restarts=20]
#       [--dry_run] -- --config=configs/vadllama.py:paper [more vau_jax.main flags]
#
# Everything lives under --shared (a filesystem every node sees: NFS, Lustre, GPFS): the code
# (code/), its virtualenv with the CUDA 12 jax (venv/), the uploaded dataset (data/<name>),
# the converted checkpoints (checkpoints/) and the run (runs/RUN: metrics, TensorBoard,
# orbax checkpoints, the batch script and its logs) and the data dir (data_cache/: process 0
# encodes the feature caches, every node reads them). jax.distributed.initialize() reads the
# SLURM_* environment
# (vau_jax/distributed.py). --dry_run prints every command and the batch script.
set -euo pipefail

SHARED="" NODES=2 GPUS=8 PARTITION="" ACCOUNT="" TIME="48:00:00" RUN="" DATA="" CKPTS=""
MAX_RESTARTS=20 DRY=0
MAIN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shared=*) SHARED=${1#*=} ;;
    --nodes=*) NODES=${1#*=} ;;
    --gpus_per_node=*) GPUS=${1#*=} ;;
    --partition=*) PARTITION=${1#*=} ;;
    --account=*) ACCOUNT=${1#*=} ;;
    --time=*) TIME=${1#*=} ;;
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
if [ -z "$SHARED" ]; then echo "error: $0: --shared=DIR (storage every node sees) is required" >&2; exit 2; fi
if [ ${#MAIN_ARGS[@]} -eq 0 ]; then
  echo "error: $0: no vau_jax.main flags after -- (at least --config=...)" >&2
  exit 2
fi
RUN=${RUN:-vau_jax-$(date +%Y%m%d-%H%M%S)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORKDIR=$SHARED/runs/$RUN
BATCH=$WORKDIR/job.sbatch

run() {  # one command: printed (dry run) or run
  if [ "$DRY" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

batch_script() {
  local args
  args=$(printf '%q ' "${MAIN_ARGS[@]}")
  cat <<EOF
#!/usr/bin/env bash
#SBATCH --job-name=$RUN
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$GPUS
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=$TIME
#SBATCH --requeue
#SBATCH --output=$WORKDIR/slurm-%j.out
${PARTITION:+#SBATCH --partition=$PARTITION}
${ACCOUNT:+#SBATCH --account=$ACCOUNT}
set -uo pipefail
. $SHARED/venv/bin/activate
cd $SHARED/code
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
for attempt in \$(seq 0 $MAX_RESTARTS); do
  # one process per GPU; rerunning resumes from $WORKDIR/checkpoints
  srun --kill-on-bad-exit=1 python -m vau_jax.main $args--workdir=$WORKDIR \\
    --config.data_dir=$SHARED/data_cache && exit 0
  code=\$?
  [ "\$code" = 2 ] && { echo "bad input (exit 2): not retrying" >&2; exit 2; }
  echo "attempt \$attempt failed (exit \$code); resuming" >&2
  sleep 30
done
exit 1
EOF
}

run mkdir -p "$SHARED/code" "$WORKDIR"
if [ "$DRY" = 1 ]; then
  echo "git -C $(printf '%q' "$REPO") archive HEAD | tar x -C $(printf '%q' "$SHARED/code")"
else
  git -C "$REPO" archive HEAD | tar x -C "$SHARED/code"
fi
run python3 -m venv "$SHARED/venv"
run "$SHARED/venv/bin/pip" install -q -e "$SHARED/code[cuda12]"
[ -n "$DATA" ] && run rsync -a "$DATA/" "$SHARED/data/$(basename "$DATA")/"
[ -n "$CKPTS" ] && run rsync -a "$CKPTS/" "$SHARED/checkpoints/"
if [ "$DRY" = 1 ]; then
  echo "# $BATCH:"
  batch_script
else
  batch_script > "$BATCH"
fi
run sbatch "$BATCH"
