"""Does a picture look like synthfaces? A warning before the bundled models are trusted on it.

The bundled models know only the synthfaces world (64 px renders). Given a photograph they still
return *something*, and the bundled synthfaces ArcFace happily scores it (a coloured blob with no
face got ID 0.969), so a number alone cannot tell the user that the result is meaningless. This
heuristic flags pictures unlike synthfaces, so that the CLI and the app can say that real faces
need published FFHQ checkpoints.

Three signals, each standardised by its mean and standard deviation over the 500-image synthfaces
evaluation set, counted only in the direction a photograph moves them:

* colour richness: log of the number of distinct colours (5 bits per channel) at 64 px -- photos
  carry sensor noise and texture, renders are smoothly shaded;
* the bundled MagFace embedding norm -- large for inputs unlike its training faces;
* the log MAE of the bundled e4e's reconstruction -- the synthfaces manifold's distance to the image.

The score is the sum of the positive z-scores; a picture is flagged above :data:`THRESHOLD`.
Measured (seeded renders, this commit): the maximum over 741 synthfaces renders (evaluation set,
hard set, 256 px renders resized to 64) was 6.3 (99th percentile 5.2); ``skimage.data.astronaut()``
scored 14.9 centre-cropped and 14.3 FFHQ-aligned, the coffee photo 21.9. It is a heuristic: it
does not flag every picture unlike synthfaces (a cat photo scored 5.6), and it flags some of the
project's deliberately out-of-domain examples (``ood_*``), which is what it is for.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: means and standard deviations of (log colours, MagFace norm, log e4e MAE) over the synthfaces eval set
SYNTHFACES_MEAN = (5.3702, 12.8319, -2.8638)
SYNTHFACES_STD = (0.2706, 1.3687, 0.3609)
THRESHOLD = 9.0
#: the message shown with a flagged picture
ADVICE = (
    "the bundled models know only the synthfaces world; for real faces pass published FFHQ checkpoints "
    "(e.g. egain invert --method e4e --checkpoint e4e_ffhq_encode.pt --generator stylegan2-ffhq-config-f.pt "
    "--align; see docs/methods.md)"
)


@dataclasses.dataclass
class DomainScore:
    """How far one picture lies from synthfaces: ``score`` (flagged above THRESHOLD) and its parts."""

    score: float
    colours: int
    magface_norm: float
    e4e_mae: float

    @property
    def unlike_synthfaces(self) -> bool:
        return self.score > THRESHOLD


class SynthfacesCheck:
    """Loads the bundled MagFace and e4e once; :meth:`score` rates a batch of pictures."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        import egain.methods
        from egain.faces import load_embedder

        self.magface = load_embedder("synthfaces-magface", device)
        self.e4e = egain.methods.create("e4e", device=device)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> list[DomainScore]:
        """``images``: (N, 3, H, W) in [-1, 1], any size (resized to 64 px like the bundled models)."""
        from egain.utils.images import tensor_to_uint8

        x = images.float()
        if x.shape[-1] != 64 or x.shape[-2] != 64:
            x = torch.nn.functional.interpolate(x, size=(64, 64), mode="area")
        x = x.to(self.e4e.device)
        colours = [len(np.unique(a.reshape(-1, 3) // 8, axis=0)) for a in tensor_to_uint8(x)]
        norms = self.magface.embed(x).norm(dim=1).cpu().tolist()
        rec = self.e4e.invert(x).reconstruction.clamp(-1, 1)
        if rec.shape[-2:] != x.shape[-2:]:  # a model of another size (tests patch in tiny ones)
            rec = torch.nn.functional.interpolate(rec, size=x.shape[-2:], mode="area")
        maes = ((rec - x).abs().mean(dim=(1, 2, 3)) / 2).cpu().tolist()
        out = []
        for c, m, e in zip(colours, norms, maes, strict=True):
            feats = (np.log(max(c, 1)), m, np.log(max(e, 1e-6)))
            z = [(f - mu) / sd for f, mu, sd in zip(feats, SYNTHFACES_MEAN, SYNTHFACES_STD, strict=True)]
            out.append(DomainScore(float(sum(max(v, 0.0) for v in z)), int(c), float(m), float(e)))
        return out


__all__ = ["ADVICE", "THRESHOLD", "DomainScore", "SynthfacesCheck"]
