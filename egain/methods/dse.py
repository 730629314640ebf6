"""``dse``: the diverse-similarity encoder (Yu & Wang, seeds/003), for StyleGAN-family generators.

Inversion: ``(z_c', w') = E(x)``, ``y = G(w')`` (the generator's own constant input and fixed
noise, as the published code decodes; z_c' is returned in ``extras["constant"]``). No average latent
is added: E predicts w directly.

Training is self-supervised on generated samples (paper Algorithm 1, reference sec. 5.3): every
step draws z ~ N(0, I), w = M(z) with truncation psi 0.7 on the coarse rows, x = G(w), and trains
E on ``L_IMG`` of (x, G(E(x))) over the three-scale areas plus ``epsilon L_LV`` of (w, w'). The
batch the trainer hands over is ignored except for its size: DSE never reads the data folder
during training (``--data`` only feeds validation). Loss weights are the paper's (alpha 5 MSE,
beta 3 COS, gamma 2 LPIPS, delta 1 SSIM, epsilon 0.01, KL 1; the published code leaves KL out:
``--lambda-kl 0``), the areas weigh mu1 0.375 and mu2 0.625 (the paper's, for aligned faces).
The paper trains with Adam lr 0.0015, betas (0, 0.99); egain's trainer uses Adam's default betas,
so pass ``--lr 0.0015``.

**DSE (E)**, the paper's best real-image result: ``invert(images, finetune_steps=N)`` (or the config
``finetune_steps``) fine-tunes a copy of E on each image for N steps (published: 2001, Adam lr 0.005,
betas (0, 0.99), reset per image) on ``L_IMG`` over the areas + 0.01 (L_LV(w, w'') +
L_LV(z_c', z_c'')) with ``(z_c'', w'') = E(G(w))`` + 0.0003 ||w||_2, and keeps the code of the step
with the lowest image loss. The published script takes the image and latent losses as two optimiser
steps per iteration; here both are one step (the paper's Algorithm 1, line 12).

Not covered: DSE for PGGAN and BigGAN (other generator families), misaligned images (Grad-CAM areas).

Published weights: the authors' ``BE`` state dicts (``FromRGB.*``, ``decode_block.{i}.*``; Google
Drive folder linked from the DSE README) load with ``load_published_dse`` or
``create("dse", generator=G, checkpoint={"state_dict": load_checkpoint(PATH)})``. They were trained for the
genforce StyleGAN2 FFHQ generator, which must be converted to egain's generator to use them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from egain.editing.directions import DirectionLike, apply_edit
from egain.encoders.dse import NOISE_MODES, DSEEncoder, published_to_ours
from egain.errors import CheckpointError, EgainError
from egain.losses.dse import DSE_MU, DSE_WEIGHTS, latent_loss, tsa_image_loss
from egain.losses.reconstruction import FeatureDistance
from egain.methods import generator_io
from egain.methods.base import (
    RECONSTRUCTION_OPTIONS,
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
    replace_option,
)
from egain.methods.components import resolve_preset
from egain.methods.registry import register_method

PUBLISHED_AT = "https://github.com/disanda/DSE (README 'pre-trained GANs and their corresponding encoders', Google Drive)"
#: encoder widths: the published rule (startf 16 at 1024 px, doubling as the size halves; cap 512)
#: and a small encoder for the 64 px synthfaces world
PRESETS = {"published": {"maxf": 512}, "small": {"startf": 16, "maxf": 128}}


def truncated_codes(
    generator: nn.Module, n: int, psi: float, layers: int, w_avg: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """(n, n_latent, D) codes of random z with truncation ``psi`` on the first ``layers`` rows."""
    z = torch.randn(n, generator.style_dim, device=device)
    w = generator.mapping(z).unsqueeze(1).repeat(1, generator.n_latent, 1)
    if psi != 1.0 and layers > 0:
        rows = min(layers, generator.n_latent)
        w[:, :rows] = w_avg[:rows] + psi * (w[:, :rows] - w_avg[:rows])
    return w


@register_method(
    "dse",
    summary="DSE (Yu & Wang): generator-symmetric encoder to w and z_c, self-supervised on samples; DSE (E) fine-tuning",
    generator="stylegan2",
)
class DSE(InversionMethod):
    """DSE: a generator-symmetric encoder trained on generated samples; optional per-image fine-tuning."""

    loss_weights = dict(DSE_WEIGHTS, const=0.0)
    bundled_weights = "dse-stylegan2-64"
    loss_help = {
        "kl": "KL of the softmaxed vectors (images and w; the code leaves it out: 0)",
        "mse": "MSE, alpha (images and w)",
        "cos": "1 - cosine, beta (images and w)",
        "lpips": "LPIPS, gamma (the face-feature distance without --lpips)",
        "ssim": "1 - SSIM, delta",
        "latent": "epsilon: weight of the latent loss L_LV(w, w')",
        "const": "latent loss of z_c' against the generator's constant (computed, unused by the code)",
    }
    training_options = (
        TrainOption("tsa_mu1", DSE_MU[0], "DSE: weight of the AT1 area (paper 0.375; strategy 2: 5)", float),
        TrainOption("tsa_mu2", DSE_MU[1], "DSE: weight of the AT2 area (paper 0.625; strategy 2: 9)", float),
        TrainOption("truncation", 0.7, "DSE: truncation psi of the training samples", float),
        TrainOption("trunc_layers", -1, "DSE: rows truncated (-1: 8 of 18, scaled to the generator)", int),
        # no ID loss: the perceptual fallback's embedder is named here, not borrowed from --id-net
        *replace_option(
            [o for o in RECONSTRUCTION_OPTIONS if o.name != "id_net"],
            "perceptual_net",
            default="synthfaces-arcface",
            help="face embedder for the LPIPS fallback",
        ),
        TrainOption(
            "finetune_steps",
            0,
            "DSE (E): per-image fine-tuning steps at inversion (published: 2001)",
            int,
            target="config",
        ),
    )
    runtime_options = ("noise_mode", "finetune_steps", "finetune_lr", "finetune_perceptual")
    published_at = PUBLISHED_AT

    def __init__(
        self,
        generator: nn.Module,
        *,
        preset: str = "auto",
        startf: int | None = None,
        maxf: int | None = None,
        noise_mode: str = "random",
        finetune_steps: int = 0,
        finetune_lr: float = 0.005,
        finetune_perceptual: str | None = None,
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        self.generator = generator.requires_grad_(False).eval()
        if generator.n_latent % 2:
            raise EgainError(
                f"DSE reads two rows per block; the generator has {generator.n_latent} latent rows"
            )
        if noise_mode not in NOISE_MODES:
            raise EgainError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.input_size = int(generator.size)
        self.preset = resolve_preset(generator, preset)
        n_blocks = generator.n_latent // 2
        p = PRESETS[self.preset]
        self.startf = int(startf or p.get("startf") or max(1, 16 * 1024 // self.input_size))
        self.maxf = int(maxf or p["maxf"])
        self.noise_mode = noise_mode
        self.finetune_steps = int(finetune_steps)
        self.finetune_lr = float(finetune_lr)
        self.finetune_perceptual = finetune_perceptual
        self.encoder = DSEEncoder(n_blocks, generator.style_dim, self.startf, self.maxf)
        # w-bar of the mapping network: the truncation centre of the training samples
        if latent_avg is None:
            latent_avg = generator_io.mean_latent(generator)
        self.register_buffer("latent_avg", generator_io.as_wplus(latent_avg, generator).clone())
        self.config = {
            "preset": self.preset,
            "startf": self.startf,
            "maxf": self.maxf,
            "noise_mode": noise_mode,
            "finetune_steps": self.finetune_steps,
            "finetune_lr": self.finetune_lr,
            "finetune_perceptual": finetune_perceptual,
        }
        self._finetune_loss: nn.Module | None = None

    # -- inference --------------------------------------------------------------------------------

    def _inference_modules(self) -> tuple[nn.Module, ...]:
        # channels_last encoder and generator on CPU ("auto"), as the EGAIN family does (faster
        # oneDNN convolutions); outputs stay ordinary NCHW tensors. The trainer leaves NCHW.
        return (self.encoder,)

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesize(w, noise_mode="const")

    def encode(self, x: torch.Tensor, encoder: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return (encoder or self.encoder)(x, self.noise_mode)

    @torch.no_grad()
    def invert(self, images: ImageInput, finetune_steps: int | None = None) -> Inversion:
        """E(x) and G of it; with ``finetune_steps`` > 0 (or the config's), DSE (E) per image."""
        self.eval()
        x = self._layout(prepare_images(images, self.input_size, self.device))
        steps = self.finetune_steps if finetune_steps is None else int(finetune_steps)
        if steps <= 0:
            zc, w = self.encode(x)
            return Inversion(w, self.synthesize(w).contiguous(), {"constant": zc.contiguous()})
        ws, zcs, losses = [], [], []
        for i in range(x.shape[0]):
            zc, w, loss = self.finetune(x[i : i + 1], steps)
            ws.append(w)
            zcs.append(zc)
            losses.append(loss)
        w = torch.cat(ws)
        extras = {"constant": torch.cat(zcs).contiguous(), "finetune_loss": torch.stack(losses)}
        return Inversion(w, self.synthesize(w).contiguous(), extras)

    def _perceptual(self) -> nn.Module | None:
        if self.finetune_perceptual is None:
            return None
        if self._finetune_loss is None:
            from egain.faces import load_embedder

            # a plain attribute: the loss network is not part of the model (not in its state or file)
            object.__setattr__(
                self,
                "_finetune_loss",
                FeatureDistance(load_embedder(self.finetune_perceptual, device=self.device)),
            )
        return self._finetune_loss

    def finetune(self, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DSE (E) on one image (1, 3, S, S): (z_c', w, image loss) of the best step; E itself is untouched."""
        enc = copy.deepcopy(self.encoder).train()
        enc.requires_grad_(True)
        opt = torch.optim.Adam(enc.parameters(), lr=self.finetune_lr, betas=(0.0, 0.99))
        weights = {k: v for k, v in self.loss_weights.items()}
        perceptual = self._perceptual()
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None
        with torch.enable_grad():
            for _ in range(steps):
                zc, w = self.encode(x, enc)
                y = self.synthesize(w)
                img, _ = tsa_image_loss(x, y, weights, DSE_MU, perceptual)
                zc2, w2 = self.encode(y, enc)
                lv = latent_loss(w, w2, weights) + latent_loss(zc, zc2, weights)
                loss = img + weights["latent"] * lv + 0.0003 * w.norm(2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = float(img.detach())
                if best is None or value < best[0]:
                    best = (value, zc.detach(), w.detach())
        with torch.no_grad():  # the state after the last update may be the best
            zc, w = self.encode(x, enc)
            img, _ = tsa_image_loss(x, self.synthesize(w), weights, DSE_MU, perceptual)
            if best is None or float(img) < best[0]:
                best = (float(img), zc, w)
        return best[1], best[2], torch.tensor(best[0])

    @torch.no_grad()
    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: DirectionLike, strength: float = 1.0) -> torch.Tensor:
        """G(w + alpha d) on every row (DSE's ``embeded_img_edit.py``)."""
        w = inversion.latents.to(self.device)
        return self.synthesize(apply_edit(w, direction, strength)).contiguous()

    # -- training ---------------------------------------------------------------------------------

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        lam, opt = ctx.lambdas, ctx.options
        self.encoder.requires_grad_(True)
        # the loss network stays a plain attribute, out of the module tree (not saved with the model)
        perceptual: nn.Module | None = None
        if lam.get("lpips", 0) > 0:
            if opt.get("lpips"):
                from egain.metrics.lpips import load_lpips

                perceptual = load_lpips(
                    opt["lpips"], opt.get("lpips_backbone"), opt.get("lpips_linear"), device=ctx.device
                )
            else:
                from egain.faces import load_embedder

                spec = opt.get("perceptual_net")
                if spec is None:
                    raise EgainError(
                        "--lambda-lpips > 0 needs --perceptual-net SPEC or --lpips; or pass --lambda-lpips 0"
                    )
                perceptual = FeatureDistance(load_embedder(spec, device=ctx.device))
        object.__setattr__(self, "_perceptual_train", perceptual)
        layers = int(opt.get("trunc_layers", -1))
        self._trunc_layers = round(8 * self.generator.n_latent / 18) if layers < 0 else layers

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    @property
    def ddp_find_unused_parameters(self) -> bool:
        return True  # the last block's noise_weight_2 / bias_2 exist (published layout) but are unused

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step on generated samples; ``batch`` gives only the batch size (DSE reads no data)."""
        lam, opt = self.training_ctx.lambdas, self.training_ctx.options
        n = batch.shape[0]
        with torch.no_grad():
            w = truncated_codes(
                self.generator, n, opt["truncation"], self._trunc_layers, self.latent_avg, batch.device
            )
            x = self.synthesize(w)
        zc, w_pred = self.encode(x)
        y = self.synthesize(w_pred)
        img, terms = tsa_image_loss(x, y, lam, (opt["tsa_mu1"], opt["tsa_mu2"]), self._perceptual_train)
        lv = latent_loss(w, w_pred, lam)
        loss = img + lam["latent"] * lv
        terms = {**terms, "latent": lv.detach()}
        if lam.get("const", 0) > 0:
            const = self.generator.const
            if const.shape[1:] == zc.shape[1:]:
                lc = latent_loss(const.expand_as(zc), zc, lam)
                loss = loss + lam["const"] * lc
                terms["const"] = lc.detach()
        return loss, terms

    # -- published weights ----------------------------------------------------------------------

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> DSE:
        sd = ckpt.get("state_dict", ckpt)
        if not isinstance(sd, Mapping) or not any(str(k).startswith("decode_block.") for k in sd):
            raise CheckpointError(
                f"{where} is not a published DSE encoder (expected FromRGB.* and decode_block.* keys); "
                f"DSE is published at {PUBLISHED_AT}"
            )
        if generator is None:
            raise CheckpointError(
                f"{where}: a published DSE encoder carries no generator; pass generator=..."
            )
        dev = torch.device(device)
        g = generator_io.load_generator(generator, dev)
        startf = int(sd["FromRGB.from_rgb.weight"].shape[0])
        maxf = max(int(v.shape[0]) for k, v in sd.items() if k.endswith("conv_1.weight"))
        method = cls(generator=g, preset="published", startf=startf, maxf=maxf, **config)
        state = published_to_ours(dict(sd), method.encoder)
        own = method.encoder.state_dict()
        unexpected = [k for k in state if k not in own]
        missing = [k for k in own if k not in state]
        if unexpected or missing:
            raise CheckpointError(
                f"{where} does not fit a DSE encoder for the {g.size} px generator "
                f"(unexpected {unexpected[:3]}, missing {missing[:3]})"
            )
        for k, v in own.items():
            if tuple(v.shape) != tuple(state[k].shape):
                raise CheckpointError(
                    f"{where}: '{k}' has shape {list(state[k].shape)}; expected {list(v.shape)}"
                )
        method.encoder.load_state_dict(state, strict=True)
        return method.to(dev)


def load_published_dse(
    path: str | os.PathLike, generator: Any, device: str | torch.device = "cpu", **config: Any
) -> DSE:
    """A published DSE encoder file (a raw ``BE`` state dict) with ``generator``; a missing file says where it is published."""
    from egain.errors import missing_file_message
    from egain.methods.registry import create
    from egain.runtime.checkpoint import load_checkpoint

    if not os.path.exists(path):
        raise CheckpointError(
            missing_file_message(
                str(path), "DSE encoder", PUBLISHED_AT, "load_published_dse(PATH, generator=G)"
            )
        )
    sd = load_checkpoint(path, what="DSE encoder")
    return create("dse", generator=generator, checkpoint={"state_dict": dict(sd)}, device=device, **config)
