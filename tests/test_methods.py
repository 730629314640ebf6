"""The method registry and EGAIN's swappable components, on a 32 px SWAGAN / StyleGAN2."""

from __future__ import annotations

import pytest
import torch
from inversion_helpers import TINY_BASIC, smooth_images, tiny_generator
from PIL import Image

import egain.methods as methods
from egain import zoo
from egain.encoders.ada import ResidualAligner
from egain.encoders.delta import ConsultationEncoder, DeltaCNN, LatentDeltaEncoder
from egain.errors import CheckpointError, EgainError, InputError
from egain.methods.components import ExternalFusion, InternalFusion
from egain.utils.images import save_image


@pytest.fixture(scope="module")
def gen():
    return tiny_generator("swagan", 32)


def make(name, gen, **cfg):
    cfg.setdefault("basic_encoder", TINY_BASIC)
    return methods.create(name, generator=gen, **cfg)


def test_registry_lists_the_four_methods_and_rejects_unknown(gen, tmp_path, monkeypatch):
    assert {"e4e", "hfgi", "egain", "egain-external"} <= set(methods.available())
    with pytest.raises(EgainError, match="unknown inversion method"):
        methods.create("nope", generator=gen)
    # no paths: the bundled weights, or a message naming the missing zoo file
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(EgainError, match="bundled weights 'egain-swagan-64' are not in this installation"):
        methods.create("egain")


@pytest.mark.parametrize("name", ["e4e", "hfgi", "egain", "egain-external"])
def test_every_method_answers_the_same_calls(gen, name):
    m = make(name, gen)
    inv = m.invert(smooth_images(2))
    assert inv.latents.shape == (2, gen.n_latent, gen.style_dim)
    assert inv.reconstruction.shape == (2, 3, 32, 32)
    assert "basic_reconstruction" in inv.extras and "basic_latents" in inv.extras
    if name != "e4e":
        assert inv.extras["delta"].shape == (2, 3, 32, 32)
    if name in ("hfgi", "egain"):
        (layer,) = gen.default_fusion_layers
        assert inv.extras["gate_maps"][layer].shape[:2] == (2, 1)
    direction = torch.randn(gen.style_dim)
    edited = m.edit(inv, direction, 0.0)
    # strength 0: the edit path re-synthesises exactly the reconstruction (same deltas, same fusion)
    assert torch.allclose(edited, inv.reconstruction, atol=1e-5)
    assert not torch.allclose(m.edit(inv, direction, 2.0), inv.reconstruction, atol=1e-3)


def test_components_swap_through_configuration_alone(gen):
    m = make("egain", gen)
    assert (
        isinstance(m.delta_encoder, DeltaCNN) and isinstance(m.fusion, InternalFusion) and m.aligner is None
    )
    m = make("egain", gen, delta_encoder={"type": "consultation"})
    assert isinstance(m.delta_encoder, ConsultationEncoder)
    m = make("egain", gen, aligner={"type": "ada"}, delta_calculator={"mode": "released"})
    assert isinstance(m.aligner, ResidualAligner) and m.delta_calculator.mode == "released"
    m = make("egain", gen, delta_encoder={"type": "latent"}, fusion={"type": "external"})
    assert isinstance(m.delta_encoder, LatentDeltaEncoder) and isinstance(m.fusion, ExternalFusion)
    m = make("egain", gen, basic_encoder={"type": "e4e", "units": (1, 1, 1, 1), "widths": (4, 8, 8, 16)})
    assert m.basic_encoder.body.stages[0].channels == 4
    m = make("egain", gen, fusion={"layers": ["up8", "up16"]})
    assert set(m.fusion.layer_names) == {"up8", "up16"}
    inv = m.invert(smooth_images(1))
    assert set(inv.extras["gate_maps"]) == {"up8", "up16"}
    m = make("hfgi", gen, passes=3)
    assert len(m.invert(smooth_images(1)).extras["deltas"]) == 3
    m = make("e4e", tiny_generator("stylegan2", 32))  # any generator of egain.generators
    assert m.invert(smooth_images(1)).latents.shape[1] == 8
    with pytest.raises(EgainError, match="internal fusion needs a delta encoder producing feature maps"):
        make("egain", gen, delta_encoder={"type": "latent"})
    with pytest.raises(EgainError, match="unknown delta_encoder type"):
        make("egain", gen, delta_encoder={"type": "magic"})


def test_internal_fusion_with_zero_delta_reproduces_the_basic_reconstruction_exactly(gen):
    m = make("egain", gen).eval()
    with torch.no_grad():
        for p in m.fusion.parameters():  # a "trained" fusion: the property must not rest on zero init
            p.add_(torch.randn_like(p))
        w_b = m.encode(smooth_images(2))
        y0 = m.synthesize(w_b)
        layer = gen.default_fusion_layers[0]
        zero = torch.zeros(2, m.delta_encoder.out_channels, 8, 8)
        assert torch.equal(m.synthesize(w_b, m.fusion(zero)), y0)
        assert not torch.equal(m.synthesize(w_b, m.fusion(torch.randn_like(zero))), y0)
        # the full flow: a source equal to its basic reconstruction has Delta0 = 0 and passes unchanged
        x = y0.clamp(-1, 1)
        r = m.run(x, passes=2, basic_latents=w_b)
        assert torch.equal(r.deltas[0], torch.zeros_like(x))
        assert torch.equal(r.reconstruction, r.basic_reconstruction)
        assert layer in r.fusion


def test_save_and_load_roundtrip_and_foreign_checkpoints(gen, tmp_path):
    m = make("hfgi", gen)
    with torch.no_grad():  # make the fusion non-trivial so the roundtrip is a real check
        for p in m.fusion.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = smooth_images(2)
    path = m.save(tmp_path / "hfgi.pt")
    back = methods.create("hfgi", checkpoint=path)  # generator embedded in the checkpoint
    assert torch.allclose(back.invert(x).reconstruction, m.invert(x).reconstruction, atol=1e-6)
    assert methods.load_method(path).name == "hfgi"
    with pytest.raises(CheckpointError, match="holds a 'hfgi' model, not 'egain'"):
        methods.create("egain", checkpoint=path)
    other = tiny_generator("swagan", 16)
    with pytest.raises(CheckpointError, match="trained for a 32 px swagan generator"):
        methods.create("hfgi", generator=other, checkpoint=path)
    with pytest.raises(EgainError, match="cannot change"):
        methods.create("hfgi", checkpoint=path, fusion={"type": "external"})
    assert methods.create("hfgi", checkpoint=path, passes=2).passes == 2
    torch.save({"hello": 1}, tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="neither an egain inversion checkpoint"):
        methods.create("hfgi", checkpoint=tmp_path / "junk.pt")


def test_images_as_paths_pil_and_wrong_size_tensors(gen, tmp_path):
    m = make("e4e", gen)
    imgs = smooth_images(2, size=48)
    save_image(imgs[0], tmp_path / "a.png")
    pil = Image.open(tmp_path / "a.png")
    a = m.invert([tmp_path / "a.png", pil])
    assert a.reconstruction.shape == (2, 3, 32, 32)
    assert torch.allclose(a.reconstruction[0], a.reconstruction[1])
    with pytest.warns(UserWarning, match="resizing to the model's 32x32"):
        b = m.invert(imgs)
    assert b.reconstruction.shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        m.invert(torch.zeros(2, 1, 32, 32))
    with pytest.raises(InputError, match="no images"):
        m.invert([])


def test_inversion_select_and_parameter_counts(gen):
    m = make("egain-external", gen)
    inv = m.invert(smooth_images(3))
    one = inv.select([1])
    assert len(one) == 1 and one.extras["delta"].shape[0] == 1
    g_params = sum(p.numel() for p in gen.parameters())
    assert m.parameter_count() - m.parameter_count(include_generator=False) == g_params


@pytest.mark.parametrize("layers", [None, ["up8", "up16"]])
def test_reusing_the_generator_prefix_changes_nothing(gen, layers):
    fusion = {"layers": layers} if layers else {}
    m = make("egain", gen, fusion=fusion, passes=2)
    with torch.no_grad():
        for p in m.fusion.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = smooth_images(2)
    fast = m.invert(x).reconstruction
    m.config["reuse_prefix"] = False
    assert m._prefix_layer() is None
    assert torch.allclose(m.invert(x).reconstruction, fast, atol=1e-5)
