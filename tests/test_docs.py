"""The README and docs/ say what the code does: every Python block runs, or says why it
cannot (``<!-- needs ... -->`` on the line before it), and even then every name it
imports or reaches through a module exists; every ``msinet-reid`` command and example
script shown parses with the options shown."""
import ast
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

import pytest

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('**/*.md'))]
BLOCK = re.compile(r'(?:<!-- (needs [^>]*?) -->\n)?```(python|bash)\n(.*?)```', re.S)


class Block(NamedTuple):
    page: Path
    line: int
    language: str
    code: str
    needs: Optional[str]  # why it does not run here, or None


def blocks(page: Path) -> List[Block]:
    text = page.read_text()
    return [Block(page, text[:match.start()].count('\n') + 1, match.group(2), match.group(3),
                  match.group(1)) for match in BLOCK.finditer(text)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_page_has_code_and_the_docs_exist():
    assert len(PAGES) > 5, 'docs/ is missing'
    for page in PAGES:
        for block in blocks(page):
            if block.needs:  # a reason says what is missing, not just "skip"
                assert len(block.needs.split()) >= 3, (page_id(page), block.line, block.needs)


# ------------------------------------------------------------------------------------
# Names: what a block imports, and every attribute it reaches through a module, exist.


def _modules(tree: ast.AST) -> dict:
    """Local name -> module path, for the block's imports of modules."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split('.')[0]] = (
                    alias.name if alias.asname else alias.name.split('.')[0])
    return names


def _attribute_chains(tree: ast.AST) -> Iterator[List[str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(
                getattr(node, 'parent', None), ast.Attribute):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            if isinstance(node, ast.Name):
                yield [node.id, *chain]


def _resolve(module: str, attributes: List[str]) -> None:
    """Follow ``module.a.b...`` through modules, up to the first class or function."""
    value = importlib.import_module(module)
    for depth, attribute in enumerate(attributes):
        if hasattr(value, attribute):
            value = getattr(value, attribute)
        elif hasattr(value, '__path__') and importlib.util.find_spec(
                f'{value.__name__}.{attribute}') is not None:
            value = importlib.import_module(f'{value.__name__}.{attribute}')
        else:
            raise AssertionError(f'{".".join([module, *attributes[:depth + 1]])} does not exist')
        if not isinstance(value, types.ModuleType):
            return  # a class or function: what follows it happens at run time


PYTHON_BLOCKS = [block for page in PAGES for block in blocks(page) if block.language == 'python']


@pytest.mark.parametrize('block', PYTHON_BLOCKS,
                         ids=[f'{page_id(b.page)}:{b.line}' for b in PYTHON_BLOCKS])
def test_every_name_a_python_block_uses_exists(block):
    tree = ast.parse(block.code)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f'{node.module}.{alias.name}') is not None, (
                    f'{page_id(block.page)}:{block.line}: {node.module}.{alias.name} does not '
                    f'exist')
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    modules = _modules(tree)
    for chain in _attribute_chains(tree):
        if chain[0] in modules and chain[0].startswith(('msinet_reid', 'torchreid')):
            try:
                _resolve(modules[chain[0]], chain[1:])
            except AssertionError as error:
                raise AssertionError(f'{page_id(block.page)}:{block.line}: {error}') from None


# ------------------------------------------------------------------------------------
# Running: each page's runnable blocks in order, in one namespace, in a process of its own,
# in a folder holding tiny synthetic datasets under reid-data/ and local ImageNet-style
# weights (MSINET_PRETRAINED), so nothing downloads. One driver imports torch, torchreid and
# msinet_reid once and forks a process per page (as a DataLoader forks its workers after
# those imports): a fresh interpreter per page spent most of its time importing them.

DRIVER = '''
import json, os, sys, traceback
import torch, torchreid, msinet_reid  # noqa: F401  (once, before forking)
for page, runnable, log in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:
        output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(output, 1)
        os.dup2(output, 2)
        namespace, status = {'__name__': '__main__'}, 0
        for line, code in runnable:
            try:
                exec(compile(code, f'{page}:{line}', 'exec'), namespace)
            except BaseException:
                traceback.print_exc()
                print(f'the block at {page}:{line} failed', file=sys.stderr)
                status = 1
                break
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    print(json.dumps([page, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]), flush=True)
'''


@pytest.fixture(scope='module')
def imagenet_checkpoint_file(tmp_path_factory) -> Path:
    """A file in the layout of the authors' ImageNet checkpoint, for pretrained=True."""
    import torch

    from helpers import deterministic_state_dict
    from msinet_reid.models import MSINET_IMAGENET, MSINet

    model = MSINet(1000, 'msinet')
    model.load_state_dict(deterministic_state_dict(model))
    path = tmp_path_factory.mktemp('weights') / MSINET_IMAGENET.filename
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    from msinet_reid.data import make_market1501, make_vehicleid, make_veri

    folder = tmp_path_factory.mktemp('docs')
    data = folder / 'reid-data'
    make_market1501(data, num_train_ids=8, num_test_ids=4, height=64, width=32, progress=False)
    make_veri(data, num_train_ids=8, num_test_ids=4, num_cameras=6, height=64, width=64,
              progress=False)
    make_vehicleid(data, num_train_ids=8, num_test_ids=6, height=64, width=64, progress=False)
    # A checkpoint as torchreid's engines write it, where the docs' examples look for one.
    import numpy as np
    import torch
    import torchreid

    torch.manual_seed(0)
    model = torchreid.models.build_model('msinet', 7, pretrained=False)
    torchreid.utils.save_checkpoint({'state_dict': model.state_dict(), 'epoch': 60,
                                     'rank1': np.float32(0.5)}, str(folder / 'log/msinet/model'))
    return folder


RUNNABLE_PAGES = [page for page in PAGES
                  if any(b.language == 'python' and not b.needs for b in blocks(page))]


@pytest.fixture(scope='module')
def page_runs(workspace, imagenet_checkpoint_file, tmp_path_factory) -> dict:
    """Page id -> (exit status, output) of running its blocks, for every runnable page."""
    logs = tmp_path_factory.mktemp('page-logs')
    pages = [(page_id(page), [(b.line, b.code) for b in blocks(page)
                              if b.language == 'python' and not b.needs],
              str(logs / f'{number}.log')) for number, page in enumerate(RUNNABLE_PAGES)]
    env = {**os.environ, 'MSINET_PRETRAINED': str(imagenet_checkpoint_file),
           'TORCH_HOME': str(workspace / 'torch'), 'XDG_CACHE_HOME': str(workspace / 'cache'),
           'PYTHONPATH': str(ROOT)}
    driver = subprocess.run([sys.executable, '-c', DRIVER], input=json.dumps(pages),
                            cwd=workspace, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert driver.returncode == 0, driver.stderr[-3000:]
    statuses = dict(json.loads(line) for line in driver.stdout.splitlines())
    return {page: (statuses.get(page), Path(log).read_text() if Path(log).exists() else '')
            for page, _, log in pages}


@pytest.mark.slow
@pytest.mark.parametrize('page', RUNNABLE_PAGES, ids=[page_id(p) for p in RUNNABLE_PAGES])
def test_every_runnable_python_block_runs(page, page_runs):
    status, output = page_runs[page_id(page)]
    assert status == 0, output[-3000:]


# ------------------------------------------------------------------------------------
# Commands: msinet-reid and the example scripts parse the options shown.


def command_lines() -> List[Block]:
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.language != 'bash':
                continue
            for offset, line in enumerate(block.code.replace('\\\n', ' ').splitlines()):
                for command in re.split(r'&&|;', line.split(' #')[0]):
                    command = command.strip()
                    if command.startswith(('msinet-reid ', 'python examples/')):
                        found.append(Block(page, block.line + offset, 'bash', command, None))
    return found


COMMANDS = command_lines()


@pytest.mark.parametrize('command', COMMANDS,
                         ids=[f'{page_id(c.page)}:{c.line}' for c in COMMANDS])
def test_every_command_shown_parses(command, capsys):
    words = shlex.split(command.code)
    where = f'{page_id(command.page)}:{command.line}: {command.code}'
    if words[0] == 'msinet-reid':
        from msinet_reid.cli import build_parser

        parse = build_parser().parse_args
        arguments = words[1:]
    else:
        parse = load_script(words[1]).parse_args
        arguments = words[2:]
    try:
        parse(arguments)
    except SystemExit as error:
        if error.code:
            pytest.fail(f'{where}\n{capsys.readouterr().err}')


def test_commands_are_found():
    assert any(c.code.startswith('msinet-reid demo') for c in COMMANDS)
