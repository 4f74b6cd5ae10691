import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import msinet_reid

DATA = Path(__file__).parent / 'data'


@pytest.fixture(scope='session')
def reference_facts() -> dict:
    """Facts about the reference implementation (state_dict keys/shapes, param counts)."""
    return json.loads((DATA / 'msinet_reference.json').read_text())


@pytest.fixture(scope='session')
def reference_outputs() -> dict:
    """Outputs of the reference implementation for ``helpers.deterministic_*`` inputs."""
    with np.load(DATA / 'reference_outputs.npz') as outputs:
        return {key: torch.from_numpy(outputs[key]) for key in outputs.files}


@pytest.fixture
def unique_name():
    """A model name nobody has registered yet."""
    return lambda: f'msinet_test_{uuid.uuid4().hex[:8]}'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_report_header(config):
    return f'msinet-reid {msinet_reid.__version__}, torch {torch.__version__}'
