"""Regenerate the reference fixtures from the authors' MSINet code (run by hand, not in CI).

    git clone https://github.com/vimar-gu/MSINet /tmp/MSINet
    python tests/data/make_msinet_reference.py /tmp/MSINet --out /tmp/fixtures \
        --compare-with tests/data

writes, into ``--out`` (default: this folder),

* ``reference_outputs.npz``: the outputs of the reference ``reid.models.msinet.MSINet``
  (float64, CPU, 10 classes, no SAM) for ``helpers.deterministic_images(4, 64, 32)`` with
  ``helpers.deterministic_state_dict`` weights, for the genotypes ``msinet``,
  ``msinet_vr`` and ``msinet_s``: ``<genotype>/eval`` (eval mode, ``cat(v, f_v)``) and
  ``<genotype>/train/{v,f_v,y,f_y}`` (train mode, batch statistics). tests/test_models.py
  compares this package's models with them;
* ``msinet_reference.json``: facts about the reference models built with 751 classes
  (``state_dict`` keys and shapes in registration order, parameter counts, the eval
  feature size at the training input size) and the genotypes.

Derived from the reference code: the ``msinet`` genotype (``genotype_factory['msmt']``),
every state_dict, the parameter counts, the eval feature size, the person input size
(``train.py``'s ``--height``/``--width`` defaults) and the SAM models' input sizes (the
network's stride times the grid ``AlignModule`` is built for: 16x8 for person datasets,
16x16 for ``veri``/``vehicleid``).

Not in the reference code, so copied unchanged from the committed
``tests/data/msinet_reference.json``: the ``msinet_vr`` and ``msinet_s`` genotypes (the
paper's Table 7; the authors' code ships only the ``msmt`` one) and the ``about`` text.

The reference's ``MSINet`` takes any genotype list, so the ``msinet_vr`` and ``msinet_s``
outputs come from the authors' class built with the paper's genotypes, with the channels
of their ``msinet_x1_0``. Weights follow ``deterministic_state_dict``, which depends only on
each tensor's name, position and shape, applied to the reference model itself (its names
and order are this package's: tests/test_models.py checks the layout).

Imports the checkout from the path given (nothing of it is copied into this project); needs
only torch and numpy. Both files are written atomically (temporary file, then rename), the
npz with fixed zip timestamps so equal arrays give equal bytes. ``--compare-with DIR``
prints the largest absolute difference per array from DIR's fixtures and whether the JSON
files are equal; the exit status is 1 if the JSON differs or an array differs by more than
1e-10 of its largest value (float64 round-off, which depends on the thread count and the
torch build; the tests allow 1e-5). Set ``OMP_NUM_THREADS=1`` on a shared machine: it needs
about 8 s of CPU that way, much more with idle OpenMP threads spinning.
"""
import argparse
import ast
import contextlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for helpers

from helpers import deterministic_images, deterministic_state_dict  # noqa: E402

OUTPUTS = 'reference_outputs.npz'
FACTS = 'msinet_reference.json'
GENOTYPE_NAMES = ('msinet', 'msinet_vr', 'msinet_s')  # the npz's order
OUTPUT_CLASSES = 10
OUTPUT_BATCH, OUTPUT_HEIGHT, OUTPUT_WIDTH = 4, 64, 32
FACT_CLASSES = 751  # Market-1501's training identities
# name in the JSON -> (sam_mode, source_dataset) given to the reference's MSINet
FACT_MODELS = {
    'msinet': ('none', 'market1501'),
    'msinet_sam_person': ('pos_neg', 'market1501'),
    'msinet_sam_vehicle': ('pos_neg', 'veri'),
}


def import_reference(checkout: Path):
    """The reference's ``reid.models.msinet`` and ``reid.models.operations`` modules."""
    if not (checkout / 'reid' / 'models' / 'msinet.py').is_file():
        sys.exit(f'{checkout} is not an MSINet checkout (no reid/models/msinet.py); '
                 'clone https://github.com/vimar-gu/MSINet and pass its path')
    sys.path.insert(0, str(checkout))
    from reid.models import msinet, operations

    if Path(msinet.__file__).resolve().parents[2] != checkout:
        sys.exit(f"'reid' was imported from {msinet.__file__}, not from {checkout}")
    return msinet, operations


def train_py_input_hw(checkout: Path) -> list:
    """``--height`` and ``--width`` defaults of the reference's train.py (read, not run)."""
    defaults = {}
    for node in ast.walk(ast.parse((checkout / 'train.py').read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'add_argument':
            flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
            for keyword in node.keywords:
                if keyword.arg == 'default' and isinstance(keyword.value, ast.Constant):
                    for flag in flags:
                        defaults[flag] = keyword.value.value
    return [defaults['--height'], defaults['--width']]


def build(msinet, genotype, num_classes, sam_mode='none', source_dataset='market1501'):
    """The reference's MSINet, with the channels of its own ``msinet_x1_0``."""
    args = SimpleNamespace(sam_mode=sam_mode, source_dataset=source_dataset,
                           genotypes='msmt', pretrained=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the genotype of each stage
        channels = msinet.msinet_x1_0(args, num_classes=1).channels
        return msinet.MSINet(args, num_classes, channels=channels, genotypes=list(genotype))


def reference_outputs(msinet, genotypes: dict) -> dict:
    images = deterministic_images(OUTPUT_BATCH, OUTPUT_HEIGHT, OUTPUT_WIDTH)
    outputs = {}
    for name in GENOTYPE_NAMES:
        print(f'outputs of {name} ...', file=sys.stderr, flush=True)
        model = build(msinet, genotypes[name], OUTPUT_CLASSES).double()
        model.load_state_dict(deterministic_state_dict(model))
        with torch.no_grad():
            outputs[f'{name}/eval'] = model.eval()(images)
            v, y, f_v, f_y, sam_scores = model.train()(images)
        assert sam_scores is None
        outputs.update({f'{name}/train/v': v, f'{name}/train/f_v': f_v,
                        f'{name}/train/y': y, f'{name}/train/f_y': f_y})
    return {key: value.numpy() for key, value in outputs.items()}


def model_facts(msinet, genotype, sam_mode, source_dataset, person_hw) -> dict:
    print(f'facts of sam_mode={sam_mode} {source_dataset} ...', file=sys.stderr, flush=True)
    model = build(msinet, genotype, FACT_CLASSES, sam_mode, source_dataset).eval()
    input_hw = person_hw
    if sam_mode != 'none':
        with torch.no_grad():
            maps = model.featuremaps(torch.zeros(1, 3, OUTPUT_HEIGHT, OUTPUT_WIDTH))[0]
            stride = OUTPUT_HEIGHT // maps.shape[2]
        qaconv = model.align_module.qaconv
        input_hw = [stride * qaconv.height, stride * qaconv.width]
    with torch.no_grad():  # the eval forward runs at this size (SAM's included)
        feature_dim = model(torch.zeros(2, 3, *input_hw)).shape[1]
    return {
        'input_hw': input_hw,
        'num_classes': FACT_CLASSES,
        'eval_feature_dim': feature_dim,
        'params_excluding_classifiers': sum(
            p.numel() for key, p in model.named_parameters() if 'classifier' not in key),
        'params_total': sum(p.numel() for p in model.parameters()),
        'state_dict': [[key, list(value.shape)] for key, value in model.state_dict().items()],
    }


def reference_facts(msinet, operations, checkout: Path, committed: dict) -> dict:
    code_genotype = operations.genotype_factory['msmt'][0]
    genotypes = {name: list(ops) for name, ops in committed['genotypes'].items()}
    genotypes['msinet'] = list(code_genotype)  # the others are the paper's (Table 7)
    person_hw = train_py_input_hw(checkout)
    models = {name: model_facts(msinet, code_genotype, sam_mode, dataset, person_hw)
              for name, (sam_mode, dataset) in FACT_MODELS.items()}
    assert models['msinet_sam_person']['input_hw'] == person_hw
    return {'about': committed['about'], 'genotypes': genotypes, 'models': models}


def dumps_facts(facts: dict) -> str:
    """The committed layout: one state_dict entry a line, the rest compact."""
    lines = ['{', f' "about": {json.dumps(facts["about"])},',
             f' "genotypes": {json.dumps(facts["genotypes"])},', ' "models": {']
    for m, (name, model) in enumerate(facts['models'].items()):
        head = {key: model[key] for key in ('input_hw', 'num_classes', 'eval_feature_dim')}
        counts = {key: model[key] for key in ('params_excluding_classifiers', 'params_total')}
        lines += [f'  {json.dumps(name)}: {{',
                  f'   {json.dumps(head)[1:-1]},', f'   {json.dumps(counts)[1:-1]},',
                  '   "state_dict": [']
        entries = model['state_dict']
        lines += [f'    {json.dumps(e)}' + (',' if i < len(entries) - 1 else '')
                  for i, e in enumerate(entries)]
        lines += ['   ]', '  },' if m < len(facts['models']) - 1 else '  }']
    lines += [' }', '}']
    return '\n'.join(lines) + '\n'


def atomic_write(path: Path, write) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(handle, 'wb') as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 otherwise
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_npz(path: Path, arrays: dict) -> None:
    """As ``np.savez_compressed``, with fixed timestamps: equal arrays, equal bytes."""
    def write(f):
        with zipfile.ZipFile(f, 'w', zipfile.ZIP_DEFLATED) as archive:
            for key, array in arrays.items():  # numpy's own way, but the date
                info = zipfile.ZipInfo(f'{key}.npy', date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, 'w', force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array),
                                              allow_pickle=False)
    atomic_write(path, write)


def compare(out: Path, other: Path, tolerance: float = 1e-10) -> bool:
    """Print the differences; True if the JSON files are equal and every array is within
    ``tolerance`` times its largest value of DIR's (float64 round-off; the tests use 1e-5)."""
    close = True
    with np.load(out / OUTPUTS) as new, np.load(other / OUTPUTS) as old:
        if new.files != old.files:
            print(f'npz keys differ: {new.files} vs {old.files}')
            close = False
        for key in new.files:
            if key in old.files:
                diff, scale = np.abs(new[key] - old[key]).max(), np.abs(old[key]).max()
                print(f'{key:22s} max |diff| {diff:.3e}  (max |value| {scale:.3g})')
                close &= bool(diff <= tolerance * scale)
    for name in (OUTPUTS, FACTS):
        equal = (out / name).read_bytes() == (other / name).read_bytes()
        print(f'{name}: {"byte-identical" if equal else "bytes differ"}')
    facts_equal = (json.loads((out / FACTS).read_text())
                   == json.loads((other / FACTS).read_text()))
    print(f'{FACTS}: {"equal" if facts_equal else "NOT equal"} as JSON')
    print(f'arrays {"within" if close else "NOT within"} {tolerance:g} x their largest value')
    return close and facts_equal


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkout', type=Path, help='a checkout of github.com/vimar-gu/MSINet')
    parser.add_argument('--out', type=Path, default=HERE,
                        help='folder to write (default: %(default)s, the committed fixtures)')
    parser.add_argument('--compare-with', type=Path, metavar='DIR',
                        help='print the differences from the fixtures in DIR')
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    committed = json.loads((HERE / FACTS).read_text())  # the paper-only fields

    torch.set_grad_enabled(False)
    msinet, operations = import_reference(checkout)
    facts = reference_facts(msinet, operations, checkout, committed)
    outputs = reference_outputs(msinet, facts['genotypes'])

    args.out.mkdir(parents=True, exist_ok=True)
    write_npz(args.out / OUTPUTS, outputs)
    atomic_write(args.out / FACTS, lambda f: f.write(dumps_facts(facts).encode()))
    print(f'wrote {args.out / OUTPUTS} and {args.out / FACTS}')
    if args.compare_with is not None:
        return 0 if compare(args.out, args.compare_with) else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
