"""Both torchreid layouts: PyPI 0.2.5 (``torchreid.reid.*``) and official 1.4 (``torchreid.*``).

The PyPI distribution is the official code moved under ``torchreid.reid`` with its
imports rewritten; rewriting them back gives the official source layout, so both are
checked with the one torchreid installed here.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What a script written for the official API does, run in a fresh interpreter.
SCRIPT = textwrap.dedent('''
    import sys
    import msinet_reid
    import torchreid
    import torchreid.models
    from torchreid.data import ImageDataManager
    from torchreid.engine import ImageTripletEngine
    from torchreid.losses import TripletLoss
    from torchreid.metrics import evaluate_rank
    from torchreid.optim import build_optimizer
    from torchreid.utils import FeatureExtractor
    from torchreid.data.datasets import register_image_dataset

    model = torchreid.models.build_model('msinet', num_classes=751, loss='triplet',
                                         pretrained=False)
    assert type(model).__name__ == 'MSINet'
    nested = 'torchreid.reid' in sys.modules
    assert msinet_reid._torchreid.NESTED_LAYOUT is nested
    print('layout', 'nested' if nested else 'official', torchreid.__file__)
''')


def _installed_torchreid() -> Path:
    return Path(importlib.util.find_spec('torchreid').origin).parent


def _official_layout(tmp_path: Path) -> Path:
    """A source tree of the official layout, made from the installed torchreid."""
    installed = _installed_torchreid()
    if not (installed / 'reid').is_dir():
        return installed.parent  # the official layout is what is installed
    target = tmp_path / 'official' / 'torchreid'
    shutil.copytree(installed / 'reid', target,
                    ignore=shutil.ignore_patterns('__pycache__', '*.so'))
    for source in target.rglob('*.py'):
        source.write_text(source.read_text().replace('torchreid.reid', 'torchreid'))
    return target.parent


def _run(pythonpath: Path) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pythonpath), str(REPO)]))
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize('layout', ['installed', 'official'])
def test_official_api_works_after_import(layout, tmp_path):
    root = _installed_torchreid().parent if layout == 'installed' else _official_layout(tmp_path)
    output = _run(root)
    assert f'{root}{os.sep}torchreid' in output
    if layout == 'official':
        assert 'layout official' in output
