"""The plain training loop behind the ae-mnist probes in docs/checkpoint-experiments.md.

Not part of the app: it trains the lecture's conv AE (latent 4) on mnist-10k with one change at a
time and prints the validation MSE (grey digits in and out, as `python -m vaedemo evaluate`
measures it) every 20 epochs. The baseline is the shipped recipe: stochastically binarized digits,
BCE, Adam at 2e-3 with a cosine schedule, batch 128, 200 epochs. The page's figures were taken with
OMP_NUM_THREADS=1; another thread count sums in another order and moves the last digits.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/ae_probe.py    # baseline
    PYTHONPATH=. python scripts/ae_probe.py --drop 0.1           # dropout on the encoder's hidden layer
    PYTHONPATH=. python scripts/ae_probe.py --ntrain 4500 --epochs 400   # learning curve, equal steps
    PYTHONPATH=. python scripts/ae_probe.py --finetune-encoder ae-mnist --rot 10 --scale 0.1 --shift 1 \\
        --aug-target --epochs 40 --lr 1e-3                       # encoder only, decoder frozen
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F

from vaedemo.checkpoints import find, load_folder
from vaedemo.data import mnist10k, to_unit_float
from vaedemo.metrics import evaluate
from vaedemo.models import build_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=128, help="the lecture's fc2_input_dim")
    p.add_argument("--channels", default="8,16,32", help="conv widths; the lecture's are 8,16,32")
    p.add_argument("--ntrain", type=int, default=0, help="train on a random subset of this many digits")
    p.add_argument("--sigma", type=float, default=0.0, help="Gaussian noise on the codes while training")
    p.add_argument("--lam", type=float, default=0.0, help="L2 penalty on the codes (nats per unit)")
    p.add_argument("--drop", type=float, default=0.0, help="dropout on the encoder's hidden layer")
    p.add_argument("--sam", type=float, default=0.0, help="sharpness-aware minimisation radius rho")
    p.add_argument("--rot", type=float, default=0.0, help="random rotation of the input, degrees")
    p.add_argument("--scale", type=float, default=0.0, help="random zoom of the input, fraction")
    p.add_argument("--shift", type=float, default=0.0, help="random shift of the input, pixels")
    p.add_argument("--elastic", type=float, default=0.0, help="elastic distortion strength alpha (sigma 4)")
    p.add_argument("--aug-target", action="store_true",
                   help="reconstruct the distorted digit (default: the encoder sees it, the target is the original)")
    p.add_argument("--finetune-encoder", metavar="CHECKPOINT",
                   help="start from a checkpoint and train its encoder only, the decoder frozen")
    return p.parse_args(argv)


def distort(x: torch.Tensor, a) -> torch.Tensor:
    """Random affine (and optionally elastic) distortion of a batch of (N, 1, 28, 28) digits."""
    n = len(x)
    ang = (torch.rand(n) * 2 - 1) * a.rot * math.pi / 180
    s = 1 + (torch.rand(n) * 2 - 1) * a.scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(ang) / s
    theta[:, 0, 1] = -torch.sin(ang) / s
    theta[:, 1, 0] = torch.sin(ang) / s
    theta[:, :, 2] = (torch.rand(n, 2) * 2 - 1) * a.shift * 2 / 28
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    if a.elastic > 0:  # Simard et al. (2003): a smoothed random displacement field
        sigma, r = 4.0, 12
        k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma**2))
        k = k / k.sum()
        d = torch.rand(n * 2, 1, 28, 28) * 2 - 1
        d = F.conv2d(F.pad(d, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        d = F.conv2d(F.pad(d, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1)).view(n, 2, 28, 28)
        grid = grid + d.permute(0, 2, 3, 1) * a.elastic * 2 / 28
    return F.grid_sample(x, grid, align_corners=False)


def main(argv=None):
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    ds = mnist10k()
    train_digits = ds.x_train
    if a.ntrain:
        train_digits = train_digits[torch.randperm(len(train_digits))[: a.ntrain].numpy()]
    xt = to_unit_float(train_digits)
    if a.finetune_encoder:
        model, _ = load_folder(find(a.finetune_encoder))
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("encoder"))
    else:
        channels = tuple(int(c) for c in a.channels.split(","))
        model = build_model("ae", latent_dim=4, hidden_dim=a.hidden, channels=channels)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr)
    enc = model.encoder
    distorting = a.rot or a.scale or a.shift or a.elastic

    def encode_train(inp):
        h = enc.encoder_lin[1](enc.encoder_lin[0](enc.flatten(enc.encoder_cnn(inp))))
        return enc.encoder_lin[2](F.dropout(h, a.drop, training=a.drop > 0))

    def mse(images):  # measured as `python -m vaedemo evaluate` measures it
        return evaluate(model, images, iwae_k=0)["mse"]

    def loss_on(inp, target):
        codes = encode_train(inp)
        z = codes + a.sigma * torch.randn_like(codes) if a.sigma > 0 else codes
        loss = F.binary_cross_entropy_with_logits(model.decode_logits(z), target, reduction="sum") / len(inp)
        return loss + a.lam * codes.pow(2).sum(1).mean()

    t0 = time.time()
    for epoch in range(a.epochs):
        for group in opt.param_groups:
            group["lr"] = 0.5 * a.lr * (1 + math.cos(math.pi * epoch / a.epochs))
        model.train()
        if a.finetune_encoder:
            model.decoder.eval()  # its batch-norm statistics stay as trained
        for idx in torch.randperm(len(xt)).split(a.batch_size):
            grey = xt[idx]
            if distorting:
                seen = distort(grey, a)
                inp = torch.bernoulli(seen)
                target = inp if a.aug_target else torch.bernoulli(grey)
            else:
                inp = target = torch.bernoulli(grey)
            opt.zero_grad()
            loss_on(inp, target).backward()
            if a.sam > 0:  # Foret et al. (2021): the gradient at the worst nearby weights
                grads = [p for p in params if p.grad is not None]
                norm = torch.norm(torch.stack([p.grad.norm() for p in grads])) + 1e-12
                steps = [a.sam * p.grad / norm for p in grads]
                with torch.no_grad():
                    for p, e in zip(grads, steps):
                        p.add_(e)
                opt.zero_grad()
                loss_on(inp, target).backward()
                with torch.no_grad():
                    for p, e in zip(grads, steps):
                        p.sub_(e)
            opt.step()
        if epoch % 20 == 19 or epoch == a.epochs - 1:
            print(f"epoch {epoch + 1}: validation MSE {mse(ds.x_val):.5f}, "
                  f"training MSE {mse(train_digits[:2000]):.5f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
