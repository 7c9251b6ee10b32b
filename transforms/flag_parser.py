"""The command lines' argument parser: one-line errors, no abbreviations.

Shared by the jobs (pipelines.balance, pipelines.histogram) and the trainer's commands
(training.fit, training.evaluate, training.predict). It imports nothing of Beam, so the
trainer starts where Beam is not installed (e.g. a GPU machine with JAX only).
"""

from __future__ import annotations

import argparse


class FlagParser(argparse.ArgumentParser):
    """argparse, with a bad flag value as one line (ValueError) instead of the whole usage."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)  # Beam's parser takes no abbreviations either

    def error(self, message: str):
        raise ValueError(f"{message} (see {self.prog} --help)")
