"""The package's layout: one home per concern, and no module reaching into another's
private names."""
import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(path for folder in ('msinet_reid', 'benchmarks', 'examples', 'tools')
                 for path in (ROOT / folder).rglob('*.py'))


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_module(package: str, name: str) -> bool:
    """Whether ``name`` imported from ``package`` is a module (a private module of this
    package, such as ``_torchreid``, may be imported by name)."""
    try:
        importlib.import_module(f'{package}.{name}')
        return True
    except ImportError:
        return False


def _private_imports(path: Path, module: str = ''):
    tree = ast.parse(path.read_text(), str(path))
    module = module or _module_of(path)
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = node.module or ''
        if node.level:  # relative: resolve against this module's package
            base = package.split('.')[:len(package.split('.')) - node.level + 1]
            source = '.'.join(base + ([node.module] if node.module else []))
        for alias in node.names:
            if alias.name.startswith('_') and not alias.name.startswith('__') \
                    and not _is_module(source, alias.name):
                yield f'{module}:{node.lineno} imports {alias.name} from {source}'


def test_no_module_imports_a_private_name_of_another():
    found = [line for path in SOURCES for line in _private_imports(path)]
    assert not found, '\n'.join(found)


def test_the_check_sees_a_private_import(tmp_path):
    """The check above is not blind: a private name imported is reported."""
    source = (ROOT / 'msinet_reid' / 'data' / 'tracking.py').read_text()
    fake = tmp_path / 'tracking.py'
    fake.write_text(source.replace('from .synthetic import JPEG_QUALITY',
                                   'from .synthetic import _DISTRACTOR, JPEG_QUALITY'))
    found = list(_private_imports(fake, 'msinet_reid.data.tracking'))
    assert found == ['msinet_reid.data.tracking:29 imports _DISTRACTOR from '
                     'msinet_reid.data.synthetic']


@pytest.mark.parametrize('name', ['InferenceModel', 'export_onnx', 'quantize_onnx',
                                  'OnnxModel', 'load_trained'])
def test_deploy_package_holds_inference_export_and_quantization(name):
    deploy = importlib.import_module('msinet_reid.deploy')
    assert hasattr(deploy, name), f'msinet_reid.deploy has no {name}'
