"""``egain app``: the browser demo (Gradio), the layer above the workflows.

Upload a picture or pick a bundled example, optionally align its face (``egain[align]``), choose
one or several methods (the bundled synthfaces models, or any registered method with a checkpoint
given by path as ``NAME=CHECKPOINT``), and see the source and the reconstructions side by side with
their scores (ID on the bundled synthfaces ArcFace, SSIM, PSNR); a zip of the results can be
downloaded. Pictures unlike synthfaces get the same warning as ``egain invert``.

Runs offline: Gradio serves its built frontend from its wheel, analytics are switched off
(``GRADIO_ANALYTICS_ENABLED=False``) and nothing is fetched. Nothing below ``egain.app`` imports it.
Needs the optional extra: ``pip install 'egain[app]'``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from egain.errors import EgainError

#: the methods ticked when the app opens
DEFAULT_METHODS = ("egain",)


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr  # type: ignore[import-not-found]
    except ImportError:
        raise EgainError(
            "the browser demo needs gradio (missing); install it with: pip install 'egain[app]'"
        ) from None
    return gr


class Engine:
    """Loads each method once and inverts single pictures with it (the app's back end, no Gradio)."""

    def __init__(self, extra: Sequence[str] = (), device: str = "cpu") -> None:
        from egain.workflows.bundled import BUNDLED_METHODS

        self.device = device
        self.labels = [*BUNDLED_METHODS, *extra]
        self._models: dict = {}
        self._embedder = None
        self._check = None
        self._aligner = None

    def model(self, label: str):
        if label not in self._models:
            from egain.workflows.bundled import load_bundled

            self._models[label] = load_bundled(label, self.device)
        return self._models[label]

    def align(self, image):
        """(aligned picture, note or None); InputError when no face is found."""
        from egain.faces.align import FaceAligner

        if self._aligner is None:
            self._aligner = FaceAligner()
        face = self._aligner.align(image, name="the picture")
        return face.image, face.note

    def domain_warning(self, image) -> str | None:
        """The synthfaces-likeness warning for a picture (None when it looks like synthfaces)."""
        from egain.utils.images import pil_to_tensor, resize_center_crop
        from egain.workflows.domain import ADVICE, SynthfacesCheck

        if self._check is None:
            self._check = SynthfacesCheck(self.device)
        score = self._check.score(pil_to_tensor(resize_center_crop(image.convert("RGB"), 64))[None])[0]
        if not score.unlike_synthfaces:
            return None
        return (
            f"This picture does not look like a synthfaces image (domain score {score.score:.1f}): {ADVICE}."
        )

    def invert(self, image, labels: Sequence[str]) -> list[dict]:
        """Per method: label, reconstruction (PIL) and scores against the source as the model saw it."""
        import torch

        from egain.faces import load_embedder
        from egain.metrics import identity_similarity, psnr, ssim
        from egain.utils.images import pil_to_tensor, resize_center_crop, tensor_to_pil

        if self._embedder is None:
            # the ID scorer of evaluate/compare, not the ArcFace the methods trained against
            self._embedder = load_embedder("synthfaces-cosface", self.device)
        rows = []
        self._last = {}
        for label in labels:
            model = self.model(label)
            size = int(getattr(model, "input_size", 0) or image.size[0])
            src = pil_to_tensor(resize_center_crop(image.convert("RGB"), size))[None]
            with torch.no_grad():
                inv = model.invert([image.convert("RGB")])
                self._last[label] = inv
                rec = inv.reconstruction.detach().float().cpu().clamp(-1, 1)
                scores = {
                    "ID": float(identity_similarity(self._embedder, src, rec)[0]),
                    "SSIM": float(ssim(src, rec)[0]),
                    "PSNR": float(psnr(src, rec)[0]),
                }
            rows.append(
                {"label": label, "image": tensor_to_pil(rec[0]), "source": tensor_to_pil(src[0]), **scores}
            )
        return rows

    def edit(self, strengths: dict[str, float]) -> list[tuple]:
        """Edit the last inversion of every method: the named directions at their strengths, added.

        Each method edits by its own rule (``method.edit``: HFGI re-aligns its distortion with ADA,
        egain re-fuses its details); directions are the bundled ones of the method's generator.
        """
        from egain.editing.apply import method_edit, resolve_directions
        from egain.utils.images import tensor_to_pil

        specs = [f"{name}*{value:g}" for name, value in strengths.items() if value]
        out = []
        for label, inv in getattr(self, "_last", {}).items():
            model = self.model(label)
            if not specs:
                out.append((tensor_to_pil(inv.reconstruction[0].float().cpu().clamp(-1, 1)), label))
                continue
            try:
                direction = resolve_directions(specs, model.generator)
            except EgainError as exc:
                out.append(
                    (tensor_to_pil(inv.reconstruction[0].float().cpu().clamp(-1, 1)), f"{label}: {exc}")
                )
                continue
            edited = method_edit(model, inv, direction, 1.0).detach().float().cpu().clamp(-1, 1)
            out.append((tensor_to_pil(edited[0]), f"{label}: {' + '.join(specs)}"))
        return out


#: the sliders of the editing panel (bundled directions of both generators)
EDIT_SLIDERS = ("smile", "yaw", "age", "glasses")


def write_results(rows: list[dict], source, folder: str | os.PathLike) -> Path:
    """source.png, METHOD.png per method and scores.csv, zipped into ``folder/egain_results.zip``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    zpath = folder / "egain_results.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, im in [("source.png", source), *((f"{r['label']}.png", r["image"]) for r in rows)]:
            p = folder / name.replace("=", "_").replace("/", "_")
            im.save(p)
            zf.write(p, p.name)
        lines = ["method,ID,SSIM,PSNR"] + [
            f"{r['label']},{r['ID']:.4f},{r['SSIM']:.4f},{r['PSNR']:.2f}" for r in rows
        ]
        zf.writestr("scores.csv", "\n".join(lines) + "\n")
    return zpath


def build_app(extra: Sequence[str] = (), device: str = "cpu"):
    """The Gradio Blocks of the demo; ``extra``: ``NAME=CHECKPOINT`` methods besides the bundled ones."""
    gr = _import_gradio()
    from egain.workflows.examples import example_files

    engine = Engine(extra, device)
    align_ok = importlib.util.find_spec("dlib") is not None

    def run(image, align, labels):
        if image is None:
            raise gr.Error("upload a picture or pick an example first")
        if not labels:
            raise gr.Error("choose at least one method")
        notes = []
        try:
            if align:
                image, note = engine.align(image)
                if note:
                    notes.append(note)
            warning = engine.domain_warning(image)
            if warning:
                notes.append("**Warning.** " + warning)
            rows = engine.invert(image, labels)
        except EgainError as exc:
            raise gr.Error(str(exc)) from None
        gallery = [(rows[0]["source"], "source")] + [
            (r["image"], f"{r['label']}: ID {r['ID']:.3f}, SSIM {r['SSIM']:.3f}, PSNR {r['PSNR']:.1f}")
            for r in rows
        ]
        table = [[r["label"], round(r["ID"], 4), round(r["SSIM"], 4), round(r["PSNR"], 2)] for r in rows]
        zpath = write_results(rows, rows[0]["source"], tempfile.mkdtemp(prefix="egain-app-"))
        return gallery, table, "\n\n".join(notes) or "Done.", str(zpath)

    with gr.Blocks(title="egain") as demo:
        gr.Markdown(
            "# egain: GAN inversion\nUpload a face or pick an example, choose methods, press **Invert**. "
            "The bundled models know only the synthfaces world (64 px); real photos need published "
            "FFHQ checkpoints (`egain app --method NAME=CHECKPOINT`)."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="picture", elem_id="egain-input", sources=["upload"])
                gr.Examples([[str(f)] for f in example_files()], inputs=[image], label="bundled examples")
                align = gr.Checkbox(
                    label="align the face first (FFHQ, dlib)"
                    + ("" if align_ok else ": needs pip install 'egain[align]'"),
                    value=False,
                    interactive=align_ok,
                    elem_id="egain-align",
                )
                labels = gr.CheckboxGroup(
                    engine.labels,
                    value=[m for m in DEFAULT_METHODS if m in engine.labels],
                    label="methods",
                    elem_id="egain-methods",
                )
                button = gr.Button("Invert", variant="primary", elem_id="egain-invert")
            with gr.Column():
                gallery = gr.Gallery(label="source and reconstructions", columns=4, elem_id="egain-gallery")
                table = gr.Dataframe(
                    headers=["method", "ID", "SSIM", "PSNR"], label="scores", elem_id="egain-scores"
                )
                status = gr.Markdown(elem_id="egain-status")
                download = gr.File(label="download (zip)", elem_id="egain-download")
        # --- editing: one slider per bundled direction; every method edits by its own rule ------
        with gr.Accordion("editing (after Invert)", open=False, elem_id="egain-editing"):
            sliders = [
                gr.Slider(-3, 3, value=0, step=0.5, label=name, elem_id=f"egain-edit-{name}")
                for name in EDIT_SLIDERS
            ]
            edit_button = gr.Button("Edit", elem_id="egain-edit")
            edited = gr.Gallery(label="edited", columns=4, elem_id="egain-edited")

        def run_edit(*values):
            try:
                return engine.edit(dict(zip(EDIT_SLIDERS, values, strict=True)))
            except EgainError as exc:
                raise gr.Error(str(exc)) from None

        edit_button.click(run_edit, sliders, [edited])
        button.click(run, [image, align, labels], [gallery, table, status, download])
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, extra: Sequence[str] = (), device: str = "cpu") -> None:
    """Serve the app (blocking) on ``host:port``; loopback only unless a host is given."""
    demo = build_app(extra, device)
    demo.queue().launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True)


__all__ = ["DEFAULT_METHODS", "Engine", "build_app", "launch", "write_results"]
