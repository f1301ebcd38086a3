"""The bundle's probe set and reference features, read and validated before any artifact runs (torch-free).

Every array is checked where it is read: dtype (float32 inputs and features, integer ids, boolean split),
shape against the manifest and against each other, finite values, no all-zero or constant reference features,
and a split in which at least one query has a gallery match. A problem is one BundleError naming the file; an
int8 or uint8 probe is the probe's fault, so it must never reach the artifacts and be blamed on them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np

from swedge.metrics.cross import retrieval_grid
from swedge.metrics.fidelity import feature_problem
from swedge.metrics.retrieval import evaluate
from swedge.runtimes.manifest import Bundle, BundleError

FIX = "re-export the bundle"


class NpyRows:
    """Rows of a 2-D+ .npy file read batch by batch with plain file reads: unlike a memory map, pages read once
    do not stay in the process's resident memory, so the harness's footprint does not grow with the probe."""

    def __init__(self, path, name: str | None = None):
        self.path = path
        name = name or str(path)
        try:
            with open(path, "rb") as f:
                fmt = np.lib.format
                version = fmt.read_magic(f)
                header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if header is None:
                    raise BundleError(f"{path}: .npy format version {version} is not supported (1.0 and 2.0 are)")
                shape, fortran, dtype = header(f)
                self.offset = f.tell()
        except (ValueError, OSError, EOFError) as exc:
            raise BundleError(f"{name} is not a readable .npy file ({exc}); {FIX}") from None
        if fortran or dtype.hasobject:
            raise BundleError(f"{name}: probe arrays must be C-ordered numeric .npy files; {FIX}")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        size = path.stat().st_size
        if size != self.offset + len(self) * self.row_bytes:
            raise BundleError(f"{name} holds {size - self.offset} data bytes, its header promises "
                              f"{len(self) * self.row_bytes} ({self.shape} {dtype}): the file is truncated; {FIX}")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(len(self))
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            data = np.fromfile(f, dtype=self.dtype, count=max(stop - start, 0) * self.row_bytes // self.dtype.itemsize)
        return data.reshape(-1, *self.shape[1:]).astype(np.float32, copy=False)


@dataclass
class Probe:
    inputs: NpyRows  # (N, 3, H, W), read in batches
    pids: np.ndarray
    camids: np.ndarray
    is_query: np.ndarray
    sha256: str

    def split(self, feats: np.ndarray):
        q, g = self.is_query, ~self.is_query
        return feats[q], feats[g]

    def retrieval(self, queries: np.ndarray, gallery: np.ndarray):
        q, g = self.is_query, ~self.is_query
        return evaluate(queries, gallery, self.pids[q], self.pids[g], self.camids[q], self.camids[g])

    def grid(self, query_sets: list, gallery_sets: list) -> dict:
        """{(i, j): retrieval of query_sets[i]'s queries in gallery_sets[j]'s gallery}, each set of probe-row
        features (N, D) split here."""
        q, g = self.is_query, ~self.is_query
        return retrieval_grid({i: f[q] for i, f in enumerate(query_sets)},
                              {j: f[g] for j, f in enumerate(gallery_sets)},
                              self.pids[q], self.pids[g], self.camids[q], self.camids[g])


def _probe_inputs(path, name: str, expected: tuple, batch: int) -> NpyRows:
    inputs = NpyRows(path, name)
    if inputs.dtype != np.float32:
        raise BundleError(f"{name} holds {inputs.dtype} values, not float32: the probe itself is wrong (it must "
                          f"hold images preprocessed with the checkpoint's preprocessing), not the artifacts; {FIX}")
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected or len(inputs) == 0:
        raise BundleError(f"{name} has shape {inputs.shape}; the manifest's 'input.shape' asks for (N >= 1, "
                          f"{', '.join(map(str, expected))}); {FIX}")
    for i in range(0, len(inputs), batch):  # streamed: never the whole probe in memory at once
        if not np.isfinite(inputs[i:i + batch]).all():
            raise BundleError(f"{name}: probe inputs contain NaN/Inf (rows {i}..{i + batch - 1}): the probe set is "
                              f"corrupt; {FIX}")
    return inputs


def _probe_labels(path, name: str, n: int):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("pids", "camids", "is_query")}
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"probe set cannot be read: {name} ({exc}); {FIX}") from None
    for key, a in arrays.items():
        if a.shape != (n,):
            raise BundleError(f"'{key}' in {name} has shape {a.shape}; expected ({n},), one per probe row; {FIX}")
        kind, what = (np.bool_, "bool") if key == "is_query" else (np.integer, "integers")
        if not np.issubdtype(a.dtype, kind):
            raise BundleError(f"'{key}' in {name} holds {a.dtype}; expected {what}; {FIX}")
    pids, camids, is_query = arrays["pids"].astype(np.int64), arrays["camids"].astype(np.int64), arrays["is_query"]
    if is_query.all() or not is_query.any():
        raise BundleError(f"'is_query' in {name} leaves no {'gallery' if is_query.all() else 'queries'}: the probe "
                          f"needs both query and gallery rows; {FIX}")
    gallery: dict[int, set] = {}
    for pid, cam in zip(pids[~is_query].tolist(), camids[~is_query].tolist()):
        gallery.setdefault(pid, set()).add(cam)
    if not any(pid != -1 and gallery.get(pid, set()) - {cam}
               for pid, cam in set(zip(pids[is_query].tolist(), camids[is_query].tolist()))):
        raise BundleError(f"{name}: no query has a gallery match (same id, another camera), so no mAP can be "
                          f"measured; export with a probe whose query ids appear in its gallery")
    return pids, camids, is_query


def load_probe(bundle: Bundle, batch: int) -> Probe:
    p = bundle.manifest.probe
    inputs = _probe_inputs(bundle.check_file(p.inputs, p.inputs_sha256), p.inputs,
                           tuple(bundle.manifest.input.shape[1:]), batch)
    pids, camids, is_query = _probe_labels(bundle.check_file(p.labels, p.labels_sha256), p.labels, len(inputs))
    return Probe(inputs, pids, camids, is_query, p.inputs_sha256)


def load_references(bundle: Bundle, rows: int, dim: int) -> dict[float, np.ndarray]:
    """Reference features of every width: float32 (``rows``, ``dim``), finite, no zero rows, not constant."""
    refs = {}
    for w, r in bundle.manifest.references.items():
        name = r.path
        try:
            a = np.load(bundle.check_file(name, r.sha256), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BundleError(f"{name} is not a readable .npy array ({exc}); {FIX}") from None
        if a.dtype != np.float32 or a.shape != (rows, dim):
            raise BundleError(f"{name} holds {a.dtype} {a.shape}; reference features must be float32 "
                              f"({rows}, {dim}): one row per probe image, the manifest's 'output.dim' wide; {FIX}")
        if problem := feature_problem(a):
            raise BundleError(f"{name}: {problem}; {FIX}")
        refs[float(w)] = a
    if bundle.server_width not in refs:
        have = ", ".join(f"{w:g}" for w in sorted(refs))
        raise BundleError(f"'server_width' is {bundle.server_width:g}, but {bundle.root} has no reference features "
                          f"of that width (it has {have}); export the server width too")
    return refs
