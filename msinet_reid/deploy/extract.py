"""Features of a folder of images, for retrieval and tracking outside torchreid."""
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm import tqdm

from ..data.images import read_rgb
from ..weights import PathLike

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# ImageNet statistics, torchreid's defaults for training and testing.
PIXEL_MEAN, PIXEL_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def find_images(folder: PathLike) -> List[Path]:
    """Every image file under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'no folder of images at {folder}')
    images = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(
            f'no images under {folder} (looked for {", ".join(IMAGE_SUFFIXES)} files)'
        )
    return images


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(read_rgb(self.paths[index]))


def image_batches(paths: Sequence[Path], image_size: Tuple[int, int] = (256, 128),
                  batch_size: int = 64, workers: int = 2) -> DataLoader:
    """Batches of the images at ``paths``, in order, preprocessed as torchreid tests
    (resized to ``image_size``, ImageNet-normalised).

    Example::

        >>> next(iter(image_batches(find_images('gallery/'), (256, 128)))).shape
        torch.Size([64, 3, 256, 128])
    """
    transform = T.Compose([T.Resize(image_size), T.ToTensor(), T.Normalize(PIXEL_MEAN, PIXEL_STD)])
    return DataLoader(_ImageFiles(paths, transform), batch_size=batch_size, num_workers=workers)


@torch.no_grad()
def extract_image_features(
    model: nn.Module, paths: Sequence[Path], image_size: Tuple[int, int] = (256, 128),
    batch_size: int = 64, workers: int = 2, device: torch.device = torch.device('cpu'),
) -> np.ndarray:
    """``(len(paths), D)`` eval-mode features; images are preprocessed as torchreid tests.

    Example::

        >>> feats = extract_image_features(model, find_images('gallery/'))
    """
    loader = image_batches(paths, image_size, batch_size, workers)
    model.eval().to(device)
    features = [model(batch.to(device)).cpu()
                for batch in tqdm(loader, desc='Extracting features', unit='batch')]
    return torch.cat(features).numpy()
