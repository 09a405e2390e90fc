import shutil
from pathlib import Path

import numpy as np
import pytest

from peakplan import examples

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture
def tiny():
    """The tiny built-in pack: 6 weeks, 2 segments, 2 resources."""
    return examples.tiny_pack()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def retail_copy(tmp_path):
    """A private copy of the retail scenario and its tables, safe to break."""
    (tmp_path / "scenarios").mkdir()
    shutil.copy(ROOT / "scenarios" / "retail_peak.yaml", tmp_path / "scenarios" / "retail_peak.yaml")
    shutil.copytree(ROOT / "data" / "retail", tmp_path / "data" / "retail")
    return tmp_path / "scenarios" / "retail_peak.yaml"
