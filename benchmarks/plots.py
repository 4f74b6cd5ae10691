"""The benchmarks' pictures, written beside their JSON (``results.json`` -> ``results.png``).

Drawn with matplotlib's object API (no pyplot, no backend chosen); without matplotlib the
benchmarks still write their JSON and say how to get the picture.
"""
from pathlib import Path
from typing import Callable, Dict, List


def save_beside(json_path: Path, draw: Callable) -> None:
    """Draw into a new figure with ``draw(figure)`` and save it as ``json_path`` with the
    suffix ``.png``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print('no plot: pip install matplotlib (or msinet-reid[plots]) to draw one')
        return
    figure = Figure(figsize=(10, 4), layout='constrained')
    draw(figure)
    path = Path(json_path).with_suffix('.png')
    figure.savefig(path, dpi=100)
    print(f'Wrote {path}')


def latency(results: dict) -> Callable:
    """inference.py: time per image against batch size, per model and format."""
    def draw(figure) -> None:
        ax = figure.subplots()
        for device, batches in results['latency'].items():
            sizes = sorted(batches, key=int)
            for variant in batches[sizes[0]]['variants']:
                per_image = [batches[b]['variants'][variant]['median_ms'] / int(b)
                             for b in sizes if variant in batches[b]['variants']]
                ax.plot([int(b) for b in sizes][:len(per_image)], per_image, marker='o',
                        label=f'{variant} ({device})')
        ax.set_xscale('log', base=2)
        ax.set_xlabel('batch size')
        ax.set_ylabel('ms per image (median)')
        environment = results.get('environment', {})
        ax.set_title(f'{environment.get("threads", "?")} thread(s), '
                     f'{"x".join(map(str, environment.get("image", [])))} images')
        ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
    return draw


def scaling(rows: List[Dict], x: str, series: Dict[str, List[str]], title: str) -> Callable:
    """Time and peak memory against ``x``: ``series`` maps a label to the row keys
    ``[seconds key, MiB key, features filter]``."""
    def draw(figure) -> None:
        time_axis, memory_axis = figure.subplots(1, 2)
        for label, (seconds, mib, features) in series.items():
            chosen = [row for row in rows if row.get('features') == features and seconds in row]
            xs = [row[x] for row in chosen]
            time_axis.plot(xs, [row[seconds] for row in chosen], marker='o', label=label)
            memory_axis.plot(xs, [row[mib] for row in chosen], marker='o', label=label)
        for axis, name in ((time_axis, 'seconds'), (memory_axis, 'peak MiB above the features')):
            axis.set_xlabel(x)
            axis.set_ylabel(name)
            axis.set_xscale('log')
            axis.set_yscale('log')
            sizes = sorted({row[x] for row in rows})
            axis.set_xticks(sizes, [f'{size:,}' for size in sizes])
            axis.tick_params(axis='x', which='minor', bottom=False, labelbottom=False)
            axis.legend(fontsize=8)
        figure.suptitle(title)
    return draw


def retrieval(table: Dict[str, Dict[str, dict]]) -> Callable:
    """retrieval.py: time and peak memory per size and variant (stopped rows hatched)."""
    def draw(figure) -> None:
        time_axis, memory_axis = figure.subplots(1, 2)
        sizes = list(table)
        variants = sorted({variant for rows in table.values() for variant in rows})
        width = 0.8 / len(variants)
        for offset, variant in enumerate(variants):
            places = [index + offset * width for index in range(len(sizes))]
            for axis, key, scale in ((time_axis, 'seconds', 1),
                                     (memory_axis, 'peak_bytes', 2 ** -30)):
                values = [table[size].get(variant, {}).get(key, 0) * scale for size in sizes]
                stopped = [bool(table[size].get(variant, {}).get('stopped')) for size in sizes]
                bars = axis.bar(places, values, width, label=variant)
                for bar, was_stopped in zip(bars, stopped):
                    if was_stopped:
                        bar.set_hatch('//')
        for axis, name in ((time_axis, 'seconds (hatched: stopped or failed)'),
                           (memory_axis, 'peak GiB above the features')):
            axis.set_xticks([index + 0.4 - width / 2 for index in range(len(sizes))], sizes)
            axis.set_ylabel(name)
            axis.set_yscale('log')
        handles, labels = time_axis.get_legend_handles_labels()
        figure.legend(handles, labels, loc='outside upper center', ncol=len(variants),
                      fontsize=8)
    return draw
