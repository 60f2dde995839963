"""Store: trace and run directories — manifest, Parquet tables, safetensors tensors; atomic writes.

The trace directory format itself lives with the trace (:mod:`evolens.trace.fileformat`); its functions are
re-exported here.
"""

from evolens.files import (
    atomic_directory,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    make_directory,
)
from evolens.trace import SCHEMA_VERSION, load_trace, metrics_table, read_manifest, save_trace

__all__ = [
    "SCHEMA_VERSION",
    "atomic_directory",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "load_trace",
    "make_directory",
    "metrics_table",
    "read_manifest",
    "save_trace",
]
