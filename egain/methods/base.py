"""What every inversion method answers: ``invert``, ``edit``, ``save``; and the image-input helper.

Images in, images out: (N, 3, H, W) float in [-1, 1], or file paths / PIL images, which
:func:`prepare_images` turns into such a batch at the method's input size.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from egain.errors import CheckpointError, InputError
from egain.nn.layout import convert_weights, wants_channels_last
from egain.runtime.checkpoint import atomic_torch_save
from egain.utils.images import check_image_range, load_image, pil_to_tensor, resize_center_crop, to_rgb

CHECKPOINT_FORMAT = "egain-inversion"

ImageInput = torch.Tensor | Image.Image | str | os.PathLike | Sequence["ImageInput"]


@dataclass
class Inversion:
    """The result of ``method.invert``.

    ``latents``: the code the generator receives (N, n_latent, style_dim) -- for internal fusion the
    basic code w_b (edits act on it), for external fusion the fused code.
    ``reconstruction``: final images (N, 3, S, S) in [-1, 1] at the method's input size S.
    ``extras``: method-specific tensors, e.g. ``basic_latents`` (w_b), ``basic_reconstruction``
    (y0), ``delta`` (Delta0), ``deltas`` (one per pass), ``aligned_delta`` (after ADA),
    ``gate_maps`` / ``detail_maps`` ({layer: (N, 1, h, w)} channel means of 1+scale and |shift|).
    """

    latents: torch.Tensor
    reconstruction: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.reconstruction.shape[0])

    def to(self, device: torch.device | str) -> Inversion:
        return Inversion(self.latents.to(device), self.reconstruction.to(device), _move(self.extras, device))

    def select(self, index: slice | Sequence[int]) -> Inversion:
        """Sub-batch (e.g. one image) of an inversion, extras included."""
        return Inversion(self.latents[index], self.reconstruction[index], _select(self.extras, index))


def _move(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_move(v, device) for v in obj)
    return obj


def _select(obj: Any, index: slice | Sequence[int]) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[index]
    if isinstance(obj, dict):
        return {k: _select(v, index) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_select(v, index) for v in obj)
    return obj


def prepare_images(
    images: ImageInput, size: int, device: torch.device | str | None = None, channels: int = 3
) -> torch.Tensor:
    """Any image input -> (N, 3, size, size) float in [-1, 1] on ``device``.

    Files and PIL images are resized (short side, centre crop) to ``size``. Tensors of another size
    are resized with antialiased bilinear filtering and a warning, because a silent resize would
    hide a mismatch between the data and the model. ``channels``: the encoder's input channel
    count; a translation encoder (``egain train --corrupt parsing``) takes (N, C, H, W) tensors
    (one-hot parsing maps in {0, 1}) and no files.
    """
    if isinstance(images, torch.Tensor):
        x = images
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != channels:
            what = "images" if channels == 3 else f"inputs of this {channels}-channel encoder"
            rng = " in [-1, 1]" if channels == 3 else ""
            raise InputError(
                f"{what} must be (N, {channels}, H, W) or ({channels}, H, W){rng}; got shape {tuple(images.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"image tensors must be float in [-1, 1]; got dtype {x.dtype}")
        # one-hot translation inputs are {0, 1} by design: the [-1, 1] check is for images
        x = check_image_range(x.float()) if channels == 3 else x.float()
        if tuple(x.shape[-2:]) != (size, size):
            if x.shape[-1] != x.shape[-2]:
                raise InputError(
                    f"images must be square; got {x.shape[-2]}x{x.shape[-1]} (expected {size}x{size})"
                )
            warnings.warn(
                f"images are {x.shape[-1]}x{x.shape[-2]}; resizing to the model's {size}x{size}", stacklevel=2
            )
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    else:
        if channels != 3:
            raise InputError(
                f"this encoder takes {channels}-channel inputs (e.g. one-hot parsing maps), not image files; "
                "pass a tensor (egain.applications.restoration.parsing_input makes one from label maps)"
            )
        items = _as_list(images)
        if not items:
            raise InputError("no images given")
        x = torch.stack([_one_image(item, size) for item in items])
    return x.to(device) if device is not None else x


def _as_list(images: Any) -> list:
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    raise InputError(f"cannot use {type(images).__name__} as images; pass tensors, PIL images or paths")


def _one_image(item: Any, size: int) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return prepare_images(item, size)[0]
    if isinstance(item, Image.Image):
        im = to_rgb(item)
        if im.size != (size, size):
            im = resize_center_crop(im, size)
        return pil_to_tensor(im)
    if isinstance(item, str | os.PathLike):
        return load_image(Path(item), size)
    raise InputError(f"cannot use {type(item).__name__} as an image; pass tensors, PIL images or paths")


@dataclass(frozen=True)
class TrainOption:
    """A training option a method declares; ``egain train`` turns it into ``--NAME`` generically.

    ``type`` is ``float``, ``int``, ``str`` or ``bool`` (a switch). ``target="config"`` sends the
    value to the method's configuration (e.g. ``passes``) instead of its training options.
    """

    name: str
    default: Any
    help: str
    type: type = float
    choices: tuple[Any, ...] | None = None
    target: str = "option"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: the reconstruction-loss networks every encoder method's ``training_options`` declare (the names
#: :func:`egain.losses.reconstruction.build_reconstruction_losses` reads), so ``egain train`` shows
#: one flag of each name with one meaning across methods
RECONSTRUCTION_OPTIONS: tuple[TrainOption, ...] = (
    TrainOption("id_net", "synthfaces-arcface", "face embedder for the ID loss (egain.faces spec)", str),
    TrainOption("perceptual_net", None, "face embedder for the LPIPS fallback (default: --id-net)", str),
    TrainOption(
        "lpips",
        None,
        "use real LPIPS with this backbone (published weights needed); default: face-feature distance",
        str,
        choices=("alex", "vgg"),
    ),
    TrainOption("lpips_backbone", None, "torchvision backbone weights for --lpips", str),
    TrainOption("lpips_linear", None, "LPIPS v0.1 linear weights for --lpips (alex.pth / vgg.pth)", str),
)


def replace_option(options: Sequence[TrainOption], name: str, **changes: Any) -> tuple[TrainOption, ...]:
    """``options`` with the one called ``name`` changed (e.g. its default), for a method whose
    default differs from the shared one; an unknown name is a programming error."""
    if name not in {o.name for o in options}:
        raise KeyError(f"no training option '{name}'")
    return tuple(dataclasses.replace(o, **changes) if o.name == name else o for o in options)


@dataclass
class TrainingContext:
    """What the trainer hands a method before the first step (:meth:`InversionMethod.setup_training`).

    ``options``: the method's declared training options, resolved (declared default, overridden by
    the user). ``lambdas``: its loss weights, resolved the same way. ``generator``: the generator
    file the run was started with (HFGI's image discriminator is read from it).
    """

    device: torch.device
    options: dict[str, Any]
    lambdas: dict[str, float]
    generator: str | None = None
    world_size: int = 1


#: state_dict prefixes of training-only modules (loss networks): never saved, ignored when loading
TRAINING_ONLY_PREFIXES = ("_losses.", "_perceptual_train.", "_finetune_loss.")


class InversionMethod(nn.Module):
    """Base class of every method in the registry (encoder or optimisation based).

    A method is one class, registered by name with :func:`egain.methods.register_method`; its
    constructor accepts ``generator=`` plus its configuration keywords. Everything about the method
    lives on the class: its defaults, loss weights, training options, where its published weights
    are and which bundled weights :func:`egain.methods.create` uses when no path is given.

    Training: the trainer (``egain train``) owns the loop, DDP, checkpoints, logging and resume; the
    method owns what one step computes (:meth:`training_step`) and which modules it trains
    (:meth:`trainable_modules`). Methods that invert by optimisation define no ``training_step``
    and ``egain train`` says so.
    """

    name: str = "?"
    summary: str = ""
    #: the generator family the method was designed for (informational; any generator works)
    generator_family: str = "any"
    input_size: int
    #: default loss weights ("l2" -> 1.0); each becomes ``egain train --lambda-NAME``
    loss_weights: ClassVar[dict[str, float]] = {}
    #: one line per loss term for ``--help``
    loss_help: ClassVar[dict[str, str]] = {}
    #: further training options, each a flag of ``egain train``
    training_options: ClassVar[tuple[TrainOption, ...]] = ()
    #: keywords of ``invert`` the method offers (e.g. optimisation steps); ``egain invert`` flags
    invert_options: ClassVar[tuple[TrainOption, ...]] = ()
    #: config keys that may be changed when loading trained weights (e.g. ``passes``)
    runtime_options: ClassVar[tuple[str, ...]] = ()
    #: zoo names behind ``create(name)`` with no paths: the trained weights and their generator
    bundled_weights: ClassVar[str | None] = None
    bundled_generator: ClassVar[str | None] = None
    #: where the authors publish weights this method imports (None: no published import)
    published_at: ClassVar[str | None] = None
    #: ``training_step(batch, step, target=clean)`` is accepted: restoration/translation training
    #: (``egain train --corrupt``) feeds the corrupted batch and compares with the clean target
    accepts_target: ClassVar[bool] = False
    #: the config entry (``"component.key"``) holding the encoder's input channel count, for
    #: translation encoders whose input is no RGB image (``egain train --corrupt parsing``: one-hot
    #: parsing maps); None: the method takes 3-channel images only
    input_channels_config: ClassVar[str | None] = None
    #: channels of the input ``invert`` takes (3 for images; set by methods with the entry above)
    input_nc: int = 3

    config: dict[str, Any]
    #: the last :meth:`set_memory_format` choice; None = never set (NCHW weights as built, the
    #: generator on its own setting). Not part of the config: a checkpoint loads into either layout.
    memory_format: str | None = None

    # -- the interface every method answers ------------------------------------------------------

    def invert(self, images: ImageInput) -> Inversion:  # pragma: no cover - interface
        raise NotImplementedError

    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not implement edit()")  # pragma: no cover

    # -- inference memory layout -----------------------------------------------------------------

    def _inference_modules(self) -> Iterable[nn.Module | None]:
        """The modules whose weights :meth:`set_memory_format` lays out (None entries are skipped);
        an encoder method names its encoders (and heads) here. Default: none."""
        return ()

    def set_memory_format(self, memory_format: str = "auto") -> Self:
        """Run the inference modules and the generator in channels_last or NCHW memory.

        ``"auto"`` resolves for the method's current device: channels_last on CPU, where oneDNN's
        convolutions are faster on it, NCHW elsewhere. The weights of the modules named by
        :meth:`_inference_modules` are converted in place, once, so no convolution reorders them
        per call; the generator (when the method has one) gets the same setting and follows it
        with its activations. Inputs and outputs stay ordinary tensors.
        :func:`egain.methods.create` applies ``"auto"``; call this again after moving the method
        to another device. The inversion trainer does not call it, so trained modules stay NCHW.
        """
        channels_last = wants_channels_last(memory_format, self.device)
        for module in self._inference_modules():
            if module is not None:
                convert_weights(module, channels_last)
        generator = getattr(self, "generator", None)
        if generator is not None and hasattr(generator, "set_memory_format"):
            generator.set_memory_format(memory_format)
        self._channels_last = channels_last
        self.memory_format = memory_format
        return self

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in channels_last when :meth:`set_memory_format` chose it (for methods that hand
        their encoder channels_last inputs), else unchanged."""
        if getattr(self, "_channels_last", False):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def parameter_count(self, include_generator: bool = True) -> int:
        """Number of parameters used at inference (the paper tables count the generator too)."""
        total = 0
        for name, p in self.named_parameters():
            if not include_generator and name.startswith("generator."):
                continue
            total += p.numel()
        return total

    # -- checkpoints (one format for every method) ---------------------------------------------

    def state_without_generator(self) -> dict[str, torch.Tensor]:
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("generator.") and not k.startswith(TRAINING_ONLY_PREFIXES)
        }

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, ignoring the loss networks that files written while
        :data:`TRAINING_ONLY_PREFIXES` leaked into the module tree carry (pSp/ReStyle runs before
        the fix): they are not part of the model."""
        state = {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
        return super().load_state_dict(state, strict=strict, assign=assign)

    def checkpoint_dict(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Our checkpoint: method name, config, generator record and weights (generator left out)."""
        from egain.methods import generator_io

        return {
            "egain_format": CHECKPOINT_FORMAT,
            "version": 1,
            "method": self.name,
            "config": copy.deepcopy(self.config),
            "generator": generator_io.generator_record(self.generator),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_without_generator().items()},
            **(dict(extra) if extra else {}),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write an atomic checkpoint that ``egain.methods.create(name, checkpoint=path)`` loads."""
        return atomic_torch_save(self.checkpoint_dict(), path)

    @classmethod
    def from_config(
        cls, generator: nn.Module, config: Mapping[str, Any], latent_avg: torch.Tensor | None = None
    ) -> InversionMethod:
        """Rebuild the method a checkpoint describes (its stored, complete ``config``)."""
        return cls(generator=generator, latent_avg=latent_avg, **dict(config))

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> InversionMethod:
        """Build the method from the authors' checkpoint dict; methods with an import override it."""
        raise CheckpointError(
            f"{where} is a published checkpoint, but '{cls.name}' imports no published weights; "
            f"train it with 'egain train --method {cls.name}' or load it with the method it was published for"
        )

    # -- training hooks (the trainer calls these; it knows nothing else of the method) ----------

    @classmethod
    def trains(cls) -> bool:
        """Whether ``egain train`` can train this method (it defines :meth:`training_step`)."""
        return cls.training_step is not InversionMethod.training_step

    @classmethod
    def build_for_training(
        cls, generator: nn.Module, options: Mapping[str, Any], device: torch.device, **config: Any
    ) -> InversionMethod:
        """The fresh model a training run starts from (override to initialise from other weights)."""
        return cls(generator=generator, **config).to(device)

    def setup_training(self, ctx: TrainingContext) -> None:
        """Build losses and auxiliary networks before the first step."""
        self.training_ctx = ctx

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The sub-modules whose parameters the trainer's optimiser updates (in this order)."""
        raise NotImplementedError(f"{self.name} has no trainable modules")

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, logged terms) of one step on a batch in [-1, 1]; differentiable w.r.t. trainable modules."""
        raise NotImplementedError(f"{self.name} needs no training: it inverts each image by optimisation")

    def after_training_step(self, batch: torch.Tensor, step: int) -> None:
        """Updates outside the main loss after the optimiser step (e.g. discriminators)."""

    def training_info(self) -> dict[str, Any]:
        """Numbers to log beside the loss terms (e.g. e4e's progressive stage)."""
        return {}

    def set_training_mode(self) -> None:
        """Put sub-modules in the mode training needs (frozen parts stay in eval mode)."""
        self.train()
        if getattr(self, "generator", None) is not None:
            self.generator.eval()

    def training_state(self) -> dict[str, Any]:
        """Auxiliary training state to checkpoint (discriminators and their optimisers)."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`training_state`."""

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """Whether some trainable parameters may receive no gradient in a step (DDP must know)."""
        return False

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> tuple[dict[str, float], list[torch.Tensor]]:
        """Scores on held-out images and the rows of the validation grid (sources first)."""
        was = self.training
        inv = self.invert(images)
        self.train(was)
        rec = inv.reconstruction
        return {"val_l2": float(F.mse_loss(rec, images))}, [images, rec]
