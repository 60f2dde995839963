"""Store: trace and run directories — manifest, Parquet tables, safetensors tensors; atomic writes."""

from evolens.files import (
    atomic_directory,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    make_directory,
)
from evolens.store.trace_io import SCHEMA_VERSION, load_trace, metrics_table, read_manifest, save_trace

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
