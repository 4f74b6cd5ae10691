import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import msinet_reid
from msinet_reid.data import make_market1501

DATA = Path(__file__).parent / 'data'
# The synthetic Market-1501 most tests train on: small enough for seconds per epoch.
TINY_MARKET = dict(num_train_ids=8, num_test_ids=4, height=64, width=32)


@pytest.fixture(scope='session')
def reference_facts() -> dict:
    """Facts about the reference implementation (state_dict keys/shapes, param counts)."""
    return json.loads((DATA / 'msinet_reference.json').read_text())


@pytest.fixture(scope='session')
def reference_outputs() -> dict:
    """Outputs of the reference implementation for ``helpers.deterministic_*`` inputs."""
    with np.load(DATA / 'reference_outputs.npz') as outputs:
        return {key: torch.from_numpy(outputs[key]) for key in outputs.files}


@pytest.fixture(scope='session')
def tiny_market(tmp_path_factory):
    """``tiny_market(**settings)``: the root of a synthetic Market-1501 made with
    ``TINY_MARKET`` updated by ``settings``, generated once per session per settings."""
    roots = {}

    def make(**settings) -> Path:
        settings = {**TINY_MARKET, **settings}
        key = tuple(sorted(settings.items()))
        if key not in roots:
            roots[key] = tmp_path_factory.mktemp('market')
            make_market1501(roots[key], progress=False, **settings)
        return roots[key]

    return make


@pytest.fixture
def unique_name():
    """A model name nobody has registered yet."""
    return lambda: f'msinet_test_{uuid.uuid4().hex[:8]}'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_report_header(config):
    return f'msinet-reid {msinet_reid.__version__}, torch {torch.__version__}'
