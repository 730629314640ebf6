"""Fréchet distance against the closed form for diagonal Gaussians, and its basic properties."""

from __future__ import annotations

import numpy as np
import pytest

from egain.errors import EgainError
from egain.metrics.fid import fid_from_features, frechet_distance


def test_matches_closed_form_for_diagonal_covariances():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    va, vb = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu_a - mu_b) ** 2).sum() + (va + vb - 2 * np.sqrt(va * vb)).sum()
    assert frechet_distance(mu_a, np.diag(va), mu_b, np.diag(vb)) == pytest.approx(expected, rel=1e-9)


def test_same_distribution_is_near_zero_and_shift_is_seen():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4))
    assert fid_from_features(a, b) < 0.02
    assert fid_from_features(a, b + 1.0) == pytest.approx(4.0, abs=0.1)
    with pytest.raises(EgainError, match="at least 2"):
        fid_from_features(a[:1], b)


def test_cli_gan_fid_end_to_end(tmp_path):
    import json

    import torch
    from inversion_helpers import tiny_generator

    from egain.cli.main import main
    from egain.faces.embedder import embedder_checkpoint
    from egain.faces.nets import FaceNetConfig, IRSEFaceNet
    from egain.faces.preprocess import FacePreprocess
    from egain.generators import save_generator
    from egain.utils.images import save_image

    g = tiny_generator("stylegan2", 16)
    save_generator(g, tmp_path / "g.pt", latent_avg=g.latent_avg)
    for i in range(6):
        save_image(torch.rand(3, 16, 16) * 2 - 1, tmp_path / "real" / f"{i}.png")
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=8)
    net = IRSEFaceNet.from_config(cfg).eval()
    torch.save(embedder_checkpoint(net, cfg, FacePreprocess(input_size=16), "arcface"), tmp_path / "emb.pt")
    args = [
        "gan",
        "fid",
        "--checkpoint",
        str(tmp_path / "g.pt"),
        "--data",
        str(tmp_path / "real"),
        "--n",
        "6",
    ]
    args += ["--batch", "4", "--features", str(tmp_path / "emb.pt"), "--json", str(tmp_path / "fid.json")]
    args += ["--allow-few"]  # 6 images: refused without it (tests/test_align_domain.py)
    assert main(args) == 0
    result = json.loads((tmp_path / "fid.json").read_text())
    assert result["n"] == 6 and np.isfinite(result["fid"]) and result["fid"] >= 0
    # --real-floor: two disjoint halves of the reals, so n shrinks to fit them
    args += ["--real-floor"]
    assert main(args) == 0
    result = json.loads((tmp_path / "fid.json").read_text())
    assert result["n"] == 3 and np.isfinite(result["fid_real_floor"]) and result["fid_real_floor"] >= 0
