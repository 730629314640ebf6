"""``sam`` and ``sam-encoder``: spatially-adaptive multilayer inversion (Parmar et al., CVPR 2022;
seeds/002; adobe-research/sam_inversion).

An image is inverted into several latent spaces at once: W+ drives every block, and each feature
space F_k adds a residual Delta f_k to the output of the synthesis block that ends with conv layer
k (4x4 conv = 0), after that whole block (both convs and its ToRGB) has run, so only the following
blocks see it. Which space each image region uses is decided per segment:

1. **Invertibility.** A predictor (``sam-invertibility``) maps the image to one error map per space
   (the spatial perceptual error of a single-space inversion; low = easy to invert). Without a
   predictor the maps are *measured* by running those single-space inversions (slow, exact).
2. **Segments.** ``segmenter(images) -> (N, H, W)`` labels: the caller's ground-truth parsing maps
   (synthfaces, converted to the 19 CelebAMask/BiSeNet classes), the face-parsing network
   (``egain.faces.parsing``, when installed), or a regular grid. As the published face segmenter
   does, the face classes {skin, brows, eyes, ears, nose, mouth, lips, neck} are fused into one
   segment.
3. **Refine (threshold tau).** For every segment the mean error of each space is taken; candidates
   are visited from the least to the most editable space (F_largest ... F_smallest, W+) and the
   segment gets the *last* one whose mean is <= tau, i.e. the most editable space meeting the
   threshold; none qualifying gives the least editable one (published ``refine``).
4. **Optimise** W+ and every Delta f_k (masked by its Lanczos-resized region) with Adam (lr 0.05,
   1001 steps, the projector's ramps): MSE + perceptual on the clamped output, plus the
   regularisers lambda_mvg 1e-8 x sum over rows of the Mahalanobis distance of LeakyReLU(w, 5)
   (mean/cov of 5000 mapped z), lambda_delta 1e-3 x sum_i ||w_i - w_0||, lambda_f_rec 5 x
   sum_k mean(Delta f_k^2) -- the published code defaults.

**Editing** follows the published ``edit_image``: render the unedited features f_k (masked Delta f
included) at every attach point, then the edited code, replacing the block output by
``x (1 - m_k) + f_k m_k``: regions inverted into F_k keep their features up to block k and receive
the edited latent only afterwards.

**Attach points at 64 px.** The published spaces F4, F6, F8, F10 are the outputs of the 16, 32,
64 and 128 px blocks at every output size. A residual after the last block changes nothing, so on
a generator of size S only F_k whose block has a successor exist. By default we take the published
names that exist and add lower ones (F2: after the 8 px block) until there are three: 64 px ->
W+, F2, F4, F6 (8, 16, 32 px); 32 px -> W+, F2, F4; 256 px and up -> the published five.

Perceptual terms use LPIPS (VGG) when its files are given, else the project's face-feature
distance; the spatial error maps use their spatial versions (see docs/methods.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import CheckpointError, EgainError, InputError
from egain.methods.base import (
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
)
from egain.methods.optimise import (
    PERCEPTUAL_OPTIONS,
    OptimisationMethod,
    load_encoder,
    optimise,
    option,
    perceptual_input,
    projector_lr_ramp,
)
from egain.methods.registry import register_method

PUBLISHED_FEATURE_SPACES = ("F4", "F6", "F8", "F10")
#: CelebAMask-HQ / BiSeNet classes the published face segmenter fuses into one segment
FACE_CLASSES_19 = (1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14)
#: the published threshold, on the LPIPS-VGG scale of the published error maps
DEFAULT_TAU = 0.225
#: the published tau over the thesis' own W+ inversion error on faces: LPIPS-VGG 0.225 / 0.20
#: (seeds/002 Table 4.1, "StyleGAN2 (W+)", faces). On faces the typical image's W+ error sits just
#: under tau, so an average region stays in W+ and only regions markedly harder than a typical
#: face (accessories, rare details, hard backgrounds) go to the feature spaces.
TAU_RATIO = 0.225 / 0.20
#: tau for error maps not on the LPIPS scale, each = TAU_RATIO x the median image-mean W+ error
#: measured on held-out synthfaces test images (:func:`calibrate_tau`; docs/methods.md, "tau"),
#: keyed by (error scale, image size). The measured maps use e4e starts and 200 steps.
CALIBRATED_TAU: dict[tuple[str, int], float] = {
    # bundled gan-stylegan2-64 world, 16 synthfaces test images: 1.125 x median face W+ error 0.355
    ("face-features:synthfaces-arcface", 64): 0.40,
}


# ------------------------------------------------------------------------------------------------
# latent spaces and where they attach


@dataclass(frozen=True)
class LatentSpace:
    """A SAM latent space: "W+" (no feature residual) or "F<k>" (residual after the block ending
    with conv layer k, hooked at that block's ToRGB name)."""

    name: str
    layer: str | None  # the ToRGB name the residual is injected at (None for W+)
    conv: str | None  # the conv layer whose output the block emits (its feature before injection)
    channels: int
    resolution: int


def latent_space(generator: nn.Module, name: str) -> LatentSpace:
    """Resolve a space name on ``generator`` (refusing attach points with no following block)."""
    if name == "W+":
        return LatentSpace("W+", None, None, 0, 0)
    k = int(name[1:]) if name[:1] == "F" and name[1:].isdigit() else -1
    blocks = len(generator.rgb_names)
    if k < 0 or k % 2 or not 0 <= k // 2 < blocks - 1:
        usable = ", ".join(f"F{2 * b}" for b in range(blocks - 1))
        raise EgainError(
            f"latent space {name!r} does not exist on this {generator.size}px generator; use W+ or one of {usable}"
        )
    conv = generator.layer_names[k]
    info = generator.layer_info(conv)
    return LatentSpace(name, generator.rgb_names[k // 2], conv, int(info.channels), int(info.resolution))


def default_spaces(generator: nn.Module) -> list[str]:
    """W+ plus the published F4..F10 that exist on ``generator``, plus F2 (after the 8 px block)
    where fewer than three exist (module docstring). F0 (4 px) is never a default."""
    usable = [f"F{2 * b}" for b in range(len(generator.rgb_names) - 1)]
    chosen = [s for s in PUBLISHED_FEATURE_SPACES if s in usable]
    if len(chosen) < 3 and "F2" in usable:
        chosen.insert(0, "F2")
    return ["W+", *sorted(chosen, key=lambda s: int(s[1:]))]


def parse_spaces(generator: nn.Module, spaces: str | Sequence[str] | None) -> list[LatentSpace]:
    """Spaces from a comma list / sequence (default :func:`default_spaces`), W+ first, F by depth."""
    if spaces is None or spaces == "" or spaces == []:
        names = default_spaces(generator)
    else:
        names = [s.strip() for s in spaces.split(",")] if isinstance(spaces, str) else list(spaces)
    if "W+" not in names:
        raise EgainError(f"SAM's spaces must include W+ (it drives every block); got {', '.join(names)}")
    feats = sorted({n for n in names if n != "W+"}, key=lambda s: int(s[1:]) if s[1:].isdigit() else -1)
    return [latent_space(generator, n) for n in ["W+", *feats]]


def visiting_order(spaces: Sequence[LatentSpace]) -> list[int]:
    """Indices from the least to the most editable space: F_largest ... F_smallest, W+."""
    feats = [i for i, s in enumerate(spaces) if s.layer is not None]
    return sorted(feats, key=lambda i: -int(spaces[i].name[1:])) + [
        i for i, s in enumerate(spaces) if s.layer is None
    ]


# ------------------------------------------------------------------------------------------------
# segmentation


def fuse_face_classes(labels: torch.Tensor) -> torch.Tensor:
    """19-class CelebAMask maps with the published face classes merged into class 1 (skin)."""
    face = torch.isin(labels, torch.tensor(FACE_CLASSES_19, device=labels.device))
    return torch.where(face, torch.ones_like(labels), labels)


def synthfaces_to_celebamask(parsing: torch.Tensor) -> torch.Tensor:
    """Synthfaces class maps (22 classes) -> the 19 CelebAMask/BiSeNet classes."""
    from egain.data.synthfaces.parsing import TO_CELEBAMASK

    lut = torch.as_tensor(TO_CELEBAMASK.astype(np.int64), device=parsing.device)
    return lut[parsing.long()]


def grid_segments(n: int, size: int, cells: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W) labels of a regular ``cells`` x ``cells`` grid (the fallback segmenter)."""
    cells = max(1, min(int(cells), size))
    idx = torch.arange(size, device=device) * cells // size
    return (idx.view(-1, 1) * cells + idx.view(1, -1)).expand(n, -1, -1).clone()


class Segmenter:
    """``segmenter(images, parsing=None) -> LongTensor (N, H, W)`` at the images' size.

    ``mode``: "auto" (the caller's maps when given, else the parsing network when a checkpoint is
    named or the bundled one is installed, else the grid), "given", "parsing-net", "grid" or "none" (one segment). ``parsing``
    maps are synthfaces classes (``parsing_format="synthfaces"``) or already the 19 CelebAMask
    classes ("celebamask"). ``fuse_face`` merges the face classes into one segment (published).
    """

    MODES = ("auto", "given", "parsing-net", "grid", "none")

    def __init__(
        self,
        mode: str = "auto",
        *,
        parsing_checkpoint: str | None = None,
        grid_cells: int = 8,
        fuse_face: bool = True,
        parsing_format: str = "synthfaces",
    ):
        if mode not in self.MODES:
            raise EgainError(f"segmenter must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode, self.parsing_checkpoint = mode, parsing_checkpoint
        self.grid_cells, self.fuse_face, self.parsing_format = (
            int(grid_cells),
            bool(fuse_face),
            parsing_format,
        )
        self._net: Any = None

    def resolved_mode(self, parsing: torch.Tensor | None) -> str:
        if self.mode != "auto":
            return self.mode
        if parsing is not None:
            return "given"
        return "parsing-net" if self.parsing_checkpoint or _bundled_parser() else "grid"

    def __call__(self, images: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        n, size = images.shape[0], images.shape[-1]
        mode = self.resolved_mode(parsing)
        if mode == "none":
            return torch.zeros(n, size, size, dtype=torch.long, device=images.device)
        if mode == "grid":
            return grid_segments(n, size, self.grid_cells, images.device)
        if mode == "given":
            if parsing is None:
                raise InputError("segmenter 'given' needs parsing maps (invert(images, parsing=MAPS))")
            labels = torch.as_tensor(parsing).to(images.device).long()
            if labels.ndim == 2:
                labels = labels.unsqueeze(0)
            if labels.shape[0] != n:
                raise InputError(f"{labels.shape[0]} parsing maps for {n} images")
            if self.parsing_format == "synthfaces":
                labels = synthfaces_to_celebamask(labels)
        else:
            labels = self._parse(images)
        if tuple(labels.shape[-2:]) != (size, size):
            labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        return fuse_face_classes(labels) if self.fuse_face else labels

    def _parse(self, images: torch.Tensor) -> torch.Tensor:
        """The face-parsing network (``egain.faces.parsing``), imported only when used."""
        if self._net is None:
            try:
                from egain.faces import parsing as parsing_mod  # type: ignore[attr-defined]
            except ImportError:
                raise EgainError(
                    "segmenter 'parsing-net' needs egain.faces.parsing (the face-parsing network), "
                    "which this installation lacks; use --segmenter grid or pass parsing maps"
                ) from None
            loader = getattr(parsing_mod, "load_parser", None) or getattr(
                parsing_mod, "load_parsing_net", None
            )
            if loader is None:
                raise EgainError("egain.faces.parsing has no load_parser(); cannot build the parsing network")
            self._net = loader(self.parsing_checkpoint or "synthfaces-parsing", device=images.device)
        net = self._net
        with torch.no_grad():
            out = net.parse(images) if hasattr(net, "parse") else net(images)
        labels = out.argmax(1) if out.ndim == 4 else out.long()
        if len(getattr(net, "class_names", ())) > 19:  # a synthfaces parser: to the 19 CelebAMask classes
            labels = synthfaces_to_celebamask(labels)
        return labels


def _bundled_parser() -> bool:
    """Whether the bundled synthfaces parsing network (``faces-parsing-64``) is installed."""
    from egain import zoo

    return "faces-parsing-64" in set(zoo.available())


# ------------------------------------------------------------------------------------------------
# refine (threshold rule) and masks


def refine(
    errors: torch.Tensor, segments: torch.Tensor, tau: float, spaces: Sequence[LatentSpace]
) -> torch.Tensor:
    """The published threshold rule, batched: (N, S, H, W) error maps and (N, H, W) segment labels
    -> (N, H, W) index of the space every pixel's segment uses (module docstring, step 3)."""
    n, s = errors.shape[:2]
    if tuple(errors.shape[-2:]) != tuple(segments.shape[-2:]):
        errors = F.interpolate(errors, size=segments.shape[-2:], mode="bilinear", align_corners=False)
    seg = segments.long().to(errors.device)
    lo, hi = int(seg.min()), int(seg.max())
    ids = (seg - lo) + torch.arange(n, device=seg.device).view(-1, 1, 1) * (hi - lo + 1)  # per image
    uniq, inverse = torch.unique(ids.flatten(), return_inverse=True)
    flat = errors.permute(0, 2, 3, 1).reshape(-1, s).double()
    sums = torch.zeros(len(uniq), s, dtype=torch.float64, device=errors.device).index_add_(0, inverse, flat)
    counts = torch.bincount(inverse, minlength=len(uniq)).double().unsqueeze(1)
    ok = (sums / counts) <= tau
    order = visiting_order(spaces)
    choice = torch.full((len(uniq),), order[0], dtype=torch.long, device=errors.device)
    for i in order:
        choice = torch.where(ok[:, i], torch.full_like(choice, i), choice)
    return choice[inverse].view(n, *segments.shape[-2:])


def lanczos_resize(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) float masks -> (N, 1, size, size): PIL's Lanczos on float images, clipped to
    [0, max of the mask] (published ``resize_single_channel``)."""
    from PIL import Image

    out = []
    for m in mask.detach().float().cpu().numpy():
        img = Image.fromarray(m.astype(np.float32), mode="F").resize((size, size), resample=Image.LANCZOS)
        out.append(np.asarray(img).reshape(size, size).clip(0, m.max()))
    return torch.from_numpy(np.stack(out)).unsqueeze(1).to(mask.device)


def feature_masks(choice: torch.Tensor, spaces: Sequence[LatentSpace]) -> dict[str, torch.Tensor]:
    """One-hot regions of the chosen-space map resized to every feature space's resolution."""
    return {
        sp.name: lanczos_resize((choice == i).float(), sp.resolution)
        for i, sp in enumerate(spaces)
        if sp.layer is not None
    }


def multilayer_injection(
    spaces: Sequence[LatentSpace],
    residuals: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """``{ToRGB name: m_k * Delta f_k}`` for ``G.synthesize(injection=...)`` (no mask: unmasked)."""
    out = {}
    for sp in spaces:
        if sp.layer is not None and sp.name in residuals:
            d = residuals[sp.name]
            out[sp.layer] = d * masks[sp.name] if masks is not None else d
    return out


def synthesize_multilayer(
    generator: nn.Module,
    w: torch.Tensor,
    spaces: Sequence[LatentSpace],
    residuals: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
) -> torch.Tensor:
    """The multilayer latent's image: W+ with the masked residuals through the ``injection`` hook."""
    inj = multilayer_injection(spaces, residuals, masks)
    return generator.synthesize(w, noise_mode="const", injection=inj or None)


def edit_multilayer(
    generator: nn.Module,
    w: torch.Tensor,
    w_edit: torch.Tensor,
    spaces: Sequence[LatentSpace],
    residuals: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """The published editing rule (module docstring): F_k regions keep their unedited features up
    to block k and get the edited code after it; outside them the edited code runs throughout."""
    feats = [sp for sp in spaces if sp.layer is not None and sp.name in residuals]
    if not feats:
        return generator.synthesize(w_edit, noise_mode="const")
    inj = multilayer_injection(feats, residuals, masks)
    _, out = generator.synthesize(
        w, noise_mode="const", injection=inj, return_features=[sp.conv for sp in feats]
    )
    fusion = {}
    for sp in feats:
        m = masks[sp.name]
        frozen = out[sp.conv] + m * residuals[sp.name]
        fusion[sp.layer] = (-m, frozen * m)
    return generator.synthesize(w_edit, noise_mode="const", fusion=fusion)


# ------------------------------------------------------------------------------------------------
# the objective


@dataclass
class MVGStats:
    """Gaussian prior on v = LeakyReLU(w, 5): ``mean_v`` = LeakyReLU(mean w, 5) and the inverse of
    cov(v) + 1e-8 I, both float64 (published ``get_mvg_stats``)."""

    mean_v: torch.Tensor
    inv_cov_v: torch.Tensor


@torch.no_grad()
def mvg_statistics(generator: nn.Module, samples: int = 5000, seed: int = 0) -> MVGStats:
    gen = torch.Generator().manual_seed(int(seed))
    dev = generator.const.device
    z = torch.randn(int(samples), generator.style_dim, generator=gen).to(dev)
    w = torch.cat([generator.mapping(c) for c in z.split(4096)]).double()
    v = F.leaky_relu(w, 5.0)
    cov = torch.cov(v.T) + torch.eye(v.shape[1], dtype=torch.float64, device=dev) * 1e-8
    return MVGStats(F.leaky_relu(w.mean(0), 5.0), torch.linalg.inv(cov))


def mvg_loss(w: torch.Tensor, stats: MVGStats) -> torch.Tensor:
    """(N,) sum over the W+ rows of the Mahalanobis form (v - mean_v)^T C^-1 (v - mean_v)."""
    dv = F.leaky_relu(w.double(), 5.0) - stats.mean_v
    return torch.einsum("nld,de,nle->n", dv, stats.inv_cov_v, dv).to(w.dtype)


def delta_loss(w: torch.Tensor) -> torch.Tensor:
    """(N,) sum over rows i >= 1 of ||w_i - w_0||_2 (published ``delta_loss`` per image)."""
    return (w[:, 1:] - w[:, :1]).norm(dim=2).sum(1)


def f_rec_loss(residuals: Mapping[str, torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
    """(N,) sum over feature spaces of mean(Delta f^2) (published MSE(F_k, 0))."""
    total = like.new_zeros(n)
    for d in residuals.values():
        total = total + d.square().flatten(1).mean(1)
    return total


@dataclass
class SamObjective:
    """Weights and pieces of the SAM loss (published defaults)."""

    perceptual: nn.Module | None
    stats: MVGStats | None
    lambda_l2: float = 1.0
    lambda_perceptual: float = 1.0
    lambda_mvg: float = 1e-8
    lambda_delta: float = 1e-3
    lambda_f_rec: float = 5.0
    perceptual_size: int | None = 256

    def __call__(
        self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, residuals: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(per-image total (N,), terms) for output ``y`` of target ``x``."""
        rec = perceptual_input(y, self.perceptual_size).clamp(-1, 1)
        xt = perceptual_input(x, self.perceptual_size)
        terms = {"l2": (rec - xt).square().mean(dim=(1, 2, 3))}
        total = self.lambda_l2 * terms["l2"]
        if self.perceptual is not None and self.lambda_perceptual > 0:
            terms["perceptual"] = self.perceptual(rec, xt)
            total = total + self.lambda_perceptual * terms["perceptual"]
        if self.stats is not None and self.lambda_mvg > 0:
            terms["mvg"] = mvg_loss(w, self.stats)
            total = total + self.lambda_mvg * terms["mvg"]
        if self.lambda_delta > 0:
            terms["delta"] = delta_loss(w)
            total = total + self.lambda_delta * terms["delta"]
        if residuals and self.lambda_f_rec > 0:
            terms["f_rec"] = f_rec_loss(residuals, y.shape[0], y)
            total = total + self.lambda_f_rec * terms["f_rec"]
        return total, terms


def optimise_multilayer(
    generator: nn.Module,
    x: torch.Tensor,
    w_init: torch.Tensor,
    spaces: Sequence[LatentSpace],
    masks: Mapping[str, torch.Tensor] | None,
    objective: SamObjective,
    *,
    steps: int,
    lr: float,
    lr_rampdown: float = 0.25,
    lr_rampup: float = 0.05,
    keep_best: bool = False,
    desc: str = "sam",
) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
    """Adam on W+ and every feature residual (zero-initialised), batched per image.

    ``masks=None`` is a single-space inversion (the residuals act everywhere, as published
    ``single_latent_inv``). ``keep_best``: return each image's lowest-loss state, the start
    included (:func:`egain.methods.optimise.optimise`). Returns (w, residuals, optimisation record)."""
    n = x.shape[0]
    variables = {"w": w_init.detach().clone()}
    for sp in spaces:
        if sp.layer is not None:
            variables[sp.name] = x.new_zeros(n, sp.channels, sp.resolution, sp.resolution)
    names = [sp.name for sp in spaces if sp.layer is not None]

    def loss_fn(v: dict[str, torch.Tensor], rows: torch.Tensor | None, step: int):
        res = {k: v[k] for k in names}
        m = None if masks is None else {k: (mk if rows is None else mk[rows]) for k, mk in masks.items()}
        y = synthesize_multilayer(generator, v["w"], spaces, res, m)
        return objective(y, x if rows is None else x[rows], v["w"], res)

    with torch.enable_grad():
        record = optimise(
            variables,
            loss_fn,
            steps=int(steps),
            lr=lambda s: lr * projector_lr_ramp(s / max(1, steps), lr_rampdown, lr_rampup),
            keep_best=keep_best,
            desc=desc,
        )
    return variables["w"].detach(), {k: variables[k].detach() for k in names}, record


def measure_invertibility(
    generator: nn.Module,
    x: torch.Tensor,
    w_init: torch.Tensor,
    spaces: Sequence[LatentSpace],
    objective: SamObjective,
    error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    lr: float = 0.05,
    desc: str = "sam single-space",
) -> torch.Tensor:
    """(N, S, H, W) error maps of single-space inversions (one per space: W+ alone, or W+ with one
    unmasked residual), what the predictor learns to regress (published ``single_latent_inv``)."""
    maps = []
    for sp in spaces:
        w, res, _ = optimise_multilayer(
            generator, x, w_init, [sp] if sp.layer is not None else [], None, objective,
            steps=steps, lr=lr, desc=f"{desc} {sp.name}",
        )  # fmt: skip
        with torch.no_grad():
            y = synthesize_multilayer(generator, w, [sp], res, None).clamp(-1, 1)
            maps.append(error(y, x).float())
    return torch.cat(maps, 1)


def pixel_error_map(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) squared pixel error averaged over channels (the cheap error map)."""
    return (y - x).square().mean(1, keepdim=True)


def image_key(x: torch.Tensor) -> str:
    """A content hash of one image (3, H, W) (the predictor's target cache)."""
    return hashlib.sha1(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def sweep_thresholds(low: float = 0.1, high: float = 0.4, step: float = 0.025) -> list[float]:
    """The published ``--sweep_thresholds`` values: arange(low, high, step) plus 1.0."""
    return [round(float(t), 6) for t in np.arange(low, high, step)] + [1.0]


def error_scale(options: Mapping[str, Any]) -> str:
    """The scale an error map is on, from the options that make it: "l2" (squared pixel error),
    "lpips-vgg" / "lpips-alex" (LPIPS files named), else "face-features:NET" (the face-feature
    distance of ``perceptual_net``), the names :func:`build_spatial_perceptual` gives."""
    if options.get("error_metric") == "l2":
        return "l2"
    if options.get("lpips") or options.get("lpips_backbone") or options.get("lpips_linear"):
        return f"lpips-{options.get('lpips') or 'vgg'}"
    return f"face-features:{options.get('perceptual_net') or 'synthfaces-arcface'}"


def calibrate_tau(
    wplus_errors: torch.Tensor, region: torch.Tensor | None = None, ratio: float = TAU_RATIO
) -> float:
    """tau for error maps on any scale: ``ratio`` x the median over images of each image's mean W+
    error inside ``region`` ((N, H, W) bool, e.g. the fused face segment; an image whose region is
    empty, or ``region=None``, uses the whole image). Maps are (N, H, W) or (N, 1, H, W).

    With the published ratio this puts tau where the published 0.225 sits relative to the typical
    W+ error of a face (:data:`TAU_RATIO`): a typical face stays in W+, harder regions go deeper.
    The region matters for the face-feature maps, which concentrate their error on the face (the
    network looks at faces), unlike LPIPS's; the face segment is the region the thesis' sentence
    "faces are simple" is about."""
    e = wplus_errors.detach().double().reshape(wplus_errors.shape[0], -1)
    if region is None:
        per_image = e.mean(1)
    else:
        m = region.reshape(e.shape).to(e.device).double()
        area = m.sum(1)
        per_image = torch.where(area > 0, (e * m).sum(1) / area.clamp(min=1), e.mean(1))
    return float(
        ratio * torch.quantile(per_image, 0.5)
    )  # the middle value, or the mean of the two middle ones


def default_tau(
    scale: str, size: int, errors: torch.Tensor | None = None, region: torch.Tensor | None = None
) -> tuple[float, str]:
    """(tau, how it was chosen) when none is given: the published 0.225 on an LPIPS scale, the
    stored calibration for a known (scale, size), else :func:`calibrate_tau` on ``errors[:, 0]``
    inside ``region`` (the W+ maps of the images at hand: a relative threshold, less stable than a
    stored one)."""
    if scale.startswith("lpips"):
        return DEFAULT_TAU, "published (LPIPS scale)"
    if (scale, int(size)) in CALIBRATED_TAU:
        return CALIBRATED_TAU[(scale, int(size))], f"calibrated for {scale} at {size} px"
    if errors is None:
        raise EgainError(f"no stored tau for {scale} at {size} px; pass tau or the error maps to calibrate")
    return calibrate_tau(errors[:, 0], region), f"calibrated on these images' W+ maps ({scale})"


def face_region(segments: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: the fused face segment (class 1 after :func:`fuse_face_classes`)."""
    return segments == 1


def space_fractions(choice: torch.Tensor, spaces: Sequence[LatentSpace]) -> dict[str, float]:
    """Fraction of all pixels (over the batch) that each space was chosen for."""
    total = choice.numel()
    return {sp.name: float((choice == i).sum()) / total for i, sp in enumerate(spaces)}


def map_key(space: str) -> str:
    return space.replace("+", "plus").lower()


# ------------------------------------------------------------------------------------------------
# shared between sam and sam-encoder


def load_predictor(spec: Any, generator: nn.Module, device: torch.device) -> nn.Module:
    """The invertibility predictor from a ``sam-invertibility`` checkpoint (ours), SAM's released
    ``.pt`` (``sd_base`` + heads) or a built ``sam-invertibility`` object. Returns a module with
    ``spaces`` and ``forward(x) -> (N, S, H, W)``."""
    if isinstance(spec, nn.Module):
        return spec.to(device).eval()
    from egain.encoders.invertibility import from_published_invertibility, is_published_invertibility
    from egain.methods.generator_io import resolve_path
    from egain.methods.registry import create
    from egain.runtime.checkpoint import load_checkpoint

    ckpt = load_checkpoint(resolve_path(str(spec)), what="SAM invertibility predictor")
    if is_published_invertibility(ckpt):
        net = from_published_invertibility(ckpt, where=str(spec)).to(device).eval()
        net.error_scale = "lpips-vgg"  # the released targets are spatial LPIPS-VGG maps
        return net
    if isinstance(ckpt, Mapping) and ckpt.get("method") == "sam-invertibility":
        return create("sam-invertibility", generator=generator, checkpoint=ckpt, device=device).eval()
    raise CheckpointError(
        f"{spec} is neither a sam-invertibility checkpoint (egain train --method sam-invertibility) "
        "nor SAM's released invertibility file (sd_base + heads)"
    )


def bundled_predictor_name(generator: nn.Module) -> str | None:
    """The bundled ``sam-invertibility-*`` model trained on exactly ``generator`` (the zoo
    generator it references has equal weights), else None. A predictor regresses the errors of one
    generator's inversions, so it is only used, by default, on the generator it learned them on."""
    from egain import zoo
    from egain.generators import load_generator
    from egain.runtime.checkpoint import load_checkpoint

    state = generator.state_dict()
    for name in zoo.available():
        if not name.startswith("sam-invertibility-"):
            continue
        try:  # a broken bundled file must not stop SAM on other generators: it just is not used
            record = load_checkpoint(zoo.bundled_path(name), what="bundled SAM predictor").get("generator")
            gen_name = record.get("zoo") if isinstance(record, Mapping) else None
            if gen_name is None or gen_name not in zoo.available():
                continue
            ref = load_generator(zoo.bundled_path(gen_name), device="cpu").state_dict()
        except EgainError:
            continue
        if set(ref) != set(state) or any(ref[k].shape != state[k].shape for k in ref):
            continue
        if all(torch.equal(ref[k], state[k].detach().to("cpu")) for k in ref):  # one tensor at a time
            return name
    return None


def predictor_scale(predictor: nn.Module, options: Mapping[str, Any]) -> str:
    """The scale of a predictor's maps: what its targets were (``error_scale`` of a released file,
    ``target_error`` in a sam-invertibility config), else what ``options`` would measure."""
    scale = getattr(predictor, "error_scale", None)
    if isinstance(scale, str) and scale:
        return scale
    for obj in (predictor, getattr(predictor, "method", None)):
        cfg = getattr(obj, "config", None)
        if isinstance(cfg, Mapping) and cfg.get("target_error"):
            return str(cfg["target_error"])
    return error_scale(options)


def predictor_maps(predictor: nn.Module, x: torch.Tensor, spaces: Sequence[LatentSpace]) -> torch.Tensor:
    """(N, S, H, W) predicted error maps for ``spaces`` (picked by name from the predictor's heads)."""
    have = [getattr(s, "name", s) for s in getattr(predictor, "spaces", [])]
    missing = [sp.name for sp in spaces if sp.name not in have]
    if missing:
        raise EgainError(
            f"the invertibility predictor has no head for {', '.join(missing)} (it has {', '.join(have)}); "
            "train one for these spaces or choose --spaces among its heads"
        )
    with torch.no_grad():
        out = predictor.predict(x) if hasattr(predictor, "predict") else predictor(x)
    out = out[:, [have.index(sp.name) for sp in spaces]]
    if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def map_extras(
    errors: torch.Tensor, choice: torch.Tensor, segments: torch.Tensor, spaces: Sequence[LatentSpace]
) -> dict[str, torch.Tensor]:
    """The pictures ``egain invert`` writes (``*_map`` extras) plus the stacked maps."""
    out: dict[str, torch.Tensor] = {
        "invertibility_maps": errors,
        "layer_map": choice,
        "segment_map": segments,
    }
    for i, sp in enumerate(spaces):
        out[f"invertibility_{map_key(sp.name)}_map"] = errors[:, i : i + 1]
    return out


def multilayer_edit(
    generator: nn.Module,
    spaces: Sequence[LatentSpace],
    inversion: Inversion,
    direction: torch.Tensor,
    strength: float,
) -> torch.Tensor:
    dev = generator.const.device
    w = inversion.latents.to(dev)
    res = {k: v.to(dev) for k, v in inversion.extras.get("feature_residuals", {}).items()}
    masks = {k: v.to(dev) for k, v in inversion.extras.get("feature_masks", {}).items()}
    with torch.no_grad():
        return edit_multilayer(generator, w, w + strength * direction.to(dev), spaces, res, masks)


SAM_OPTIONS = (
    option("steps", 1001, "optimisation steps per image (num_opt_steps)", int),
    option("lr", 0.05, "peak Adam learning rate (projector ramps: cosine down 25%, linear up 5%)"),
    option("lr_rampdown", 0.25, "fraction of the run over which the learning rate ramps down"),
    option("lr_rampup", 0.05, "fraction of the run over which the learning rate ramps up"),
    option(
        "last_state",
        False,
        "return the state after the last step, as published (default: each image's lowest-loss "
        "state, its start included; they coincide after a full run, a few-step run may overshoot)",
        bool,
    ),
    option(
        "tau",
        None,
        "threshold: a segment takes the most editable space whose mean error <= tau (default: 0.225 "
        "on LPIPS maps, the calibrated value on face-feature maps; docs/methods.md)",
    ),
    option("spaces", "", "latent spaces, comma separated (default: W+ and three F_k, see docs)", str),
    option("lambda_l2", 1.0, "weight of the pixel MSE (lambda_mse)"),
    option("lambda_perceptual", 1.0, "weight of the perceptual term (lambda_lpips)"),
    option("lambda_mvg", 1e-8, "weight of the Gaussian prior on LeakyReLU(w, 5) (lambda_mvg)"),
    option("lambda_delta", 1e-3, "weight of sum_i ||w_i - w_0|| (lambda_delta)"),
    option("lambda_f_rec", 5.0, "weight of the feature-residual L2 (lambda_f_rec)"),
    option("mvg_samples", 5000, "mapped z for the prior's mean and covariance", int),
    option("perceptual_size", 256, "compare at this size (area downsampling of larger outputs)", int),
    option("init", "e4e", "W+ start: 'mean' (w-bar) or a registry encoder (published: e4e)", str),
    option("encoder_checkpoint", None, "weights of the init encoder (default: its bundled weights)", str),
    option(
        "invertibility",
        "auto",
        "predictor: a sam-invertibility checkpoint (path or zoo:NAME), SAM's released file, 'measure' "
        "(run the single-space inversions), or 'auto': the bundled predictor when it was trained on "
        "this very generator, else measure",
        str,
    ),
    option("measure_steps", 200, "steps of each single-space inversion when the maps are measured", int),
    option(
        "error_metric",
        "perceptual",
        "measured error map: spatial perceptual distance or pixel L2",
        str,
        choices=("perceptual", "l2"),
    ),  # fmt: skip
    option(
        "segmenter", "auto", "segments: auto, given, parsing-net, grid, none", str, choices=Segmenter.MODES
    ),
    option("parsing_checkpoint", None, "face-parsing network weights (segmenter parsing-net)", str),
    option("grid_cells", 8, "cells per side of the grid segmenter", int),
    option(
        "keep_face_classes", False, "do not fuse the face classes into one segment (published: fused)", bool
    ),
) + PERCEPTUAL_OPTIONS


@register_method(
    "sam",
    summary="SAM: spatially-adaptive multilayer inversion (W+ and masked feature residuals chosen per segment)",
    generator="stylegan2",
)
class SAM(OptimisationMethod):
    """SAM by optimisation (module docstring). ``invert(images, parsing=None, **options)``:
    ``parsing`` are the caller's parsing maps (N, H, W) for ``segmenter`` "auto"/"given"."""

    invert_options = SAM_OPTIONS

    def __init__(self, generator: nn.Module, *, latent_avg: torch.Tensor | None = None, **config: Any):
        pred = config.get("invertibility")
        if isinstance(pred, nn.Module):
            config = {**config, "invertibility": "<object>"}
        super().__init__(generator, latent_avg=latent_avg, **config)
        if isinstance(pred, nn.Module):
            self._aux["predictor"] = pred
        self.spaces = parse_spaces(generator, self.config["spaces"])

    # -- pieces ------------------------------------------------------------------------------

    def objective(self, cfg: Mapping[str, Any]) -> SamObjective:
        perc = self.perceptual(cfg) if cfg["lambda_perceptual"] > 0 else None
        stats = None
        if cfg["lambda_mvg"] > 0:
            key = ("mvg", int(cfg["mvg_samples"]), str(self.device))
            if key not in self._aux:
                self._aux[key] = mvg_statistics(self.generator, cfg["mvg_samples"])
            stats = self._aux[key]
        return SamObjective(
            perc, stats, cfg["lambda_l2"], cfg["lambda_perceptual"], cfg["lambda_mvg"],
            cfg["lambda_delta"], cfg["lambda_f_rec"], cfg["perceptual_size"],
        )  # fmt: skip

    def initial_codes(self, x: torch.Tensor, cfg: Mapping[str, Any]) -> torch.Tensor:
        g = self.generator
        if cfg["init"] == "mean":
            return self.latent_mean().view(1, 1, -1).repeat(x.shape[0], g.n_latent, 1)
        key = ("encoder", cfg["init"], cfg["encoder_checkpoint"])
        if key not in self._aux:
            self._aux[key] = load_encoder(g, cfg["init"], cfg["encoder_checkpoint"], self.device)
        with torch.no_grad():
            return g.to_wplus(self._aux[key].invert(x).latents.to(self.device)).clone()

    def predictor(self, cfg: Mapping[str, Any]) -> nn.Module | None:
        if "predictor" in self._aux:
            return self._aux["predictor"]
        spec = cfg["invertibility"]
        if spec == "auto":
            spec = self._auto_predictor(cfg)
        if spec is None or spec in ("measure", "none", ""):
            return None
        return self._load_predictor(spec)

    def _load_predictor(self, spec: str) -> nn.Module:
        key = ("predictor", spec)
        if key not in self._aux:
            self._aux[key] = load_predictor(spec, self.generator, self.device)
        return self._aux[key]

    def _auto_predictor(self, cfg: Mapping[str, Any]) -> str | None:
        """``invertibility="auto"``: the bundled predictor of this very generator when it answers
        what the options ask -- maps on the scale they would measure (``error_metric``, LPIPS files,
        ``perceptual_net``), a head for every chosen space, the default ``measure_steps`` (the
        scale its targets were made on) -- else None: measure."""
        key = ("auto-predictor",)
        if key not in self._aux:
            self._aux[key] = bundled_predictor_name(self.generator)
        name = self._aux[key]
        if name is None:
            return None
        spec = f"zoo:{name}"
        pred = self._load_predictor(spec)
        heads = {getattr(s, "name", s) for s in getattr(pred, "spaces", [])}
        if (
            predictor_scale(pred, cfg) != error_scale(cfg)
            or not {sp.name for sp in self.spaces} <= heads
            or cfg["measure_steps"] != self.option_defaults()["measure_steps"]
        ):
            return None
        return spec

    def error_maps(self, x: torch.Tensor, w0: torch.Tensor, cfg: Mapping[str, Any]) -> torch.Tensor:
        pred = self.predictor(cfg)
        if pred is not None:
            return predictor_maps(pred, x, self.spaces)
        if cfg["error_metric"] == "l2":
            err: Callable = pixel_error_map
        else:
            from egain.losses.reconstruction import build_spatial_perceptual

            key = ("spatial", cfg.get("lpips"), cfg.get("lpips_backbone"), cfg.get("perceptual_net"))
            if key not in self._aux:
                self._aux[key] = build_spatial_perceptual(cfg, self.device)
            err = self._aux[key]
        return measure_invertibility(
            self.generator, x, w0, self.spaces, self.objective(cfg), err,
            steps=cfg["measure_steps"], lr=cfg["lr"],
        )  # fmt: skip

    def error_scale(self, cfg: Mapping[str, Any]) -> str:
        """The scale of the maps :meth:`error_maps` gives (:func:`error_scale`): a predictor's
        targets' scale, else the measured maps' (LPIPS, face features or l2 by the options)."""
        pred = self.predictor(cfg)
        return predictor_scale(pred, cfg) if pred is not None else error_scale(cfg)

    def default_tau(
        self, errors: torch.Tensor, cfg: Mapping[str, Any], segments: torch.Tensor | None = None
    ) -> tuple[float, str]:
        """tau when ``--tau`` is not given (:func:`default_tau` for :meth:`error_scale`; the face
        segment is the calibration region when the published face classes were fused)."""
        region = face_region(segments) if segments is not None else None
        return default_tau(self.error_scale(cfg), self.input_size, errors, region)

    def segmenter(self, cfg: Mapping[str, Any]) -> Segmenter:
        return Segmenter(
            cfg["segmenter"], parsing_checkpoint=cfg["parsing_checkpoint"],
            grid_cells=cfg["grid_cells"], fuse_face=not cfg["keep_face_classes"],
        )  # fmt: skip

    # -- the interface -------------------------------------------------------------------------

    def invert(self, images: ImageInput, parsing: torch.Tensor | None = None, **options: Any) -> Inversion:
        """Predict (or measure) invertibility, segment, pick a space per segment, optimise."""
        return self.sweep(images, None, parsing=parsing, **options)[0]

    def sweep(
        self,
        images: ImageInput,
        taus: Sequence[float] | None,
        parsing: torch.Tensor | None = None,
        **options: Any,
    ) -> list[Inversion]:
        """One inversion per threshold (``taus=None``: the configured ``tau``); the maps and
        segments are computed once (published ``--sweep_thresholds``: :func:`sweep_thresholds`)."""
        cfg = self._resolve(options, self.config)
        x = self.prepare(images)
        w0 = self.initial_codes(x, cfg)
        errors = self.error_maps(x, w0, cfg)
        segmenter = self.segmenter(cfg)
        segments = segmenter(x, parsing)
        faces = segmenter.resolved_mode(parsing) in ("given", "parsing-net") and segmenter.fuse_face
        obj = self.objective(cfg)
        out = []
        if taus is None:
            seg = segments if faces else None
            taus = [cfg["tau"] if cfg["tau"] is not None else self.default_tau(errors, cfg, seg)[0]]
        for tau in taus:
            choice = refine(errors, segments, float(tau), self.spaces)
            masks = feature_masks(choice, self.spaces)
            w, res, record = optimise_multilayer(
                self.generator, x, w0, self.spaces, masks, obj, steps=cfg["steps"], lr=cfg["lr"],
                lr_rampdown=cfg["lr_rampdown"], lr_rampup=cfg["lr_rampup"], keep_best=not cfg["last_state"],
                desc=self.name,
            )  # fmt: skip
            with torch.no_grad():
                y = synthesize_multilayer(self.generator, w, self.spaces, res, masks)
            extras: dict[str, Any] = map_extras(errors, choice, segments, self.spaces)
            extras.update(
                feature_residuals=res, feature_masks=masks, loss_curve=record.loss_curve, steps=record.steps,
                tau=torch.full((x.shape[0],), float(tau)), face_segments=torch.full((x.shape[0],), bool(faces)),
            )  # fmt: skip
            if record.best_loss is not None:
                extras.update(best_loss=record.best_loss, best_step=record.best_step)
            out.append(Inversion(w, y, extras))
        return out

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """The published rule: F_k regions get the edited code only after block k."""
        return multilayer_edit(self.generator, self.spaces, inversion, direction, strength)


def tau_sweep_report(
    method: SAM,
    images: ImageInput,
    taus: Sequence[float],
    parsing: torch.Tensor | None = None,
    **options: Any,
) -> dict[str, Any]:
    """What each threshold does, on ``images`` (maps and segments computed once):

    ``{"spaces", "error_scale", "calibrated_tau", "default_tau", "default_tau_how",
    "rows": [{"tau", "fractions": {space: share of pixels}, "psnr", "perceptual", "loss"}]}`` --
    the share of pixels each space takes over the batch, and the mean PSNR (dB), perceptual
    distance (the method's, LPIPS or face features) and final SAM loss of the reconstructions.
    ``calibrated_tau`` is :func:`calibrate_tau` on these images' W+ maps (face segment as region
    when parsing segments are used), ``default_tau`` what ``invert`` would use without ``tau``."""
    from egain.metrics.functional import psnr

    options = {k: v for k, v in options.items() if k != "tau"}
    invs = method.sweep(images, list(taus), parsing=parsing, **options)
    cfg = method._resolve(options, method.config)
    x = method.prepare(images)
    first = invs[0].extras
    errors, segments = first["invertibility_maps"], first["segment_map"]
    region = face_region(segments) if bool(first["face_segments"].all()) else None
    tau_default, how = default_tau(method.error_scale(cfg), method.input_size, errors, region)
    perc = method.perceptual(cfg)
    rows = []
    for tau, inv in zip(taus, invs, strict=True):
        y = inv.reconstruction.clamp(-1, 1)
        with torch.no_grad():
            dist = perc(
                perceptual_input(y, cfg["perceptual_size"]), perceptual_input(x, cfg["perceptual_size"])
            )
        best = inv.extras.get("best_loss")
        rows.append(
            {
                "tau": float(tau),
                "fractions": space_fractions(inv.extras["layer_map"], method.spaces),
                "psnr": float(psnr(y, x).mean()),
                "perceptual": float(dist.mean()),
                "loss": float(best.mean())
                if best is not None
                else float(inv.extras["loss_curve"][:, -1].mean()),
            }
        )
    return {
        "spaces": [sp.name for sp in method.spaces],
        "error_scale": method.error_scale(cfg),
        "calibrated_tau": calibrate_tau(errors[:, 0], region),
        "default_tau": tau_default,
        "default_tau_how": how,
        "rows": rows,
    }


def parse_taus(text: str) -> list[float]:
    """Thresholds from a comma list ("0.2,0.3") or "published" (:func:`sweep_thresholds`)."""
    if text.strip() == "published":
        return sweep_thresholds()
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"taus must be numbers separated by commas or 'published', got {text!r}") from None


# ------------------------------------------------------------------------------------------------
# the encoder variant


class SpaceEncoder(nn.Module):
    """One encoder of ``sam-encoder``: image + that space's invertibility map (4 channels) ->
    W+ offsets (``out_shape=(n_latent, D)``) or a feature residual (``out_shape=(C, r, r)``).

    Strided convs halve the input down to ``r`` (or to 4 px for W+); the last layer starts at zero,
    so an untrained encoder gives w-bar and no residual."""

    def __init__(self, size: int, out_shape: tuple[int, ...], width: int = 32):
        super().__init__()
        target = out_shape[-1] if len(out_shape) == 3 else 4
        layers: list[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.LeakyReLU(0.2)]
        r, c = size, width
        while r > target:
            c2 = min(c * 2, 256)
            layers += [nn.Conv2d(c, c2, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            r, c = r // 2, c2
        self.body = nn.Sequential(*layers)
        self.out_shape = tuple(out_shape)
        if len(out_shape) == 3:
            self.head: nn.Module = nn.Conv2d(c, out_shape[0], 3, padding=1)
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, int(np.prod(out_shape))))
        last = self.head if isinstance(self.head, nn.Conv2d) else self.head[1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, error_map: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(torch.cat([x, error_map], 1)))
        return y.view(x.shape[0], *self.out_shape)


@register_method(
    "sam-encoder",
    summary="SAM encoder variant: one encoder per latent space on image + invertibility map (our design)",
    generator="stylegan2",
)
class SAMEncoder(InversionMethod):
    """The encoder variant of SAM (seeds/002 sec. 3.3). The authors publish no code for it; our design:

    * one :class:`SpaceEncoder` per latent space, each seeing the image and its own predicted
      invertibility map: W+ offsets from w-bar, and Delta f_k at the F_k block's size;
    * the predictor (a ``sam-invertibility`` model, frozen and stored inside this checkpoint) and the
      segmenter pick the regions with the same threshold rule as ``sam``; the masked residuals go
      through the ``injection`` hook exactly as in ``sam``;
    * training loss: SAM's objective (pixel MSE + perceptual + the MVG, delta and feature-residual
      regularisers with the published weights) on the composed output.
    """

    bundled_weights = "sam-encoder-stylegan2-64"
    bundled_generator = "gan-stylegan2-64"
    loss_weights = {"l2": 1.0, "perceptual": 1.0, "mvg": 1e-8, "delta": 1e-3, "f_rec": 5.0}
    loss_help = {
        "l2": "pixel MSE of the multilayer reconstruction",
        "perceptual": "perceptual distance (LPIPS-VGG with --lpips files, else the face-feature distance)",
        "mvg": "Gaussian prior on LeakyReLU(w, 5) (published 1e-8)",
        "delta": "sum_i ||w_i - w_0|| (published 1e-3)",
        "f_rec": "feature-residual L2 (published 5)",
    }
    training_options = (
        TrainOption("invertibility", "", "the sam-invertibility checkpoint whose maps the encoders see", str),
        TrainOption("spaces", "", "latent spaces, comma separated (default: as sam)", str, target="config"),
        TrainOption("width", 32, "channels of each space encoder's first layer", int, target="config"),
        TrainOption(
            "tau",
            None,
            "the threshold of the region choice (default: as sam for the predictor's error scale)",
            float,
            target="config",
        ),
        TrainOption("grid_cells", 8, "cells per side of the grid segmenter", int, target="config"),
        TrainOption("mvg_samples", 5000, "mapped z of the prior's statistics", int),
        *(TrainOption(o.name, o.default, o.help, o.type, o.choices, "option") for o in PERCEPTUAL_OPTIONS),
    )
    runtime_options = ("tau", "segmenter", "parsing_checkpoint", "grid_cells")

    def __init__(
        self,
        generator: nn.Module,
        *,
        spaces: str | Sequence[str] = "",
        width: int = 32,
        tau: float | None = DEFAULT_TAU,
        segmenter: str = "auto",
        parsing_checkpoint: str | None = None,
        grid_cells: int = 8,
        predictor_config: Mapping[str, Any] | None = None,
        error_scale: str = "",
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        from egain.encoders.invertibility import build_invertibility_net

        g = generator.requires_grad_(False).eval()
        self.generator = g
        self.input_size = int(g.size)
        self.spaces = parse_spaces(g, spaces)
        pc = dict(predictor_config or {"spaces": [s.name for s in self.spaces], "base": "small", "width": 16})
        self.config = {
            "spaces": ",".join(s.name for s in self.spaces),
            "width": int(width),
            "tau": None if tau is None else float(tau),
            "error_scale": str(error_scale),
            "segmenter": segmenter,
            "parsing_checkpoint": parsing_checkpoint,
            "grid_cells": int(grid_cells),
            "predictor_config": pc,
        }
        self.predictor = build_invertibility_net(**pc).requires_grad_(False).eval()
        self.encoders = nn.ModuleDict()
        for sp in self.spaces:
            shape = (
                (g.n_latent, g.style_dim) if sp.layer is None else (sp.channels, sp.resolution, sp.resolution)
            )
            self.encoders[map_key(sp.name)] = SpaceEncoder(self.input_size, shape, int(width))
        if latent_avg is None:
            latent_avg = g.average_latent()
        self.register_buffer("latent_avg", latent_avg.detach().reshape(-1).clone())

    @classmethod
    def build_for_training(
        cls, generator: nn.Module, options: Mapping[str, Any], device: torch.device, **config: Any
    ) -> SAMEncoder:
        """A fresh model whose predictor is the ``--invertibility`` checkpoint's (required)."""
        spec = options.get("invertibility")
        if not spec:
            raise EgainError(
                "sam-encoder needs --invertibility PATH (a model.pt of 'egain train --method sam-invertibility')"
            )
        pred = load_predictor(spec, generator, device)
        net = getattr(pred, "net", pred)
        pcfg = getattr(pred, "predictor_config", None)
        if pcfg is None:
            raise EgainError(
                "sam-encoder needs a sam-invertibility checkpoint of ours (a released DeepLab is too large)"
            )
        scale = predictor_scale(pred, options)
        config = {**config, "error_scale": scale}
        if config.get("tau") is None and (
            scale.startswith("lpips") or (scale, int(generator.size)) in CALIBRATED_TAU
        ):
            config["tau"] = default_tau(scale, int(generator.size))[0]  # else calibrated per batch
        model = cls(generator=generator, predictor_config=pcfg, **config)
        model.predictor.load_state_dict(net.state_dict())
        return model.to(device)

    # -- pieces --------------------------------------------------------------------------------

    def _segmenter(self) -> Segmenter:
        c = self.config
        return Segmenter(
            c["segmenter"], parsing_checkpoint=c["parsing_checkpoint"], grid_cells=c["grid_cells"]
        )

    def _encode(self, x: torch.Tensor, parsing: torch.Tensor | None = None):
        self.predictor.eval()
        errors = predictor_maps(self.predictor, x, self.spaces)
        segmenter = self._segmenter()
        segments = segmenter(x, parsing)
        tau = self.config["tau"]
        if tau is None:  # no stored calibration for the predictor's scale: these images' W+ maps
            faces = segmenter.resolved_mode(parsing) in ("given", "parsing-net")
            region = face_region(segments) if faces else None
            tau = calibrate_tau(errors[:, 0], region)
        choice = refine(errors, segments, tau, self.spaces)
        masks = feature_masks(choice, self.spaces)
        w = None
        res = {}
        for i, sp in enumerate(self.spaces):
            out = self.encoders[map_key(sp.name)](x, errors[:, i : i + 1])
            if sp.layer is None:
                w = out + self.latent_avg
            else:
                res[sp.name] = out
        assert w is not None
        return w, res, masks, errors, choice, segments

    @torch.no_grad()
    def invert(self, images: ImageInput, parsing: torch.Tensor | None = None) -> Inversion:
        was = self.training
        self.eval()
        x = prepare_images(images, self.input_size, self.device)
        w, res, masks, errors, choice, segments = self._encode(x, parsing)
        y = synthesize_multilayer(self.generator, w, self.spaces, res, masks)
        self.train(was)
        extras: dict[str, Any] = map_extras(errors, choice, segments, self.spaces)
        extras.update(feature_residuals=res, feature_masks=masks)
        return Inversion(w, y, extras)

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return multilayer_edit(self.generator, self.spaces, inversion, direction, strength)

    # -- training -----------------------------------------------------------------------------

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        from egain.losses.reconstruction import build_perceptual_distance

        lam = ctx.lambdas
        perc = build_perceptual_distance(ctx.options, ctx.device) if lam["perceptual"] > 0 else None
        stats = (
            mvg_statistics(self.generator, int(ctx.options.get("mvg_samples", 5000)))
            if lam["mvg"] > 0
            else None
        )
        self._objective = SamObjective(
            perc, stats, lam["l2"], lam["perceptual"], lam["mvg"], lam["delta"], lam["f_rec"], 256
        )

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"encoders": self.encoders}

    def set_training_mode(self) -> None:
        super().set_training_mode()
        self.predictor.eval()

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w, res, masks, *_ = self._encode(batch)
        y = synthesize_multilayer(self.generator, w, self.spaces, res, masks)
        total, terms = self._objective(y, batch, w, res)
        return total.mean(), {k: v.mean() for k, v in terms.items()}
