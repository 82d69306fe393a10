"""Dataset readers and writers, one pair per on-disk format, and format detection.

Every reader returns a lazy `SampleSequence`: building it only lists files and reads .npy
headers, so layout problems (missing partner files, stacks of the wrong shape) surface at once,
while pixels are read when a sample is indexed. Every writer takes any iterable of `Sample`s.

One module per format (consep, hovernet, pannuke, conic, folder), each describing its layout on
disk; the helpers they share in common; the registry (FORMATS, READERS, WRITERS, detect_format,
read_dataset, write_dataset) in registry.
"""

from cosyn.data.formats.common import PathLike, SampleSequence
from cosyn.data.formats.conic import read_conic, write_conic
from cosyn.data.formats.consep import read_consep, write_consep
from cosyn.data.formats.folder import read_folder, write_folder
from cosyn.data.formats.hovernet import read_hovernet, write_hovernet
from cosyn.data.formats.pannuke import read_pannuke, write_pannuke
from cosyn.data.formats.registry import FORMATS, READERS, WRITERS, detect_format, read_dataset, write_dataset

__all__ = [
    'PathLike',
    'SampleSequence',
    'FORMATS',
    'READERS',
    'WRITERS',
    'detect_format',
    'read_dataset',
    'write_dataset',
    'read_consep',
    'write_consep',
    'read_hovernet',
    'write_hovernet',
    'read_pannuke',
    'write_pannuke',
    'read_conic',
    'write_conic',
    'read_folder',
    'write_folder',
]
