#!/usr/bin/env bash
# Retrains every shipped checkpoint from scratch on the bundled mnist-10k (`make checkpoints`).
# Each model's exact command is also recorded in its config.json and model card.
# Takes about two hours on 2 CPU cores (the GAN about an hour of it); not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export VAEDEMO_CHECKPOINT_DIR=${VAEDEMO_CHECKPOINT_DIR:-checkpoints}

$PY -m vaedemo train-classifier --epochs 8 --name classifier-mnist

# Likelihood models train and are scored on stochastically binarized digits, as in the literature.
# Both VAEs that are scored on prior samples learn their prior (a mixture of 100 Gaussians) with the model.
$PY -m vaedemo train --model vae --latent-dim 200 --prior-components 100 --epochs 500 --binarize --shift 1 --kl-warmup 10 --schedule cosine --patience 80 --iwae-k 20 --quiet --overwrite --name vae-mnist
$PY -m vaedemo train --model vae --latent-dim 2 --epochs 150 --binarize --shift 1 --schedule cosine --patience 40 --iwae-k 20 --quiet --overwrite --name vae-mnist-2d
$PY -m vaedemo train --model cvae --latent-dim 16 --epochs 200 --binarize --shift 1 --kl-warmup 10 --schedule cosine --patience 40 --iwae-k 20 --quiet --overwrite --name cvae-mnist
# The conv VAE is 4x the lecture's widths.
$PY -m vaedemo train --model conv-vae --latent-dim 16 --channels 32,64,128 --hidden-dim 256 --prior-components 100 --epochs 100 --binarize --shift 1 --kl-warmup 10 --schedule cosine --patience 30 --iwae-k 20 --quiet --overwrite --name conv-vae-mnist
# No shift augmentation for the AE (4 numbers cannot also encode position); binarizing each epoch regularizes it.
$PY -m vaedemo train --model ae --latent-dim 4 --epochs 200 --binarize --schedule cosine --lr 2e-3 --patience 40 --quiet --overwrite --name ae-mnist
# The implicit model (a GAN): DCGAN's recipe (Adam 2e-4, beta1 0.5, batch 64) on grey digits, with a 64-unit fully
# connected layer opening the generator (docs/checkpoint-experiments.md); all 100 epochs are kept.
$PY -m vaedemo train --model gan --epochs 100 --lr 2e-4 --batch-size 64 --g-hidden 64 --quiet --overwrite --name gan-mnist

for name in vae-mnist vae-mnist-2d cvae-mnist conv-vae-mnist; do
  $PY -m vaedemo evaluate "$name" --binarized --iwae-k 500 --samples 1000 --record > /dev/null
done
$PY -m vaedemo evaluate ae-mnist --record > /dev/null
$PY -m vaedemo evaluate gan-mnist --samples 1000 --record > /dev/null  # no likelihood: inversion and samples
for name in ae-mnist vae-mnist vae-mnist-2d cvae-mnist conv-vae-mnist gan-mnist; do
  $PY -m vaedemo card "$name"
  $PY -m vaedemo maps "$name"
done
# Adam's state (kept for --resume) would triple the repository's size; the shipped models do not need it.
rm -f "$VAEDEMO_CHECKPOINT_DIR"/*/optimizer.safetensors
$PY -m vaedemo list
# The decoder and encoder as ONNX files, which the page runs in the browser (every save writes them; this makes
# them for checkpoints saved before that, and is a no-op otherwise).
$PY -m vaedemo export-onnx ae-mnist vae-mnist vae-mnist-2d cvae-mnist conv-vae-mnist gan-mnist
