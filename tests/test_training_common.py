"""The helpers shared by the synthfaces trainers (egain.training.common)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from egain.errors import CheckpointError, InputError
from egain.runtime.checkpoint import atomic_torch_save
from egain.runtime.distributed import DistInfo
from egain.runtime.files import atomic_write_json
from egain.runtime.runinfo import RunClock
from egain.training.common import StepBatches, adamw_param_groups, resume, synthfaces_train_dataset


def test_step_batches_depend_only_on_seed_rank_and_step():
    whole = list(StepBatches(100, 4, seed=3, rank=0, start=0, end=6))
    tail = list(StepBatches(100, 4, seed=3, rank=0, start=4, end=6))
    assert tail == whole[4:]
    assert list(StepBatches(100, 4, seed=3, rank=1, start=0, end=6)) != whole


def test_adamw_groups_decay_only_matrices():
    groups = adamw_param_groups(nn.Linear(3, 2), 0.1)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]


def test_train_dataset_refuses_held_out_recipes_and_splits():
    with pytest.raises(InputError, match="held out"):
        synthfaces_train_dataset("synthfaces:recipe=eval", 16, "x training")
    with pytest.raises(InputError, match="x training uses the train split only"):
        synthfaces_train_dataset("synthfaces:4x1,split=test", 16, "x training")


@dataclass
class _Cfg:
    size: int = 16


def test_resume_reports_a_shape_mismatch_in_one_line(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    other = nn.Linear(3, 2)
    atomic_torch_save(
        {
            "egain_format": "fmt",
            "config": {"size": 16},
            "model": other.state_dict(),
            "optimizer": torch.optim.AdamW(other.parameters()).state_dict(),
            "step": 5,
        },
        ckpt,
    )
    net = nn.Linear(4, 2)
    kw = dict(
        fmt="fmt",
        what="test checkpoint",
        config=_Cfg(),
        keys=("size",),
        module=net,
        optimizer=torch.optim.AdamW(net.parameters()),
        clock=RunClock(),
        dist_info=DistInfo(),
    )
    with pytest.raises(CheckpointError, match="has shape"):
        resume("auto", ckpt, **kw)
    with pytest.raises(CheckpointError, match="size=16, now 8"):
        resume("auto", ckpt, **{**kw, "config": _Cfg(size=8)})
    assert resume("auto", tmp_path / "none.pt", **kw) == 0
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(str(tmp_path / "none.pt"), ckpt, **kw)


def test_report_json_holds_nan_as_null(tmp_path):
    atomic_write_json(tmp_path / "report.json", {"miou": float("nan")})
    assert json.loads((tmp_path / "report.json").read_text()) == {"miou": None}


@pytest.mark.parametrize("trainer", ["attributes", "parsing"])
def test_train_commands_refuse_a_file_as_run_folder(trainer, tmp_path, capsys):
    from egain.cli.main import main

    blocker = tmp_path / "run"
    blocker.write_text("")
    assert main(["faces", trainer, "train", "--out", str(blocker), "--steps", "1"]) != 0
    assert "is an existing file; expected a folder" in capsys.readouterr().err


def test_int_list():
    import argparse

    from egain.cli.argtypes import int_list

    assert int_list("8,16, 32") == [8, 16, 32]
    with pytest.raises(argparse.ArgumentTypeError):
        int_list("8,x")
