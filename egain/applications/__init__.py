"""Applications of an inversion (seeds/004 section V, seeds/001 section 4.4).

Every application works with any registered method through its public interface
(``invert``/``edit``), so the bundled models and trained ones alike can be used:

* :mod:`~egain.applications.restoration` -- corruptions for restoration/translation encoders
  (colourisation, inpainting, super-resolution, edge sketch) and their evaluation against the
  clean ground truth (E2Style Alg. 5/6);
* :mod:`~egain.applications.swap` -- semantic face swapping (Alg. 2);
* :mod:`~egain.applications.mixing` -- style mixing of W+ rows (Alg. 3);
* :mod:`~egain.applications.interpolation` -- interpolation between two inversions (Alg. 4);
* :mod:`~egain.applications.hiding` -- secure deep hiding of a quantised W+ code (Alg. 1);
* :mod:`~egain.applications.video` -- video inversion, temporal-consistency metrics, smoothing.

This package sits beside ``methods``: it never imports the trainers, workflows or the CLI.
"""

from __future__ import annotations
