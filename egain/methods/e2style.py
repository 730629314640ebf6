"""``e2style``: E2Style (Wei et al., seeds/004): efficient heads and multi-stage refinement.

Inversion (Eq. 7, reference sec. 3.1 and 11)::

    W_1 = E_1(x) + w-bar                         stage 1 (image in, 3 channels)
    W_t = E_t(cat(x, pool(G(W_{t-1})))) + W_{t-1}   stages t > 1 (6 channels, a residual)
    y   = pool(G(W_T))                            ``pool`` = adaptive average pooling to the input size

Each stage is an :class:`~egain.encoders.e2style.E2StyleEncoder`. ``stages`` (1-3, default 2, the
paper's choice) is how many are built; ``run_stages`` runs fewer at inference (the published
``--stage``). ``residual=False`` is Table I's ablation: the refinement stages predict the absolute
code (``E_t(...) + w-bar``) instead of a residual.

Training (the paper, sec. IV): stage 1 alone, then stage 2 with stage 1 frozen, and so on. A run
with ``--stages T`` trains stage T only; stages 1..T-1 come from ``--stage-checkpoint`` (an e2style
file with at least T-1 stages: ours or published) and stay frozen, in eval mode (their BatchNorm
statistics do not move), and run without a graph. The loss is on the final stage's image only
(Eq. 6): L2 1, LPIPS 0.8, multi-layer ID 0.5, multi-layer face parsing 1 (paper and README; the
code's default ID weight is 0.1).

Published weights (``{'state_dict': {encoder_firststage.*, encoder_refinestage_list.{s}.*,
decoder.*}, 'opts', 'latent_avg'}``) load through ``create("e2style", checkpoint=PATH)``; units
21-23 of the published body are unused by the published forward and are dropped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.editing.directions import DirectionLike, latent_offset, restrict_rows
from egain.encoders.e2style import POOL_CODE, POOL_PAPER, E2StyleEncoder, row_split
from egain.errors import CheckpointError, EgainError
from egain.losses.multilayer import MultiLayerIDLoss, MultiLayerParsingLoss, load_parsing_net
from egain.losses.reconstruction import FeatureDistance, l2_loss
from egain.methods import generator_io
from egain.methods.base import (
    CHECKPOINT_FORMAT,
    RECONSTRUCTION_OPTIONS,
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
)
from egain.methods.components import resolve_preset
from egain.methods.composition import TRAIN_FORMAT
from egain.methods.registry import register_method

PUBLISHED_AT = (
    "https://github.com/wty-ustc/e2style (README 'Pretrained Models': inversion stage 1/2/3 checkpoints)"
)

#: encoder bodies: the published IR-SE50 stages 1-3, and a small body for the 64 px synthfaces world
PRESETS: dict[str, dict[str, Any]] = {
    "published": {"depth": 50, "widths": (64, 128, 256)},
    "small": {"units": (1, 2, 2), "widths": (16, 32, 48), "stem_channels": 16},
}
POOLS = {"code": POOL_CODE, "paper": POOL_PAPER}


def _pools(value: str | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, str):
        if value not in POOLS:
            raise EgainError(f"pool_sizes must be 'code', 'paper' or three sizes, got {value!r}")
        return POOLS[value]
    pools = tuple(int(v) for v in value)
    if len(pools) != 3:
        raise EgainError(f"pool_sizes must be three sizes (deep, medium, shallow), got {pools}")
    return pools  # type: ignore[return-value]


@register_method(
    "e2style",
    summary="E2Style (Wei et al.): shallow IR-SE + efficient pooling heads, multi-stage residual refinement",
    generator="stylegan2",
)
class E2Style(InversionMethod):
    """E2Style: ``stages`` encoders, each refining the previous stage's code (Eq. 7)."""

    #: the bundled synthfaces model: a 1-stage E2Style on the bundled StyleGAN2 (stage 2 not yet trained)
    bundled_weights = "e2style-stylegan2-64"
    bundled_generator = "gan-stylegan2-64"

    loss_weights = {"l2": 1.0, "lpips": 0.8, "id": 0.5, "parse": 1.0, "w_norm": 0.0}
    loss_help = {
        "l2": "pixel MSE",
        "lpips": "LPIPS (the face-feature distance without --lpips)",
        "id": "multi-layer identity loss (5 levels of --id-net)",
        "parse": "multi-layer face-parsing loss (5 levels of --parsing-net; skipped without one)",
        "w_norm": "pSp w_norm: distance of the code to w-bar",
    }
    training_options = (
        TrainOption(
            "stages", 2, "E2Style: number of stages; the last one is trained", int, (1, 2, 3), "config"
        ),
        TrainOption(
            "stage_checkpoint",
            None,
            "E2Style: checkpoint (ours or published) whose first stages initialise and freeze stages 1..T-1",
            str,
        ),
        TrainOption(
            "absolute_refinement",
            False,
            "E2Style Table I ablation: refinement stages predict the absolute code, not a residual",
            bool,
        ),
        TrainOption(
            "pool_sizes",
            "code",
            "E2Style head pooling: code (7/7/7) or paper (7/5/3)",
            str,
            ("code", "paper"),
            "config",
        ),
        *RECONSTRUCTION_OPTIONS,
        TrainOption(
            "parsing_net",
            "synthfaces-parsing",
            "face-parsing network for --lambda-parse (default: the bundled one): synthfaces-parsing, a parser.pt, e2style-unet:PATH, "
            "bisenet:PATH, or a TorchScript file exporting features(images) -> 5 levels",
            str,
        ),
    )
    runtime_options = ("run_stages", "noise_mode")
    published_at = PUBLISHED_AT

    def __init__(
        self,
        generator: nn.Module,
        *,
        stages: int = 2,
        run_stages: int | None = None,
        residual: bool = True,
        input_size: int | None = None,
        preset: str = "auto",
        pool_sizes: str | Sequence[int] = "code",
        encoder: Mapping[str, Any] | None = None,
        rows: Sequence[int] | None = None,
        normalise: bool = True,
        noise_mode: str = "const",
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        if int(stages) < 1:
            raise EgainError(f"E2Style needs at least one stage, got stages={stages}")
        self.generator = generator.requires_grad_(False).eval()
        self.input_size = int(input_size or min(generator.size, 256))
        self.preset = resolve_preset(generator, preset)
        self.stages = int(stages)
        self.run_stages = self.stages if run_stages is None else int(run_stages)
        if not 1 <= self.run_stages <= self.stages:
            raise EgainError(
                f"run_stages must be between 1 and the {self.stages} trained stages, got {run_stages}"
            )
        self.residual = bool(residual)
        self.normalise = bool(normalise)
        self.noise_mode = str(noise_mode)
        pools = _pools(pool_sizes)
        body = {**PRESETS[self.preset], **dict(encoder or {})}
        # the input's channels (3, or e.g. one-hot parsing maps): stage 1 takes the input, later
        # stages the input and the previous reconstruction (3 more)
        self.input_nc = int(body.pop("input_nc", 3))
        if body.get("units") is not None:
            body["depth"] = None
        row_counts = tuple(int(r) for r in rows) if rows is not None else row_split(generator.n_latent)
        if sum(row_counts) != generator.n_latent:
            raise EgainError(
                f"rows {row_counts} do not add up to the generator's {generator.n_latent} latents"
            )
        self.encoders = nn.ModuleList(
            E2StyleEncoder(
                generator.n_latent,
                generator.style_dim,
                input_nc=self.input_nc if s == 0 else self.input_nc + 3,
                pool_sizes=pools,
                rows=row_counts,
                **body,
            )
            for s in range(self.stages)
        )
        if latent_avg is None:
            latent_avg = generator_io.mean_latent(generator)
        self.register_buffer("latent_avg", generator_io.as_wplus(latent_avg, generator).clone())
        self.config = {
            "stages": self.stages,
            "run_stages": run_stages,
            "residual": self.residual,
            "input_size": self.input_size,
            "preset": self.preset,
            "pool_sizes": pool_sizes if isinstance(pool_sizes, str) else list(pools),
            "encoder": dict(encoder or {}),
            "rows": list(row_counts) if rows is not None else None,
            "normalise": self.normalise,
            "noise_mode": self.noise_mode,
        }

    # -- inference --------------------------------------------------------------------------------

    def _inference_modules(self) -> tuple[nn.Module, ...]:
        # channels_last encoders and generator on CPU ("auto"), as the EGAIN family does (faster
        # oneDNN convolutions); outputs stay ordinary NCHW tensors. The trainer leaves NCHW.
        return (self.encoders,)

    def pool(self, image: torch.Tensor) -> torch.Tensor:
        """The published ``face_pool``: adaptive average pooling of G's output to the input size."""
        if image.shape[-1] == self.input_size:
            return image
        return F.adaptive_avg_pool2d(image, (self.input_size, self.input_size))

    def synthesize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesize(codes, noise_mode=self.noise_mode)

    def stage_code(
        self, s: int, x: torch.Tensor, codes: torch.Tensor | None, prev: torch.Tensor | None
    ) -> torch.Tensor:
        """W_s from the input, the previous code and the previous (pooled) image (Eq. 7)."""
        avg = self.latent_avg if self.normalise else 0
        if s == 0:
            return self.encoders[0](x) + avg
        out = self.encoders[s](torch.cat([x, prev], dim=1))
        return codes + out if self.residual else out + avg

    def run(
        self, x: torch.Tensor, stages: int | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Codes and pooled images of stages 1..``stages`` (the last image is the reconstruction)."""
        n = self.run_stages if stages is None else stages
        codes, prev = None, None
        all_codes, images = [], []
        for s in range(n):
            codes = self.stage_code(s, x, codes, prev)
            prev = self.pool(self.synthesize(codes))
            all_codes.append(codes)
            images.append(prev)
        return all_codes, images

    @torch.no_grad()
    def invert(self, images: ImageInput) -> Inversion:
        self.eval()
        x = self._layout(prepare_images(images, self.input_size, self.device, self.input_nc))
        codes, recs = self.run(x)
        extras = {"stage_latents": codes[:-1], "stage_reconstructions": [r.contiguous() for r in recs[:-1]]}
        return Inversion(codes[-1], recs[-1].contiguous(), extras)

    #: E2Style's editing code adds a direction to W+ rows 0-7 only (the 4-32 px layers); the same
    #: rows by resolution in a smaller generator are rows 0..min(8, n_latent)-1
    edit_rows = 8

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: DirectionLike, strength: float = 1.0) -> torch.Tensor:
        """G(w + offset) with the offset kept on rows 0-7 only, as E2Style's editing script does."""
        w = inversion.latents.to(self.device)
        off = latent_offset(w, direction, strength)
        off = restrict_rows(off, range(min(self.edit_rows, w.shape[1])))
        return self.pool(self.synthesize(w + off)).contiguous()

    # -- published weights ----------------------------------------------------------------------

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> E2Style:
        from egain.methods.published import _generator_for, _strict_load, split_prefixes

        dev = torch.device(device)
        parts = split_prefixes(ckpt)
        if "encoder_firststage" not in parts:
            raise CheckpointError(
                f"{where} has no encoder_firststage.* weights: it is not an E2Style inversion checkpoint "
                f"(E2Style is published at {PUBLISHED_AT})"
            )
        g = _generator_for(parts, ckpt, generator, dev, where)
        overrides, state = e2style_from_published(ckpt, g, where)
        overrides.update(config)
        method = cls(generator=g, latent_avg=state["latent_avg"], **overrides)
        _strict_load(method, state, ["encoders.", "latent_avg"], where)
        return method.to(dev)

    # -- training ---------------------------------------------------------------------------------

    @classmethod
    def build_for_training(
        cls, generator: nn.Module, options: Mapping[str, Any], device: torch.device, **config: Any
    ) -> E2Style:
        """Stage T's model; stages 1..T-1 (and w-bar) come from ``--stage-checkpoint``."""
        if options.get("absolute_refinement"):
            config = {**config, "residual": False}
        path = options.get("stage_checkpoint")
        stages = int(config.get("stages", 2))
        state: dict[str, torch.Tensor] = {}
        if path:
            arch, state, have = stages_from_checkpoint(path, generator)
            if have < stages - 1:
                raise EgainError(
                    f"--stage-checkpoint '{path}' has {have} stage(s); training stage {stages} needs the first "
                    f"{stages - 1}"
                )
            config = {**config, **arch}
            # only the frozen stages (and w-bar) come from the file; stage T starts fresh
            state = {k: v for k, v in state.items() if k == "latent_avg" or int(k.split(".")[1]) < stages - 1}
        elif stages > 1:
            raise EgainError(
                f"e2style trains stage {stages} with stages 1..{stages - 1} frozen: pass --stage-checkpoint "
                f"(an e2style file with {stages - 1} stage(s), e.g. from 'egain train --method e2style --stages "
                f"{stages - 1}', or a published E2Style checkpoint)"
            )
        method = cls(generator=generator, latent_avg=state.get("latent_avg"), **config).to(device)
        if state:
            missing, unexpected = method.load_state_dict(state, strict=False)
            if unexpected:
                raise CheckpointError(
                    f"--stage-checkpoint '{path}' does not fit this model ({list(unexpected)[:4]})"
                )
        return method

    @property
    def trained_stage(self) -> int:
        """Index of the stage a run trains (the last one)."""
        return self.stages - 1

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        lam, opt = ctx.lambdas, ctx.options
        self.run_stages = self.stages
        self.requires_grad_(False)
        self.encoders[self.trained_stage].requires_grad_(True)
        self._losses = _build_losses(lam, opt, ctx.device)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {f"stage{self.stages}": self.encoders[self.trained_stage]}

    def set_training_mode(self) -> None:
        # frozen stages and G in eval mode (the published train(): only the trained encoder trains)
        self.eval()
        self.encoders[self.trained_stage].train()

    accepts_target = True  # egain train --corrupt (Alg. 5/6): stages see ``batch``, losses ``target``
    input_channels_config = "encoder.input_nc"  # --corrupt parsing: every stage's input channels

    def training_step(
        self, batch: torch.Tensor, step: int, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lam = self.training_ctx.lambdas
        x = batch
        clean = batch if target is None else target
        t = self.trained_stage
        codes, prev = None, None
        if t > 0:
            with torch.no_grad():
                all_codes, images = self.run(x, stages=t)
            codes, prev = all_codes[-1], images[-1]
        w = self.stage_code(t, x, codes, prev)
        y = self.pool(self.synthesize(w))
        terms: dict[str, torch.Tensor] = {"l2": l2_loss(y, clean)}
        losses = self._losses
        if lam["lpips"] > 0 and losses.get("lpips") is not None:
            terms["lpips"] = losses["lpips"](y, clean).mean()
        if lam["id"] > 0 and losses.get("id") is not None:
            terms["id"] = losses["id"](y, clean)
        if lam["parse"] > 0 and losses.get("parse") is not None:
            terms["parse"] = losses["parse"](y, clean)
        if lam["w_norm"] > 0:
            terms["w_norm"] = (w - self.latent_avg).flatten(1).norm(2, dim=1).mean()
        loss = sum(lam[k] * v for k, v in terms.items())
        return loss, terms

    def training_info(self) -> dict[str, Any]:
        return {"stage": self.stages}

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> tuple[dict[str, float], list[torch.Tensor]]:
        """L2 of every stage's reconstruction; grid rows: sources, then one row per stage."""
        self.eval()
        _, recs = self.run(images, stages=self.stages)
        scores = {f"val_l2_stage{i + 1}": float(F.mse_loss(r, images)) for i, r in enumerate(recs)}
        scores["val_l2"] = scores[f"val_l2_stage{len(recs)}"]
        return scores, [images, *recs]


def _build_losses(
    lam: Mapping[str, float], opt: Mapping[str, Any], device: torch.device
) -> dict[str, nn.Module | None]:
    """LPIPS (or the face-feature distance), multi-layer ID and multi-layer parsing, as weighted."""
    from egain.faces import load_embedder

    losses: dict[str, nn.Module | None] = {"lpips": None, "id": None, "parse": None}
    embedders: dict[str, nn.Module] = {}

    def embedder(spec: Any, term: str) -> nn.Module:
        if spec is None:
            raise EgainError(
                f"--lambda-{term} > 0 needs a face embedder (--id-net SPEC) or pass --lambda-{term} 0"
            )
        if spec not in embedders:
            try:
                embedders[spec] = load_embedder(spec, device=device)
            except EgainError as exc:
                raise type(exc)(f"{exc} (or pass --lambda-{term} 0 to train without this term)") from None
        return embedders[spec]

    if lam.get("id", 0) > 0:
        losses["id"] = MultiLayerIDLoss(embedder(opt.get("id_net"), "id"), levels=5)
    if lam.get("lpips", 0) > 0:
        if opt.get("lpips"):
            from egain.metrics.lpips import load_lpips

            losses["lpips"] = load_lpips(
                opt["lpips"], opt.get("lpips_backbone"), opt.get("lpips_linear"), device=device
            )
        else:
            losses["lpips"] = FeatureDistance(
                embedder(opt.get("perceptual_net") or opt.get("id_net"), "lpips")
            )
    if lam.get("parse", 0) > 0:
        spec = opt.get("parsing_net")
        if spec is None:
            warnings.warn(
                "e2style: no --parsing-net given, so the multi-layer face-parsing loss (--lambda-parse) is skipped; "
                "pass --parsing-net synthfaces-parsing (or RUN/parser.pt, e2style-unet:PATH) to use it",
                stacklevel=2,
            )
        else:
            losses["parse"] = MultiLayerParsingLoss(load_parsing_net(spec, device), levels=5)
    return losses


# ------------------------------------------------------------------------------------------------
# checkpoints: published layout and stage initialisation


def _published_body(enc: Mapping[str, torch.Tensor], where: str) -> tuple[dict[str, Any], set[int]]:
    """Body options of a published stage encoder, and the unit indices past stage 3 (unused, dropped)."""
    if "input_layer.0.weight" not in enc or "output_layer_3.3.weight" not in enc:
        raise CheckpointError(f"{where}: stage encoder lacks input_layer.* or output_layer_3.* (not E2Style)")
    n_units = 1 + max(int(k.split(".")[1]) for k in enc if k.startswith("body."))
    widths: list[int] = []
    units: list[int] = []
    stage_of: list[int] = []
    for i in range(n_units):
        depth = int(enc[f"body.{i}.res_layer.1.weight"].shape[0])
        if i == 0 or depth != widths[-1]:
            widths.append(depth)
            units.append(0)
        units[-1] += 1
        stage_of.append(len(widths) - 1)
    if len(widths) < 3:
        raise CheckpointError(f"{where}: encoder body has {len(widths)} stages; E2Style needs 3")
    dropped = {i for i, s in enumerate(stage_of) if s >= 3}
    body = {
        "units": tuple(units[:3]),
        "widths": tuple(widths[:3]),
        "stem_channels": int(enc["input_layer.0.weight"].shape[0]),
        "se": any(".res_layer.5." in k for k in enc),
    }
    return body, dropped


def _head_shape(enc: Mapping[str, torch.Tensor], name: str, style_dim: int) -> tuple[int, int]:
    """(pool size, rows) of a published head from its BN width and linear shape."""
    c = int(enc[f"{name}.0.weight"].shape[0])
    out_f, in_f = (int(s) for s in enc[f"{name}.3.weight"].shape)
    pool = int(round((in_f / c) ** 0.5))
    if pool * pool * c != in_f or out_f % style_dim:
        raise CheckpointError(
            f"{name}.3.weight {[out_f, in_f]} does not fit BN({c}) x pool^2 -> rows x {style_dim}"
        )
    return pool, out_f // style_dim


def _stage_to_ours(enc: Mapping[str, torch.Tensor], index: int, dropped: set[int]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in enc.items():
        if key.startswith("body."):
            if int(key.split(".")[1]) in dropped:
                continue
            new = "body." + key
        elif key.startswith("input_layer."):
            new = "body." + key
        else:
            new = key
        out[f"encoders.{index}.{new}"] = value
    return out


def e2style_from_published(
    ckpt: Mapping[str, Any], generator: nn.Module, where: str = "checkpoint"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state in our names) from a published E2Style checkpoint dict."""
    from egain.methods.published import split_prefixes

    parts = split_prefixes(ckpt)
    first = parts.get("encoder_firststage")
    if first is None:
        raise CheckpointError(f"{where} has no encoder_firststage.* weights (not an E2Style checkpoint)")
    refine: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in parts.get("encoder_refinestage_list", {}).items():
        m = re.match(r"(\d+)\.(.*)", key)
        if m:
            refine.setdefault(int(m.group(1)), {})[m.group(2)] = value
    style_dim = generator.style_dim
    body, dropped = _published_body(first, where)
    pools, rows = zip(
        *(_head_shape(first, n, style_dim) for n in ("output_layer_3", "output_layer_4", "output_layer_5")),
        strict=True,
    )
    if sum(rows) != generator.n_latent:
        raise CheckpointError(
            f"{where}: the encoder predicts {sum(rows)} x {style_dim} codes; the generator "
            f"({generator.size} px) takes {generator.n_latent} x {generator.style_dim}"
        )
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
    stages = 1 + len(refine)
    config: dict[str, Any] = {
        "stages": stages,
        "encoder": body,
        "pool_sizes": list(pools),
        "rows": list(rows) if tuple(rows) != row_split(generator.n_latent) else None,
        "input_size": int(opts.get("resize_size", 0) or 0) or min(generator.size, 256),
        "normalise": bool(opts.get("start_from_latent_avg", True)),
        "preset": "published",
    }
    state = _stage_to_ours(first, 0, dropped)
    for s in sorted(refine):
        if s != len([k for k in refine if k < s]):
            raise CheckpointError(f"{where}: refinement stages are not numbered 0..{len(refine) - 1}")
        _, dropped_s = _published_body(refine[s], where)
        state.update(_stage_to_ours(refine[s], s + 1, dropped_s))
    avg = ckpt.get("latent_avg")
    state["latent_avg"] = generator_io.as_wplus(
        avg if isinstance(avg, torch.Tensor) else generator_io.mean_latent(generator), generator
    )
    return config, state


#: configuration keys that describe the architecture of the stages (taken from a stage checkpoint)
_ARCH_KEYS = ("input_size", "preset", "pool_sizes", "encoder", "rows", "normalise")


def stages_from_checkpoint(
    path: str, generator: nn.Module
) -> tuple[dict[str, Any], dict[str, torch.Tensor], int]:
    """(architecture config, state, number of stages) of an e2style checkpoint: ours, a training run's, or published."""
    from egain.runtime.checkpoint import float32_state, load_checkpoint

    ckpt = load_checkpoint(generator_io.resolve_path(path), what="e2style stage checkpoint")
    if ckpt.get("egain_format") == TRAIN_FORMAT:
        ckpt = ckpt["model"]
    if ckpt.get("egain_format") == CHECKPOINT_FORMAT:
        if ckpt.get("method") != "e2style":
            raise CheckpointError(
                f"--stage-checkpoint '{path}' holds a '{ckpt.get('method')}' model, not e2style"
            )
        generator_io.check_compatible(ckpt.get("generator", {}), generator, f"stage checkpoint '{path}'")
        cfg = ckpt["config"]
        state = {
            k: v
            for k, v in float32_state(ckpt["state_dict"]).items()
            if k.startswith("encoders.") or k == "latent_avg"
        }
        return {k: cfg[k] for k in _ARCH_KEYS if k in cfg}, state, int(cfg["stages"])
    cfg, state = e2style_from_published(ckpt, generator, where=f"stage checkpoint '{path}'")
    return {k: cfg[k] for k in _ARCH_KEYS}, state, int(cfg["stages"])
