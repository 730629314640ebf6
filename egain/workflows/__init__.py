"""End-to-end workflows built from the parts: the bundled examples, the quick-start demo and the
method comparison that produces the README table.

* :mod:`egain.workflows.examples` -- the example pictures shipped in ``egain/assets/examples``;
* :mod:`egain.workflows.bundled` -- the bundled inversion models (zoo names) behind method labels;
* :mod:`egain.workflows.demo` -- ``egain demo``;
* :mod:`egain.workflows.compare` -- ``egain compare``.
"""
