"""Every bundled weight file: its sha256 matches its manifest, and it loads and runs on one image."""

from __future__ import annotations

import pytest
import torch

from egain import zoo
from egain.zoo.manage import verify

BUNDLED = zoo.available()


def test_zoo_folder_has_manifests_for_every_file():
    for name in BUNDLED:
        meta = zoo.manifest(name)
        assert meta["name"] == name and meta["command"].startswith("egain ")
        assert meta["steps"] > 0 and meta["wall_time_s"] > 0 and meta["sha256"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weight_matches_manifest_and_runs(name):
    ok, msg = verify(name)
    assert ok, msg
    kind = zoo.manifest(name)["kind"]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        if kind == "face-embedder":
            from egain.faces import load_embedder

            emb = load_embedder(str(zoo.bundled_path(name)), device="cpu")
            assert torch.isfinite(emb.embed(x)).all()
        elif kind == "generator":
            from egain.generators import load_generator

            g = load_generator(zoo.bundled_path(name), device="cpu")
            img = g.synthesize(g.mapping(torch.randn(1, g.style_dim)))
            assert img.shape == (1, 3, g.size, g.size) and torch.isfinite(img).all()
        elif kind == "attribute-classifier":
            from egain.faces import load_classifier

            pred = load_classifier(str(zoo.bundled_path(name))).predict(x)
            assert {"smile", "yaw", "glasses"} <= set(pred) and all(
                torch.isfinite(v).all() for v in pred.values()
            )
        elif kind == "face-parser":
            from egain.faces.parsing import load_parser

            labels = load_parser(str(zoo.bundled_path(name))).parse(x)
            assert labels.shape == (1, 64, 64)
        else:
            import egain.methods as methods

            method = methods.create(zoo.manifest(name)["method"], checkpoint=zoo.bundled_path(name))
            if zoo.manifest(name)["method"] == "sam-invertibility":  # its invert is a 1001-step SAM run
                maps = method.predict(x)
                assert maps.shape == (1, len(method.space_names), 64, 64) and torch.isfinite(maps).all()
                return
            if method.input_nc != 3:  # a translation encoder: its input is a one-hot parsing map
                x = torch.nn.functional.one_hot(
                    torch.randint(0, method.input_nc, (1, 64, 64)), method.input_nc
                )
                x = x.permute(0, 3, 1, 2).float()
            assert torch.isfinite(method.invert(x).reconstruction).all()


def test_sam_takes_the_bundled_predictor_for_the_bundled_generator_only():
    from egain.generators import load_generator
    from egain.methods.sam import bundled_predictor_name

    g = load_generator("zoo:gan-stylegan2-64", device="cpu")
    assert bundled_predictor_name(g) == "sam-invertibility-stylegan2-64"
    with torch.no_grad():
        next(g.parameters()).mul_(1.001)
    assert bundled_predictor_name(g) is None  # another generator (however close): measure
