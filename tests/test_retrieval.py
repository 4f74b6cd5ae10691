"""Retrieval at dataset scale: rank_metrics and re-ranking against torchreid's dense code.

torchreid's ``evaluate_rank`` and ``re_ranking`` are the reference. The comparisons run
in float64 (features, and torchreid's re-ranking with its float32 arrays made float64):
then the two orders of summation differ by rounding near 1e-16, no ranking flips between
near-equal distances, and the figures must agree to 1e-6.
"""
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import msinet_reid  # noqa: F401
from msinet_reid.evaluation import evaluate
from msinet_reid.retrieval import rank_metrics, reranked_distances, unit_rows
from torchreid import metrics
from torchreid.utils import re_ranking

from helpers import float64

RERANK_MODULE = sys.modules[re_ranking.__module__]


def identities(q, g, ids=30, cams=4, dim=32, dtype=torch.float64, seed=0, distractors=0):
    """Query and gallery features with identity and camera structure: ``(features, pids,
    camids)`` each; the last ``distractors`` gallery images belong to nobody queried."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids + distractors, dim, generator=generator, dtype=dtype)
    shifts = 0.5 * torch.randn(cams, dim, generator=generator, dtype=dtype)

    def draw(n, pids):
        camids = torch.randint(0, cams, (n,), generator=generator)
        noise = torch.randn(n, dim, generator=generator, dtype=dtype)
        return centres[pids] + shifts[camids] + noise, pids.numpy(), camids.numpy()

    gallery_pids = torch.cat((torch.randint(0, ids, (g - distractors,), generator=generator),
                              ids + torch.arange(distractors)))
    return draw(q, torch.randint(0, ids, (q,), generator=generator)), draw(g, gallery_pids)


def torchreid_distances(qf, gf, rerank=False, k1=20, k2=6, lambda_value=0.3):
    """torchreid's engine's distance matrix for normalised features, re-ranked with its
    ``re_ranking`` run in float64 where ``qf`` is float64."""
    qn, gn = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    distance = metrics.compute_distance_matrix(qn, gn).numpy()
    if not rerank:
        return distance
    numpy = RERANK_MODULE.np
    if qf.dtype == torch.float64:
        RERANK_MODULE.np = types.SimpleNamespace(**{**vars(np), 'float32': np.float64})
    try:
        return re_ranking(distance, metrics.compute_distance_matrix(qn, qn).numpy(),
                          metrics.compute_distance_matrix(gn, gn).numpy(), k1, k2, lambda_value)
    finally:
        RERANK_MODULE.np = numpy


def assert_equal_to_torchreid(query, gallery, rerank=False, **options):
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = query, gallery
    distance = torchreid_distances(qf, gf, rerank, **options)
    cmc, mean_ap = metrics.evaluate_rank(distance, q_pids, g_pids, q_camids, g_camids,
                                         use_cython=False)
    ours = rank_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids, rerank=rerank,
                        budget=2 ** 16, **options)  # a small budget: many blocks
    np.testing.assert_allclose(ours['cmc'][:len(cmc)], cmc, rtol=0, atol=1e-6)
    assert ours['mAP'] == pytest.approx(mean_ap, abs=1e-6)
    assert ours['mINP'] == pytest.approx(mean_inp(distance, q_pids, g_pids, q_camids,
                                                  g_camids), abs=1e-9)
    return ours


def mean_inp(distance, q_pids, g_pids, q_camids, g_camids):
    """fast-reid's mINP, query by query over a dense matrix: matches over the rank of the
    last match, among the gallery less the query's identity seen by its camera."""
    penalties = []
    for row, pid, camid in zip(distance, q_pids, q_camids):
        order = np.argsort(row, kind='stable')
        kept = ~((g_pids[order] == pid) & (g_camids[order] == camid))
        hits = (g_pids[order] == pid)[kept]
        if hits.any():
            penalties.append(hits.sum() / (np.flatnonzero(hits)[-1] + 1))
    return np.mean(penalties)


@pytest.mark.parametrize('q, g, distractors', [(40, 300, 0), (120, 700, 100), (7, 60, 20)])
def test_rank_metrics_equal_torchreids_evaluate_rank(q, g, distractors):
    assert_equal_to_torchreid(*identities(q, g, seed=q, distractors=distractors))


@pytest.mark.parametrize('k1, k2, lambda_value', [(20, 6, 0.3), (5, 1, 0.5), (12, 3, 0.1)])
def test_reranking_equals_torchreids_re_ranking(k1, k2, lambda_value):
    query, gallery = identities(60, 400, seed=k1, distractors=50)
    options = dict(k1=k1, k2=k2, lambda_value=lambda_value)
    expected = torchreid_distances(query[0], gallery[0], rerank=True, **options)
    blocks = list(reranked_distances(unit_rows(query[0]), unit_rows(gallery[0]),
                                     budget=2 ** 14, **options))
    assert len(blocks) > 3
    distance = np.concatenate([block.numpy() for _, block in blocks])
    np.testing.assert_allclose(distance, expected, rtol=0, atol=1e-9)
    plain = assert_equal_to_torchreid(query, gallery)
    reranked = assert_equal_to_torchreid(query, gallery, rerank=True, **options)
    assert reranked['mAP'] != plain['mAP']


def test_float32_reranking_is_torchreids_up_to_rounding():
    (qf, *_), (gf, *_) = identities(50, 300, dtype=torch.float32, seed=3)
    expected = torchreid_distances(qf, gf, rerank=True)
    distance = torch.cat([block for _, block in reranked_distances(unit_rows(qf),
                                                                   unit_rows(gf))])
    assert distance.dtype == torch.float32
    np.testing.assert_allclose(distance.numpy(), expected, rtol=0, atol=1e-5)


def test_on_msinet_features_of_the_demo_data(tiny_market):
    """What evaluation ranks: MSINet's features of a synthetic Market-1501 (distractors,
    six cameras), in float64, plain and re-ranked."""
    manager = msinet_reid.data.image_data_manager(
        root=str(tiny_market(num_test_ids=12)), sources='market1501', height=64, width=32,
        workers=0, batch_size_test=64)
    with float64(manager):
        torch.manual_seed(0)
        model = msinet_reid.models.MSINet(10, 'msinet').eval()
        from msinet_reid.evaluation import extract_features
        query = extract_features(model, manager.test_loader['market1501']['query'], 'cpu')
        gallery = extract_features(model, manager.test_loader['market1501']['gallery'], 'cpu')
        assert query[0].dtype == torch.float64 and 0 in gallery[1]  # distractors (pid 0)
        for rerank in (False, True):
            scores = assert_equal_to_torchreid(query, gallery, rerank=rerank, k1=8, k2=3)
            assert evaluate(model, manager, rerank=rerank, k1=8, k2=3)['market1501'][
                'mAP'] == pytest.approx(scores['mAP'], abs=1e-12)


def test_equal_distances_rank_by_gallery_index():
    """Duplicate gallery images tie exactly: they rank in gallery order (a stable sort),
    whichever of them is the match."""
    base = torch.eye(4, dtype=torch.float64)
    gf = torch.stack([base[1], base[0], base[0], base[2], base[0]])
    g_pids = np.array([7, 8, 1, 9, 1])
    scores = rank_metrics(base[:1], gf, [1], g_pids, [0], [1, 1, 1, 1, 1])
    # Order: 1 (pid 8), 2 (match), 4 (match), 0, 3 -> matches at ranks 2 and 3.
    assert scores['cmc'][:3].tolist() == [0, 1, 1]
    assert scores['mAP'] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores['mINP'] == pytest.approx(2 / 3)


def test_a_gallery_smaller_than_max_rank():
    """torchreid's evaluate_rank fails here (queries keep galleries of unequal lengths);
    the CMC stays max_rank long, flat after the gallery's end."""
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = identities(10, 12, ids=3, seed=1)
    scores = rank_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids, max_rank=50)
    assert len(scores['cmc']) == 50 and scores['cmc'][-1] == scores['cmc'][11] == 1
    assert (np.diff(scores['cmc']) >= 0).all()


def test_bad_input_is_named():
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = identities(5, 20, seed=2)
    with pytest.raises(ValueError, match='q_pids has 4 entries for 5 features'):
        rank_metrics(qf, gf, q_pids[:4], g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match='g_camids has 21 entries for 20 features'):
        rank_metrics(qf, gf, q_pids, g_pids, q_camids, np.append(g_camids, 0))
    broken = gf.clone()
    broken[3, 0], broken[7, 1] = float('nan'), float('inf')
    with pytest.raises(ValueError, match=r'gf holds NaN or infinite values in 2 rows '
                                         r'\(first: \[3, 7\]\)'):
        rank_metrics(qf, broken, q_pids, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match=r'qf must be \(N, D\) features of at least one '
                                         r'image, got shape \(0, 32\)'):
        rank_metrics(qf[:0], gf, q_pids[:0], g_pids, q_camids[:0], g_camids)
    with pytest.raises(ValueError, match='qf has 32-d features and gf 16-d ones'):
        rank_metrics(qf, gf[:, :16], q_pids, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match='no query has a match in the gallery'):
        rank_metrics(qf, gf, q_pids + 1000, g_pids, q_camids, g_camids)


def _engine(root):
    import torchreid

    from msinet_reid.engine import ImageMSINetEngine

    manager = msinet_reid.data.image_data_manager(
        root=str(root), sources='market1501', height=64, width=32, batch_size_train=8,
        num_instances=2, train_sampler='RandomIdentitySampler', workers=0, batch_size_test=16)
    torch.manual_seed(0)
    model = torchreid.models.build_model('msinet', manager.num_train_pids, loss='triplet',
                                         pretrained=False)
    return manager, ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), 0.1),
                                      use_gpu=False)


def test_engine_evaluates_re_ranked_with_mINP(tiny_market, tmp_path, capsys):
    manager, engine = _engine(tiny_market(num_test_ids=12))
    engine.run(save_dir=str(tmp_path), test_only=True, rerank=True)
    out = capsys.readouterr().out
    assert '** Results ** (re-ranked)' in out and 'mINP: ' in out
    expected = evaluate(engine.model, manager, rerank=True)['market1501']
    for line, value in (('mAP: ', expected['mAP']), ('mINP: ', expected['mINP']),
                        ('Rank-1  : ', expected['rank1'])):
        assert f'{line}{value:.1%}' in out


def _sharded_test(info, root, out):
    from msinet_reid.evaluation import gather_features

    manager, engine = _engine(root)
    with float64(manager):
        engine.model.double()
        loaders = manager.test_loader['market1501']
        features = [gather_features(engine.model, loaders[name], engine.device)
                    for name in ('query', 'gallery')]
        rank1 = engine.test(normalize_feature=True, rerank=True)
    if info.is_main:
        torch.save({'features': features, 'rank1': rank1}, out / 'sharded.pt')


@pytest.mark.slow
def test_torchrun_shares_test_extraction_and_scores_as_one_process(tiny_market, tmp_path):
    from helpers import run_distributed
    from msinet_reid.evaluation import extract_features

    root = tiny_market(num_test_ids=12)
    run_distributed(_sharded_test, root, tmp_path)
    sharded = torch.load(tmp_path / 'sharded.pt', weights_only=False)
    manager, engine = _engine(root)
    with float64(manager):
        engine.model.double()
        loaders = manager.test_loader['market1501']
        for got, name in zip(sharded['features'], ('query', 'gallery')):
            want = extract_features(engine.model, loaders[name], engine.device)
            torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
            assert (got[1] == want[1]).all() and (got[2] == want[2]).all()
        assert sharded['rank1'] == pytest.approx(
            evaluate(engine.model, manager, rerank=True)['market1501']['rank1'], abs=1e-12)
