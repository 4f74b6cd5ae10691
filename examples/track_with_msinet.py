"""Track with a boxmot tracker and MSINet appearance features, from MOT-format detections.

Reads a video or a folder of frames, and detections as a MOT text file
(``frame,id,x,y,w,h,conf,...``, e.g. a sequence's ``det/det.txt``); writes the tracks as
MOT rows (``frame,id,x,y,w,h,conf,-1,-1,-1``). With ``--gt`` it also scores them with
motmetrics (MOTA, IDF1, identity switches).

    # a checkpoint trained with msinet-reid (torchreid engine checkpoint or state_dict)
    python examples/track_with_msinet.py --source MOT17-02/img1 \\
        --detections MOT17-02/det/det.txt --model msinet \\
        --weights log/msinet/model/model.pth.tar-60 --out tracks/MOT17-02.txt
    # the synthetic sequence, with and without appearance
    python examples/track_with_msinet.py --demo --weights model.pth.tar-12 --height 128 --width 64
    python examples/track_with_msinet.py --demo --appearance off

``--weights`` may also be a file from ``prepare_weights`` or its export
(``.torchscript``, ``.onnx``, ``_openvino_model``): boxmot picks the backend by suffix.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from msinet_reid.data.tracking import make_mot_sequence, read_mot, score_tracks
from msinet_reid.integrations import boxmot as msinet_boxmot

TRACKERS = ('botsort', 'deepocsort', 'strongsort', 'boosttrack', 'hybridsort')


def build_tracker(name: str, weights, appearance: bool, device: str = 'cpu'):
    """One of boxmot's appearance-capable trackers, with MSINet appearance or without any."""
    import boxmot

    trackers = {'botsort': boxmot.BotSort, 'deepocsort': boxmot.DeepOcSort,
                'strongsort': boxmot.StrongSort, 'boosttrack': boxmot.BoostTrack,
                'hybridsort': boxmot.HybridSort}
    if not appearance:
        return trackers[name](use_embeddings=False)
    return trackers[name](reid_weights=Path(weights), device=device, half=False)


def reid_weights(args, folder: Path) -> Path:
    """The weights boxmot reads: ``--weights`` as it is when boxmot knows its suffix,
    else converted from a msinet-reid checkpoint with ``prepare_weights``."""
    weights = Path(args.weights)
    if weights.suffix in ('.pt', '.torchscript', '.onnx') or weights.name.endswith(
            '_openvino_model'):
        return weights
    out = folder / f'{args.model}_reid.pt'
    return msinet_boxmot.prepare_weights(args.model, weights, out, (args.height, args.width))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--source', help='video file or folder of frames')
    parser.add_argument('--detections', help='MOT-format detections (frame,id,x,y,w,h,conf,...)')
    parser.add_argument('--demo', action='store_true',
                        help='track the synthetic sequence of msinet_reid.data.tracking')
    parser.add_argument('--demo-root', default=Path(tempfile.gettempdir()) / 'msinet_mot',
                        type=Path, help='where --demo writes its sequence')
    parser.add_argument('--weights', help='MSINet checkpoint, or a file boxmot reads')
    parser.add_argument('--model', default='msinet', help='registered MSINet model')
    parser.add_argument('--height', type=int, default=256, help='crop height the model uses')
    parser.add_argument('--width', type=int, default=128, help='crop width the model uses')
    parser.add_argument('--tracker', default='botsort', choices=TRACKERS)
    parser.add_argument('--appearance', default='on', choices=('on', 'off'),
                        help="'off' tracks by motion and IoU only")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', type=Path, default=Path('tracks.txt'), help='MOT track file')
    parser.add_argument('--gt', help='MOT ground truth to score the tracks with (motmetrics)')
    args = parser.parse_args(argv)
    if not args.demo and not (args.source and args.detections):
        parser.error('give --source and --detections, or --demo')
    if args.appearance == 'on' and not args.weights:
        parser.error('--appearance on needs --weights')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.demo:
        sequence = make_mot_sequence(args.demo_root)
        args.source, args.detections = sequence / 'img1', sequence / 'det' / 'det.txt'
        args.gt = args.gt or sequence / 'gt' / 'gt.txt'
    with tempfile.TemporaryDirectory() as folder:
        weights = reid_weights(args, Path(folder)) if args.appearance == 'on' else None
        tracker = build_tracker(args.tracker, weights, args.appearance == 'on', args.device)
        tracks = msinet_boxmot.track_detections(
            tracker, msinet_boxmot.read_frames(args.source), read_mot(args.detections))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(args.out, tracks, fmt=['%d', '%d', '%.2f', '%.2f', '%.2f', '%.2f', '%.3f',
                                      '%d', '%d', '%d'], delimiter=',')
    print(f'{len(tracks)} boxes of {len(np.unique(tracks[:, 1]))} tracks -> {args.out}')
    if not args.gt:
        return {}
    scores = score_tracks(tracks, read_mot(args.gt))
    print(f'MOTA {scores["mota"]:.1%}  IDF1 {scores["idf1"]:.1%}  '
          f'ID switches {scores["num_switches"]:.0f}')
    return scores


if __name__ == '__main__':
    main()
