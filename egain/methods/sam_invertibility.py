"""``sam-invertibility``: SAM's invertibility predictor as a trainable method (seeds/002 sec. 3.2).

The network (:mod:`egain.encoders.invertibility`: a base to 8 channels + one published-layout head
per latent space) regresses, for every pixel, the spatial perceptual error of inverting the image
into one latent space alone (W+, or W+ plus one unmasked feature residual F_k). The loss is the MSE
over all heads together (published ``train_invertibility.py``).

**Targets** are made by the project's own single-space inversions
(:func:`egain.methods.sam.measure_invertibility`: SAM's objective, Adam at lr 0.05 with the
projector's ramps, ``--target-steps`` steps, published 501), computed on the fly for each training
image the first time it is seen and kept in memory, keyed by a hash of the image (a flipped image
reuses its mirror's map, flipped); a resumed run recomputes them. The error map is the spatial
LPIPS-VGG distance when LPIPS files are given, else the spatial face-feature distance
(:meth:`egain.losses.reconstruction.FeatureDistance.spatial`), or pixel L2 with
``--error-metric l2``.

The trainer's optimiser (Adam at ``--lr``) replaces the published SGD (momentum 0.9, wd 5e-4,
poly schedule); the base is ours (a small U-Net, ``--base small``) unless ``--base deeplab`` builds
the published DeepLab-ResNet layout. ``invert`` runs ``sam`` with this predictor; ``predict`` gives
the maps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.encoders.invertibility import build_invertibility_net
from egain.methods.base import (
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
)
from egain.methods.optimise import PERCEPTUAL_OPTIONS, load_encoder
from egain.methods.registry import register_method
from egain.methods.sam import (
    SamObjective,
    error_scale,
    image_key,
    measure_invertibility,
    mvg_statistics,
    parse_spaces,
    pixel_error_map,
)


@register_method(
    "sam-invertibility",
    summary="SAM's invertibility predictor: per-space spatial error of single-latent inversions (trainable)",
    generator="any",
)
class SAMInvertibility(InversionMethod):
    """The predictor (module docstring); ``predict(images) -> (N, S, H, W)``."""

    bundled_weights = "sam-invertibility-stylegan2-64"
    bundled_generator = "gan-stylegan2-64"
    loss_weights = {"mse": 1.0}
    loss_help = {"mse": "MSE between predicted and measured error maps, all heads together (published)"}
    training_options = (
        TrainOption("spaces", "", "latent spaces, comma separated (default: as sam)", str, target="config"),
        TrainOption(
            "base",
            "small",
            "base network: ours (small U-Net) or the published DeepLab layout",
            str,
            ("small", "deeplab"),
            target="config",
        ),  # fmt: skip
        TrainOption("width", 16, "first-level channels of the small base", int, target="config"),
        TrainOption("levels", 3, "poolings of the small base", int, target="config"),
        TrainOption(
            "target_steps", 501, "steps of each single-space inversion making a target (published 501)", int
        ),
        TrainOption("target_lr", 0.05, "peak learning rate of those inversions"),
        TrainOption(
            "target_lambda_perceptual",
            1.0,
            "weight of the perceptual term in those inversions (lambda_lpips)",
        ),
        TrainOption(
            "target_init", "e4e", "their W+ start: 'mean' or a registry encoder (published: e4e)", str
        ),
        TrainOption("target_encoder_checkpoint", None, "weights of that encoder (default: bundled)", str),
        TrainOption(
            "error_metric",
            "perceptual",
            "target error map: spatial perceptual distance or pixel L2",
            str,
            ("perceptual", "l2"),
        ),  # fmt: skip
        TrainOption("mvg_samples", 5000, "mapped z of the prior's statistics", int),
        TrainOption("target_cache", 50000, "images whose targets are kept in memory", int),
        *(TrainOption(o.name, o.default, o.help, o.type, o.choices, "option") for o in PERCEPTUAL_OPTIONS),
    )

    def __init__(
        self,
        generator: nn.Module,
        *,
        spaces: str = "",
        base: str = "small",
        width: int = 16,
        levels: int = 3,
        deeplab: Mapping[str, Any] | None = None,
        target_error: str = "",
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        self.generator = generator.requires_grad_(False).eval()
        self.input_size = int(generator.size)
        self.spaces = parse_spaces(generator, spaces or None)
        names = [s.name for s in self.spaces]
        self.config = {"spaces": ",".join(names), "base": base, "width": int(width), "levels": int(levels)}
        if deeplab:
            self.config["deeplab"] = dict(deeplab)
        if target_error:  # the scale of the maps it predicts (sam's default tau depends on it)
            self.config["target_error"] = str(target_error)
        self.net = build_invertibility_net(names, base, int(width), int(levels), **dict(deeplab or {}))
        self._latent_avg = latent_avg
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._aux: dict[str, Any] = {}

    @property
    def predictor_config(self) -> dict[str, Any]:
        """Keywords of :func:`build_invertibility_net` rebuilding this network (sam-encoder stores it)."""
        c = self.config
        return {
            "spaces": c["spaces"].split(","),
            "base": c["base"],
            "width": c["width"],
            "levels": c["levels"],
            **c.get("deeplab", {}),
        }

    @property
    def space_names(self) -> list[str]:
        return [s.name for s in self.spaces]

    def predict(self, images: ImageInput) -> torch.Tensor:
        """(N, S, H, W) predicted error maps (non-negative; low = easy to invert)."""
        x = (
            images
            if isinstance(images, torch.Tensor)
            else prepare_images(images, self.input_size, self.device)
        )
        was = self.net.training
        self.net.eval()
        with torch.no_grad():
            out = self.net(x.to(self.device))
        self.net.train(was)
        return out

    def invert(self, images: ImageInput, **options: Any) -> Inversion:
        """SAM inversion with this predictor (``sam``'s defaults; ``options`` are sam's options)."""
        from egain.methods.registry import create

        sam = create(
            "sam", generator=self.generator, device=self.device, invertibility=_Predictor(self), **options
        )
        return sam.invert(images)

    # -- targets -------------------------------------------------------------------------------

    def _target_tools(self, options: Mapping[str, Any]) -> dict[str, Any]:
        if self._aux:
            return self._aux
        from egain.losses.reconstruction import build_perceptual_distance, build_spatial_perceptual

        dev = self.device
        lam_p = float(options.get("target_lambda_perceptual", 1.0))
        perc = build_perceptual_distance(options, dev) if lam_p > 0 else None
        err = (
            pixel_error_map if options.get("error_metric") == "l2" else build_spatial_perceptual(options, dev)
        )
        stats = mvg_statistics(self.generator, int(options.get("mvg_samples", 5000)))
        init = options.get("target_init", "e4e")
        enc = (
            None
            if init == "mean"
            else load_encoder(self.generator, init, options.get("target_encoder_checkpoint"), dev)
        )
        self._aux = {
            "objective": SamObjective(perc, stats, lambda_perceptual=lam_p),
            "error": err,
            "encoder": enc,
        }
        return self._aux

    def targets(self, x: torch.Tensor, options: Mapping[str, Any] | None = None) -> torch.Tensor:
        """(N, S, H, W) measured error maps of ``x``, from the cache where possible."""
        opts = dict(options if options is not None else getattr(self, "training_ctx", None).options)  # type: ignore[union-attr]
        keys = [image_key(im) for im in x]
        out: list[torch.Tensor | None] = []
        todo = []
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is None:
                mk = image_key(x[i].flip(-1))
                mirror = self._cache.get(mk)
                hit = mirror.flip(-1) if mirror is not None else None
            out.append(hit)
            if hit is None:
                todo.append(i)
        if todo:
            tools = self._target_tools(opts)
            xs = x[todo].detach()
            g = self.generator
            if tools["encoder"] is not None:
                with torch.no_grad():
                    w0 = g.to_wplus(tools["encoder"].invert(xs).latents.to(xs.device)).clone()
            else:
                avg = self._latent_avg if self._latent_avg is not None else g.average_latent()
                w0 = avg.reshape(1, 1, -1).to(xs.device).repeat(len(todo), g.n_latent, 1)
            maps = measure_invertibility(
                g, xs, w0, self.spaces, tools["objective"], tools["error"],
                steps=int(opts.get("target_steps", 501)), lr=float(opts.get("target_lr", 0.05)),
                desc="sam targets",
            ).detach()  # fmt: skip
            cap = int(opts.get("target_cache", 50000))
            for j, i in enumerate(todo):
                out[i] = maps[j]
                if cap > 0:
                    self._cache[keys[i]] = maps[j].cpu()
                    while len(self._cache) > cap:
                        self._cache.popitem(last=False)
        return torch.stack([t.to(x.device) for t in out])  # type: ignore[union-attr]

    # -- training ------------------------------------------------------------------------------

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        self.config["target_error"] = error_scale(ctx.options)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = self.targets(batch)
        loss = F.mse_loss(self.net(batch), target)
        return self.training_ctx.lambdas["mse"] * loss, {"mse": loss}

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> tuple[dict[str, float], list[torch.Tensor]]:
        """MSE against the measured maps and a grid: images, then predicted and measured map of each space."""
        target = self.targets(images)
        pred = self.predict(images)
        rows = [images]
        for i in range(pred.shape[1]):
            rows.append((pred[:, i : i + 1].clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1))
            rows.append((target[:, i : i + 1].clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1))
        return {"val_mse": float(F.mse_loss(pred, target))}, rows


class _Predictor(nn.Module):
    """The view of a :class:`SAMInvertibility` that ``sam`` uses (``spaces`` + ``predict``)."""

    def __init__(self, method: SAMInvertibility):
        super().__init__()
        self.method = method
        self.spaces = method.space_names

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.predict(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.predict(x)
