"""Command line: ``python -m vaedemo train | evaluate | list``."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading

from .models import GAN_AUGMENTS, REGISTRY


def _init_distributed(tc) -> int:
    """Under torchrun (WORLD_SIZE > 1): join the process group, NCCL on CUDA, gloo on CPU; returns the rank."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    from .device import pick_device

    device = pick_device(tc.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        tc.device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def _channels(text: str) -> tuple[int, int, int]:
    """Parses "32,64,128"; their range is checked with the rest of the model's settings (validate_config)."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3:
        raise argparse.ArgumentTypeError(f"expected three widths such as 32,64,128, not {text!r}")
    return widths


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import DATASETS
    from .runs import RunSpec, run
    from .training import TrainConfig

    if args.dataset not in DATASETS and not args.dataset.endswith(".zip") and "/" not in args.dataset:
        raise ValueError(f"Unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}, "
                         "or a folder/zip path.")
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     kl_warmup_epochs=args.kl_warmup, shift=args.shift, binarize=args.binarize,
                     schedule=args.schedule, patience=args.patience, device=args.device, precision=args.precision,
                     weight_decay=args.weight_decay, mmd=args.mmd, ema=args.ema)
    spec = RunSpec(name=args.name, model=args.model, dataset=args.dataset, latent_dim=args.latent_dim,
                   hidden_dim=args.hidden_dim, channels=args.channels, beta=args.beta,
                   prior_components=args.prior_components, d_norm=args.d_norm, d_augment=args.d_augment,
                   g_hidden=args.g_hidden,
                   d_hidden=args.d_hidden, resume=args.resume,
                   overwrite=args.overwrite,
                   max_train=args.max_train, iwae_k=args.iwae_k, train=tc,
                   command="python -m vaedemo " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C: finish the batch, keep the best epoch
    rank = _init_distributed(tc)
    bar = tqdm(total=args.epochs, unit="epoch", dynamic_ncols=True, disable=args.quiet or rank != 0)

    def progress(p):
        if p.stats is not None:
            s = p.stats
            bar.update(1)
            if s.g_loss is not None:  # a GAN: the two players' losses and the discriminator's verdicts
                bar.set_postfix(g=f"{s.g_loss:.3f}", d=f"{s.d_loss:.3f}", d_real=f"{s.d_real:.2f}",
                                d_fake=f"{s.d_fake:.2f}", sps=f"{s.samples_per_s:,.0f}")
            else:
                bar.set_postfix(train=f"{s.train_loss:.2f}", val=f"{s.val_loss:.2f}", kl=f"{s.val_kl:.2f}",
                                sps=f"{s.samples_per_s:,.0f}")

    outcome = run(spec, progress=progress, stop=stop)
    bar.close()
    if rank != 0:
        return 0
    if not outcome.saved:
        print("Stopped before the first epoch finished; nothing was saved.")
        return 1
    m = outcome.metrics
    line = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
    r = outcome.result
    print(f"saved checkpoint {outcome.name!r} ({r.epochs_done} epochs, best {r.best_epoch}, {r.precision}): {line}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .device import pick_device
    from .evaluation import full_evaluation

    metrics = full_evaluation(args.name, data=args.data, iwae_k=args.iwae_k, binarized=args.binarized,
                              seed=args.seed, samples=args.samples, device=pick_device(args.device))
    if args.record:
        from .cards import record_evaluation

        record_evaluation(args.name, metrics, " ".join(["python -m vaedemo", *map(shlex.quote, sys.argv[1:])]))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max(map(len, metrics))
        for k, v in metrics.items():
            print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def _cmd_classifier(args: argparse.Namespace) -> int:
    from .classifier import save_classifier, train_classifier
    from .data import load_dataset

    model, info = train_classifier(load_dataset("mnist-10k"), epochs=args.epochs, seed=args.seed)
    command = " ".join(["python -m vaedemo", *map(shlex.quote, sys.argv[1:])])
    save_classifier(model, args.name, {"command": command, "data": {"dataset": "mnist-10k", "split": "train"},
                                       "metrics": info})
    print(f"saved classifier {args.name!r}: validation accuracy {info['val_accuracy']:.4f}")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from .cards import write_card

    path = write_card(args.name)
    print(f"wrote {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .checkpoints import scan_checkpoints

    infos = scan_checkpoints()
    if not infos:
        print("No checkpoints yet. Train one: python -m vaedemo train --model vae --epochs 2 --name my-vae")
    for info in infos:
        if info.ok:
            val = (info.metrics or {}).get("evaluation") or (info.metrics or {}).get("validation", {})
            score = f"MSE {val['mse']:.4f}" if "mse" in val else ""
            if val.get("neg_elbo") is not None:
                score = f"-ELBO {val['neg_elbo']:.1f}"
            print(f"{info.name:<24} {info.kind:<9} latent {info.latent_dim:<4} {info.dataset:<12} {score}")
        else:
            print(f"{info.name:<24} BROKEN: {info.reason}")
    return 0


def _cmd_maps(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .inference import precompute_maps

    bar = tqdm(total=100, unit="%", disable=args.quiet)

    def progress(fraction: float, message: str) -> None:
        bar.n = int(fraction * 100)
        bar.set_description(message[:40])
        bar.refresh()

    paths = precompute_maps(args.name, progress)
    bar.close()
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .checkpoints import ensure_onnx, find

    for name in args.names:
        for path in ensure_onnx(find(name)).values():
            print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push

    url = push(args.name, args.repo, private=args.private)
    print(f"pushed {args.name!r} to {url}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    if args.host:
        os.environ["GRADIO_SERVER_NAME"] = args.host
    if args.port is not None:
        os.environ["PORT"] = str(args.port)
    from .custom import serve  # Gradio is imported only for this command

    serve(modules=args.model_module or ())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vaedemo", description="Train and evaluate autoencoders and VAEs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save it as a checkpoint")
    t.add_argument("--model", choices=list(REGISTRY), default="vae",
                   help="gan: a DCGAN, the lecture's implicit model (--hidden-dim sizes its inverter)")
    t.add_argument("--dataset", default="mnist-10k",
                   help="mnist-10k (bundled), mnist, fashion-mnist, kmnist, or a folder/zip")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--latent-dim", type=int, default=None)
    t.add_argument("--hidden-dim", type=int, default=None)
    t.add_argument("--channels", type=_channels, default=None,
                   help="conv widths of ae / conv-vae, e.g. 32,64,128 (default: the lecture's 8,16,32)")
    t.add_argument("--beta", type=float, default=None, help="KL weight (beta-VAE); default 1")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--kl-warmup", type=float, default=0.0, help="epochs over which the KL weight ramps up")
    t.add_argument("--shift", type=int, default=0, help="random shifts of up to this many pixels")
    t.add_argument("--binarize", action="store_true", help="train on stochastically binarized digits")
    t.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    t.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0: off)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="Adam's L2 penalty on the weights")
    t.add_argument("--mmd", type=float, default=0.0,
                   help="weight of an MMD penalty pulling the codes toward the prior (InfoVAE); "
                        "fewer unreadable samples")
    t.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999) "
                        "and save it instead of the last ones")
    t.add_argument("--prior-components", type=int, default=0, metavar="K",
                   help="VAEs: learn the prior as a mixture of K Gaussians instead of N(0, I) (0: N(0, I))")
    t.add_argument("--d-norm", choices=("spectral", "batch", "none"), default=None,
                   help="gan: the discriminator's normalisation (default: spectral)")
    t.add_argument("--d-augment", choices=GAN_AUGMENTS, default=None,
                   help="gan: DiffAugment (Zhao et al. 2020) on every image the discriminator sees, real or generated, "
                        "against its overfitting a small dataset (default: none)")
    t.add_argument("--g-hidden", type=int, default=None, metavar="N",
                   help="gan: a fully connected layer of N units opening the generator, as InfoGAN's (default: none)")
    t.add_argument("--d-hidden", type=int, default=None, metavar="N",
                   help="gan: a fully connected layer of N units before the discriminator's verdict (default: none)")
    t.add_argument("--max-train", type=int, default=None, help="use at most this many training digits")
    t.add_argument("--iwae-k", type=int, default=100, help="importance samples for the final NLL estimate")
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the networks' arithmetic: bf16 mixed precision (losses, prior and Adam stay fp32) or fp32; "
                        "auto (default): bf16 where the device computes it natively (AVX512-BF16/AMX CPUs, CUDA "
                        "sm80+), but fp32 for convolutional models on a CPU, which bf16 slowed there")
    t.add_argument("--amp", dest="precision", action="store_const", const="bf16", help="the same as --precision bf16")
    t.add_argument("--resume", action="store_true", help="continue training checkpoint NAME")
    t.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--name", required=True)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="print a checkpoint's metrics")
    e.add_argument("name")
    e.add_argument("--data", default=None, help=".npz with x (uint8 N×28×28) and optionally y")
    e.add_argument("--json", action="store_true")
    e.add_argument("--iwae-k", type=int, default=100)
    e.add_argument("--binarized", action="store_true", help="stochastically binarize the digits (fixed seed)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--samples", type=int, default=1000, help="prior samples scored by the digit classifier (0: skip)")
    e.add_argument("--record", action="store_true", help="store the result in the checkpoint's config.json")
    e.add_argument("--device", default=None)
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("train-classifier", help="train the digit classifier used to score samples")
    c.add_argument("--epochs", type=int, default=8)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--name", default="classifier-mnist")
    c.set_defaults(func=_cmd_classifier)

    card = sub.add_parser("card", help="write a checkpoint's model card (README.md) from its config")
    card.add_argument("name")
    card.set_defaults(func=_cmd_card)

    maps = sub.add_parser("maps", help="precompute a checkpoint's PCA, t-SNE and UMAP latent maps")
    maps.add_argument("name")
    maps.add_argument("--quiet", action="store_true")
    maps.set_defaults(func=_cmd_maps)

    onnx = sub.add_parser("export-onnx", help="write a checkpoint's decoder.onnx and encoder.onnx (for the page) "
                          "where they are missing; every save writes them already")
    onnx.add_argument("names", nargs="+", metavar="NAME")
    onnx.set_defaults(func=_cmd_export_onnx)

    push = sub.add_parser("push", help="upload a checkpoint to the Hugging Face Hub")
    push.add_argument("name")
    push.add_argument("--repo", required=True, help="user/name on the Hub")
    push.add_argument("--private", action="store_true")
    push.set_defaults(func=_cmd_push)

    serve = sub.add_parser("serve", help="start the web app (what python app.py does)")
    serve.add_argument("--host", default=None, help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default $PORT, $GRADIO_SERVER_PORT or 7860)")
    serve.add_argument("--model-module", action="append", default=None, metavar="PATH.py:build",
                       help="also serve your own model(s): build() returns a torch.nn.Module with encode(x) -> "
                            "(mu, logvar or None) and decode(z) -> (N, 1, 28, 28), or a dict of name -> module "
                            "(repeatable)")
    serve.set_defaults(func=_cmd_serve)

    ls = sub.add_parser("list", help="list checkpoints")
    ls.set_defaults(func=_cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
