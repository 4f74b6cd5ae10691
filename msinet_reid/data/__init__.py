"""Data sets: the vehicle datasets VeRi-776 and VehicleID for torchreid (importing this
package registers them as ``'veri'`` and ``'vehicleid'``), and synthetic Market-1501,
VeRi-776 and VehicleID layouts for the demo and the tests; ``IdentitySampler``, the
seeded P x K batches the engines draw; ``check_images`` and ``read_rgb`` for damaged and
unusual image files; ``image_data_manager``, torchreid's with clear errors for a dataset
folder it cannot read; ``load_own_data`` and ``register_own_data``, training and test data
of one's own (a folder or a CSV list) checked and registered with torchreid."""
from .images import UnreadableImage, UnreadableImagesError, check_images, read_rgb
from .layout import DatasetLayoutError, image_data_manager, load_image_dataset
from .own import OwnData, OwnDataError, OwnImageDataset, load_own_data, register_own_data
from .samplers import IdentitySampler
from .synthetic import make_market1501, make_vehicleid, make_veri
from .vehicles import VehicleID, VeRi, register_datasets

__all__ = ['DatasetLayoutError', 'IdentitySampler', 'OwnData', 'OwnDataError', 'OwnImageDataset',
           'UnreadableImage', 'UnreadableImagesError', 'VeRi', 'VehicleID', 'check_images',
           'image_data_manager', 'load_image_dataset', 'load_own_data', 'make_market1501',
           'make_vehicleid', 'make_veri', 'read_rgb', 'register_datasets', 'register_own_data']
