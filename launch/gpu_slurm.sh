#!/usr/bin/env bash
# SLURM batch script: one process per GPU, JAX reads the SLURM environment.
#   sbatch --nodes=4 --gpus-per-node=8 launch/gpu_slurm.sh --config=configs/vagpt.py:paper --workdir=/shared/runs/vagpt-paper
#SBATCH --job-name=vau_jax
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
set -euo pipefail
# A venv with the CUDA build of jax: pip install -e . 'jax[cuda12]==0.10.2'
. "${VENV:-$HOME/venv}/bin/activate"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
srun python -m vau_jax.main "$@"
