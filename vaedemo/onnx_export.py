"""A model's decoder and encoder as ONNX files, for the page to run in the browser (onnxruntime-web).

``decoder.onnx``: inputs ``z`` (N, D) float32 and, for a conditional model, ``y`` (N, 10) float32 one-hot
labels; output ``probs`` (N, 1, 28, 28), the pixel probabilities ``model.decode`` returns.
``encoder.onnx``: inputs ``x`` (N, 1, 28, 28) float32 in [0, 1] (and ``y`` as above); outputs ``mu`` (N, D)
and, for a VAE, ``logvar`` (N, D). A GAN has no encoder file: its ``encode`` is an optimisation loop
(GAN inversion), which the page leaves to the server. The batch size N is free in both.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn as nn

from .models import LatentModel

DECODER = "decoder.onnx"
ENCODER = "encoder.onnx"
OPSET = 18  # onnxruntime-web 1.2x runs it; every op these networks use exists since opset 13


class _Decoder(nn.Module):
    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self.model.decode(z)
        # A cvae's decode() checks and one-hot encodes integer labels with Python control flow, which a
        # trace would bake in; the exported graph takes the one-hot rows themselves (MLPVAE's own layers).
        s = self.model.config.image_size
        return torch.sigmoid(self.model.Decoder(torch.cat([z, y], dim=1))).view(-1, 1, s, s)


class _Encoder(nn.Module):
    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        if y is None:
            mu, logvar = self.model.encode(x)
        else:
            mu, logvar = self.model.Encoder(torch.cat([x.flatten(1), y], dim=1))
        return mu if logvar is None else (mu, logvar)


def has_encoder(model: LatentModel) -> bool:
    """Whether the model's encoder can be exported: not a GAN's, whose encode() is a search."""
    return not getattr(model, "implicit", False)


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    axes = {name: {0: "n"} for name in (*inputs, *outputs)}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True, which takes ~10x longer (1.5 s
        # against 0.15 s for a conv VAE): too slow for every save of a training run. Both give the same graph here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    return buf.getvalue()


def export_files(model: LatentModel) -> dict[str, bytes]:
    """{``decoder.onnx``: bytes, ``encoder.onnx``: bytes} for ``model`` (no encoder for a GAN).

    Works on a CPU float32 copy in eval mode, so the caller's model (training, on a GPU) is untouched.
    Raises ValueError with a sentence when the model cannot be exported.
    """
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    conditional = bool(getattr(m, "conditional", False))
    n = 2  # any batch size: the axis is exported as free
    classes = int(getattr(m.config, "num_classes", 10))
    y = torch.eye(classes)[:n] if conditional else None
    z = torch.zeros(n, m.latent_dim)
    x = torch.full((n, 1, 28, 28), 0.5)
    label = ["y"] if conditional else []
    try:
        with torch.no_grad():
            files = {DECODER: _export(_Decoder(m).eval(), (z, y) if conditional else (z,), ["z", *label], ["probs"])}
            if has_encoder(m):
                variational = bool(getattr(m, "variational", True))
                files[ENCODER] = _export(
                    _Encoder(m).eval(),
                    (x, y) if conditional else (x,),
                    ["x", *label],
                    ["mu", "logvar"] if variational else ["mu"],
                )
    except Exception as e:  # the exporter raises many kinds; a caller only needs to know it did not work
        raise ValueError(
            f"This {m.kind or 'model'} could not be exported to ONNX ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''})."
        ) from e
    return files
