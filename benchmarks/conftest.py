"""The benchmarks import their shared helpers (saved_memory, bench_kv_cache) as top-level modules."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
