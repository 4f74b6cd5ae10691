"""Pictures: genotype diagrams (the command, the search's) and ranked lists."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image

from msinet_reid.cli import main
from msinet_reid.genotypes import GENOTYPES
from msinet_reid.retrieval import MATCH_COLOUR, OTHER_COLOUR, rank_metrics
from msinet_reid.search import SEARCH_OPS
from msinet_reid.search.diagram import genotype_figure

from helpers import random_checkpoint

pytest.importorskip('matplotlib', reason='pictures need matplotlib (extras plots, test)')


def drawn_operations(figure) -> list:
    """The operation filled at each of the 12 interaction modules, read off the figure."""
    chosen = {patch.get_gid(): patch.get_label() for ax in figure.axes for patch in ax.patches
              if (patch.get_gid() or '').startswith('chosen-')}
    return [chosen[f'chosen-{index}'] for index in range(12)]


@pytest.mark.parametrize('name', sorted(GENOTYPES))
def test_the_figure_draws_each_modules_operation(name):
    assert drawn_operations(genotype_figure(name)) == list(GENOTYPES[name])


def test_show_genotype_writes_the_table_1_cells(tmp_path, capsys):
    assert main(['show-genotype', 'msinet', '--out', str(tmp_path / 'cell.png')]) == 0
    assert f'Wrote {tmp_path / "cell.png"}: {" ".join(GENOTYPES["msinet"])}' in \
        capsys.readouterr().out
    picture = Image.open(tmp_path / 'cell.png')
    assert picture.format == 'PNG' and picture.width > 800
    # The picture depends on the genotype: another one draws other pixels.
    main(['show-genotype', 'msinet_vr', '--out', str(tmp_path / 'vr.png')])
    assert not np.array_equal(np.asarray(picture), np.asarray(Image.open(tmp_path / 'vr.png')))
    # A search's file, with softmax(alpha) per candidate, and 12 operations given in full.
    weights = np.full((12, 4), 0.25).tolist()
    (tmp_path / 'genotype.json').write_text(json.dumps(
        {'genotype': list(GENOTYPES['msinet_s']), 'epoch': 3, 'max_epoch': 5,
         'ops': list(SEARCH_OPS), 'alpha_softmax': weights}))
    for source in (str(tmp_path / 'genotype.json'), ' '.join(GENOTYPES['msinet_s'])):
        assert main(['show-genotype', source, '--out', str(tmp_path / 's.png')]) == 0
    with pytest.raises(SystemExit):
        main(['show-genotype', 'no_such_genotype', '--out', str(tmp_path / 'x.png')])
    assert 'a genotype has 12 interaction operations' in capsys.readouterr().err


def test_evaluate_draws_ranked_lists(tiny_market, tmp_path, capsys):
    root = tiny_market(num_test_ids=12)
    weights = random_checkpoint(tmp_path / 'msinet.pth')
    assert main(['evaluate', '--weights', str(weights), '--root', str(root), '--height', '64',
                 '--width', '32', '--workers', '0', '--visrank', str(tmp_path / 'ranks'),
                 '--visrank-topk', '5']) == 0
    assert 'ranked list of each query' in capsys.readouterr().out
    pictures = sorted((tmp_path / 'ranks' / 'market1501').glob('*.png'))
    query = sorted((root / 'market1501' / 'Market-1501-v15.09.15' / 'query').glob('*.jpg'))
    assert [p.stem for p in pictures] == [q.stem for q in query]
    # Each gallery image's frame tells a match from another identity: compare with a
    # ranking computed here with torchreid's distances.
    from msinet_reid.data import image_data_manager
    from msinet_reid.deploy import load_trained
    from msinet_reid.evaluation import extract_features
    from torchreid import metrics

    manager = image_data_manager(root=str(root), sources='market1501', height=64, width=32,
                                 workers=0)
    model = load_trained('msinet', weights)
    q = extract_features(model, manager.test_loader['market1501']['query'], 'cpu')
    g = extract_features(model, manager.test_loader['market1501']['gallery'], 'cpu')
    distance = metrics.compute_distance_matrix(F.normalize(q[0]), F.normalize(g[0])).numpy()
    distance[(q[1][:, None] == g[1][None]) & (q[2][:, None] == g[2][None])] = np.inf
    ranked = rank_metrics(q[0], g[0], *q[1:2], g[1], q[2], g[2], topk=5)['ranked']
    np.testing.assert_array_equal(ranked, np.argsort(distance, axis=1, kind='stable')[:, :5])
    cell, gap = 32 + 8, 12
    queries = [Path(item[0]) for item in manager.test_dataset['market1501']['query']]
    for query, row, pid in zip(queries, ranked, q[1]):  # in the loader's order
        image = np.asarray(Image.open(tmp_path / 'ranks' / 'market1501' / f'{query.stem}.png'))
        assert image.shape == (64 + 8, 6 * cell + gap, 3)
        for slot, index in enumerate(row, start=1):
            frame = tuple(image[1, slot * cell + gap + 1])  # a pixel of the frame's top edge
            assert frame == (MATCH_COLOUR if g[1][index] == pid else OTHER_COLOUR)
