"""SIGTERM/SIGINT set the trainers' stop flag instead of killing them; handlers are restored."""

from __future__ import annotations

import os
import signal

from egain.runtime.signals import StopFlag


def test_sigterm_sets_flag_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with StopFlag() as flag:
        assert not flag.agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.stop and flag.agreed()
    assert signal.getsignal(signal.SIGTERM) == before
