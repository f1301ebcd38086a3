"""Hostile bundles, thresholds and gate inputs (issue 17): every case is one line naming the problem, never a
traceback and never a pass.

Each case edits a linked copy of the session's ``onnx_bundle`` (artifacts hard-linked, small files copied; every
edit writes a new file, so the shared bundle is never touched) and re-hashes what it changed, so the edit gets
past the sha256 check and reaches the validation that must catch it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from swedge.cli import main
from swedge.runtimes.manifest import MANIFEST, file_sha256, tree_sha256
from swedge.runtimes.thresholds import WEAK_COSINE, WEAK_FLAG, WEAK_MAP_DROP, WEAK_REL_ERROR

SMALL = 1 << 20  # files below this are copied, larger ones (artifacts) hard-linked


def _linked_copy(src: Path, dst: Path) -> Path:
    def copy(a, b):
        if os.path.getsize(a) >= SMALL:
            try:
                return os.link(a, b)
            except OSError:  # another file system: a real copy
                pass
        shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=copy)
    return dst


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write_manifest(root: Path, m: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(m))


def _folder_artifact(root: Path) -> None:
    """A TensorRT-style folder artifact (model.onnx inside, run by onnxruntime-qdq) beside the ONNX files."""
    folder = root / "tensorrt" / "w1-fp32"
    folder.mkdir(parents=True)
    os.link(root / "onnx" / "w1-fp32.onnx", folder / "model.onnx")
    m = _manifest(root)
    m["artifacts"].append({"id": "tensorrt-w1-fp32", "format": "tensorrt", "width": 1.0, "precision": "fp32",
                           "path": "tensorrt/w1-fp32", "sha256": tree_sha256(folder), "status": "ok",
                           "runtimes": ["onnxruntime-qdq"], "files": ["model.onnx"]})
    _write_manifest(root, m)


# -- edits -------------------------------------------------------------------------------------------------
def m(fn):
    """Edit the manifest with ``fn(manifest)``."""
    def edit(root, old):
        d = _manifest(root)
        fn(d)
        _write_manifest(root, d)
    return edit


def _rehash(root, rel):
    """Re-list the probe or reference file ``rel`` with its new sha256."""
    d = _manifest(root)
    listed = [(d["probe"], "inputs", "inputs_sha256"), (d["probe"], "labels", "labels_sha256")]
    for entry, path_key, sha_key in listed + [(r, "path", "sha256") for r in d["references"].values()]:
        if entry[path_key] == rel:
            entry[sha_key] = file_sha256(root / rel)
    _write_manifest(root, d)


def npy(rel, fn, on="new"):
    """Replace the .npy ``rel`` by ``fn(array)`` and re-hash it in the manifest (``on`` = "new" or "old")."""
    def edit(root, old):
        r = root if on == "new" else old
        a = fn(np.load(r / rel))
        (r / rel).unlink()
        np.save(r / rel, a, allow_pickle=True)
        _rehash(r, rel)
    return edit


def raw(rel, data: bytes):
    def edit(root, old):
        (root / rel).unlink()
        (root / rel).write_bytes(data)
        _rehash(root, rel)
    return edit


def labels(fn):
    """Edit probe/labels.npz: ``fn(dict of arrays)``, re-hashed."""
    def edit(root, old):
        p = root / "probe" / "labels.npz"
        with np.load(p) as z:
            d = {k: z[k] for k in z.files}
        fn(d)
        p.unlink()
        np.savez(p, **d)
        _rehash(root, "probe/labels.npz")
    return edit


def no_match(d):  # gallery ids disjoint from the query ids: no query can be scored
    d["pids"] = np.where(d["is_query"], d["pids"], d["pids"] + 1000)


def tamper(rel):
    """Flip one byte in the middle of ``rel`` without re-listing its sha256 (a fresh file: copies are linked)."""
    def edit(root, old):
        data = bytearray((root / rel).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (root / rel).unlink()
        (root / rel).write_bytes(bytes(data))
    return edit


def truncated_npy(a):
    """The same header, half the rows of data."""
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()[: len(buf.getvalue()) - a[len(a) // 2:].nbytes]


def truncate_probe(root, old):
    raw("probe/inputs.npy", truncated_npy(np.load(root / "probe" / "inputs.npy")))(root, old)


def symlink(rel, target_outside: bool, *, dir_level=False):
    """Replace ``rel`` by a symlink to an identical copy, outside the bundle or beside it inside."""
    def edit(root, old):
        p = root / rel
        outside = root.parent / "outside"
        outside.mkdir(exist_ok=True)
        target = (outside / p.name) if target_outside else p.with_name(p.name + ".real")
        shutil.move(p, target)
        p.symlink_to(target, target_is_directory=p.is_dir() or target.is_dir())
    return edit


def folder_symlink(root, old):
    """Inside the folder artifact: model.onnx is a link to the same weights outside the bundle."""
    _folder_artifact(root)
    symlink("tensorrt/w1-fp32/model.onnx", True)(root, old)


def folder_subdir_symlink(root, old):
    _folder_artifact(root)
    out = root.parent / "outside_dir"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"x")
    (root / "tensorrt" / "w1-fp32" / "sub").symlink_to(out, target_is_directory=True)
    _rehash_artifact(root, "tensorrt-w1-fp32")


def folder_fifo(root, old):
    _folder_artifact(root)
    os.mkfifo(root / "tensorrt" / "w1-fp32" / "pipe")
    _rehash_artifact(root, "tensorrt-w1-fp32")


def folder_extra_file(root, old):
    _folder_artifact(root)
    (root / "tensorrt" / "w1-fp32" / "extra.bin").write_bytes(b"\0" * 16)
    _rehash_artifact(root, "tensorrt-w1-fp32")


def _rehash_artifact(root, artifact_id):
    d = _manifest(root)
    for a in d["artifacts"]:
        if a["id"] == artifact_id:
            a["sha256"] = tree_sha256(root / a["path"]) if not (root / a["path"]).is_dir() else _loose_tree_sha(
                root / a["path"])
    _write_manifest(root, d)


def _loose_tree_sha(path: Path) -> str:
    """The folder hash an attacker can compute over regular files (what a lax check would accept)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def thresholds(text: str | bytes):
    def edit(root, old):
        p = root.parent / "t.json"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return edit


def art(i, **kv):
    return m(lambda d: d["artifacts"][i].update(kv))


def art_del(i, key):
    return m(lambda d: d["artifacts"][i].pop(key))


def _set(path, value):
    def fn(d):
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = value
    return m(fn)


def _del(path):
    def fn(d):
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        del d[last]
    return m(fn)


V, BENCH, DEV = ["verify", "{B}", "--quiet"], ["bench", "{B}", "--iters", "1", "--warmup", "0", "--batches", "1",
                                                 "--no-torch"], ["device", "{B}", "--quiet"]
T = [*V, "--thresholds", "{T}"]
REF = "reference/w0.5.npy"
SERVER = "reference/w1.npy"
INPUTS = "probe/inputs.npy"

# (id, edit(new_root, old_root), argv ({B} bundle, {O} baseline, {T} thresholds file), exit code, message part)
CASES = [
    # -- manifest fields -------------------------------------------------------------------------------
    ("checkpoint-not-object", _set("checkpoint", "x"), V, 1, "'checkpoint'"),
    ("widths-missing", _del("checkpoint.widths"), V, 1, "'checkpoint.widths'"),
    ("widths-string", _set("checkpoint.widths", "abc"), V, 1, "'checkpoint.widths'"),
    ("widths-empty", _set("checkpoint.widths", []), V, 1, "'checkpoint.widths'"),
    ("widths-out-of-range", _set("checkpoint.widths", [0.5, 2.0]), V, 1, "'checkpoint.widths[1]'"),
    ("server-width-string", _set("server_width", "x"), V, 1, "'server_width'"),
    ("server-width-not-exported", _set("server_width", 0.75), V, 1, "'server_width'"),
    ("output-missing", _del("output"), V, 1, "'output'"),
    ("output-dim-string", _set("output.dim", "abc"), V, 1, "'output.dim'"),
    ("output-dim-zero", _set("output.dim", 0), V, 1, "'output.dim'"),
    ("output-dim-fraction", _set("output.dim", 32.5), V, 1, "'output.dim'"),
    ("input-shape-missing", _del("input.shape"), V, 1, "'input.shape'"),
    ("input-shape-number", _set("input.shape", 5), V, 1, "'input.shape'"),
    ("input-shape-strings", _set("input.shape", ["N", "3", "64", "32"]), V, 1, "'input.shape'"),
    ("probe-not-object", _set("probe", []), V, 1, "'probe'"),
    ("probe-inputs-missing", _del("probe.inputs"), V, 1, "'probe.inputs'"),
    ("probe-inputs-number", _set("probe.inputs", 5), V, 1, "'probe.inputs'"),
    ("probe-inputs-nul", _set("probe.inputs", "probe/in\0puts.npy"), V, 1, "'probe.inputs'"),
    ("probe-inputs-empty-path", _set("probe.inputs", ""), V, 1, "'probe.inputs'"),
    ("probe-sha-missing", _del("probe.labels_sha256"), V, 1, "'probe.labels_sha256'"),
    ("probe-sha-number", _set("probe.inputs_sha256", 5), V, 1, "'probe.inputs_sha256'"),
    ("references-list", _set("references", []), V, 1, "'references'"),
    ("references-key-not-width", m(lambda d: d["references"].update(abc=d["references"]["0.5"])), V, 1,
     "'references'"),
    ("references-entry-string", m(lambda d: d["references"].update({"0.5": "x"})), V, 1, "'references.0.5'"),
    ("references-path-missing", m(lambda d: d["references"]["0.5"].pop("path")), V, 1, "'references.0.5.path'"),
    ("references-width-not-exported", m(lambda d: d["references"].update({"0.75": d["references"]["0.5"]})), V, 1,
     "'references.0.75'"),
    ("artifacts-object", _set("artifacts", {}), V, 1, "'artifacts'"),
    ("artifacts-empty", _set("artifacts", []), V, 1, "has no artifacts"),
    ("artifact-string", m(lambda d: d["artifacts"].__setitem__(0, "x")), V, 1, "'artifacts[0]'"),
    ("artifact-id-missing", art_del(0, "id"), V, 1, "'artifacts[0].id'"),
    ("artifact-id-duplicate", m(lambda d: d["artifacts"][1].update(id=d["artifacts"][0]["id"])), V, 1,
     "'artifacts[1].id'"),
    ("artifact-format-missing", art_del(0, "format"), V, 1, "'artifacts[0].format'"),
    ("artifact-format-unknown", art(0, format="onnxx"), V, 1, "'artifacts[0].format'"),
    ("artifact-format-list", art(0, format=["onnx"]), V, 1, "'artifacts[0].format'"),
    ("artifact-quantization-string", art(0, quantization="int8"), V, 1, "'artifacts[0].quantization'"),
    ("artifact-providers-string", art(0, providers="CPUExecutionProvider"), V, 1, "'artifacts[0].providers'"),
    ("schema-version-negative", _set("schema_version", -1), V, 1, "schema version -1"),
    ("schema-version-bool", _set("schema_version", True), V, 1, "schema version True"),
    ("artifact-width-string", art(0, width="abc"), V, 1, "'artifacts[0].width'"),
    ("artifact-width-without-reference", art(0, width=0.25), V, 1, "'artifacts[0].width'"),
    ("artifact-precision-unknown", art(0, precision="int4"), V, 1, "'artifacts[0].precision'"),
    ("artifact-status-missing", art_del(0, "status"), V, 1, "'artifacts[0].status'"),
    ("artifact-status-unknown", art(0, status="great"), V, 1, "'artifacts[0].status'"),
    ("artifact-path-missing", art_del(0, "path"), V, 1, "'artifacts[0].path'"),
    ("artifact-sha-missing", art_del(0, "sha256"), V, 1, "'artifacts[0].sha256'"),
    ("artifact-runtimes-string", art(0, runtimes="onnxruntime"), V, 1, "'artifacts[0].runtimes'"),
    ("artifact-runtimes-unknown", art(0, runtimes=["nope"]), V, 1, "'artifacts[0].runtimes'"),
    ("artifact-files-not-list", art(0, files="model.onnx"), V, 1, "'artifacts[0].files'"),
    ("artifact-repair-string", art(0, repair="x"), V, 1, "malformed 'repair' record"),
    ("bench-checkpoint-path-missing", _del("checkpoint.path"), [*BENCH[:-1]], 2, "'checkpoint.path'"),
    ("device-widths-missing", _del("checkpoint.widths"), DEV, 1, "'checkpoint.widths'"),
    ("schema-version-newer", _set("schema_version", 99), V, 1, "schema"),
    ("artifact-tampered", tamper("onnx/w0.5-fp32.onnx"), V, 1, "sha256"),
    ("device-artifact-tampered", tamper("onnx/w1-fp32.onnx"), DEV, 1, "sha256"),
    # -- every field of the typed records (issue 19): type, range, known value, paths inside the bundle -----------
    ("artifact-sha-short", art(0, sha256="abc"), V, 1, "'artifacts[0].sha256' must be a sha256 (64 lowercase hex"),
    ("artifact-sha-uppercase", art(0, sha256="A" * 64), V, 1, "'artifacts[0].sha256'"),
    ("artifact-width-zero", art(0, width=0), V, 1, "'artifacts[0].width' must be a width in (0, 1]"),
    ("artifact-width-above-one", art(0, width=1.5), V, 1, "'artifacts[0].width' must be a width in (0, 1]"),
    ("artifact-width-nan", art(0, width=float("nan")), V, 1, "'artifacts[0].width'"),
    ("artifact-width-bool", art(0, width=True), V, 1, "'artifacts[0].width'"),
    ("artifact-bytes-zero", art(0, bytes=0), V, 1, "'artifacts[0].bytes' must be a positive integer"),
    ("artifact-bytes-string", art(0, bytes="12"), V, 1, "'artifacts[0].bytes'"),
    ("artifact-seconds-negative", art(0, export_seconds=-1), V, 1, "'artifacts[0].export_seconds'"),
    ("artifact-seconds-infinite", art(0, export_seconds=float("inf")), V, 1, "'artifacts[0].export_seconds'"),
    ("artifact-batch-unknown", art(0, batch="sometimes"), V, 1, "'artifacts[0].batch'"),
    ("artifact-batch-static-zero", art(0, batch="static:0"), V, 1, "'artifacts[0].batch'"),
    ("artifact-runtimes-empty", art(0, runtimes=[]), V, 1, "'artifacts[0].runtimes'"),
    ("artifact-tools-number", art(0, tools={"torch": 2}), V, 1, "'artifacts[0].tools.torch'"),
    ("artifact-notes-string", art(0, notes="fp32"), V, 1, "'artifacts[0].notes'"),
    ("artifact-reason-number", art(0, reason=5), V, 1, "'artifacts[0].reason'"),
    ("artifact-opset-zero", art(0, opset=0), V, 1, "'artifacts[0].opset'"),
    ("artifact-engine-string", art(0, engine="built"), V, 1, "'artifacts[0].engine'"),
    ("artifact-compute-precision", art(0, compute_precision="fp8"), V, 1, "'artifacts[0].compute_precision'"),
    ("artifact-io-quantization", art(0, input_quantization=["a", 0]), V, 1, "'artifacts[0].input_quantization[0]'"),
    ("artifact-parity-cosine", m(lambda d: d["artifacts"][0]["parity"].update(cosine_min="high")), V, 1,
     "'artifacts[0].parity.cosine_min'"),
    ("artifact-parity-rows-zero", m(lambda d: d["artifacts"][0]["parity"].update(rows=0)), V, 1,
     "'artifacts[0].parity.rows'"),
    ("artifact-repair-needed-string", art(0, repair={"before": {}, "needed": "yes"}), V, 1,
     "'artifacts[0].repair.needed'"),
    ("artifact-repair-no-delta", art(0, repair={"before": {"runtime": "onnxruntime"}, "needed": True,
                                                "repaired": False}), V, 1, "'artifacts[0].repair.before.delta_map'"),
    ("artifact-repair-no-layers", art(0, repair={"before": {"runtime": "onnxruntime", "delta_map": -2.0},
                                                 "needed": True, "repaired": True,
                                                 "after": {"runtime": "onnxruntime", "delta_map": 0.0}}), V, 1,
     "'artifacts[0].repair.kept_float' is missing"),
    ("artifact-files-dotdot", art(0, files=["../model.xml"]), V, 1, "'artifacts[0].files[0]' points outside"),
    ("artifact-files-absolute", art(0, files=["/etc/hostname"]), V, 1, "'artifacts[0].files[0]' points outside"),
    ("reference-path-dotdot", m(lambda d: d["references"]["0.5"].update(path="reference/../../w.npy")), V, 1,
     "'references.0.5.path' points outside the bundle"),
    ("reference-path-absolute", m(lambda d: d["references"]["0.5"].update(path="/etc/hostname")), V, 1,
     "'references.0.5.path' points outside the bundle"),
    ("reference-sha-short", m(lambda d: d["references"]["0.5"].update(sha256="abc")), V, 1,
     "'references.0.5.sha256'"),
    ("reference-parameters-negative", m(lambda d: d["references"]["0.5"].update(parameters=-1)), V, 1,
     "'references.0.5.parameters'"),
    ("probe-labels-absolute", _set("probe.labels", "/tmp/labels.npz"), V, 1, "'probe.labels' points outside"),
    ("probe-inputs-dotdot", _set("probe.inputs", "../inputs.npy"), V, 1, "'probe.inputs' points outside"),
    ("probe-count-zero", _set("probe.count", 0), V, 1, "'probe.count'"),
    ("probe-queries-all-rows", m(lambda d: d["probe"].update(queries=d["probe"]["count"])), V, 1, "'probe.queries'"),
    ("checkpoint-sha-short", _set("checkpoint.sha256", "abc"), V, 1, "'checkpoint.sha256'"),
    ("checkpoint-tensors-sha-number", _set("checkpoint.tensors_sha256", 5), V, 1, "'checkpoint.tensors_sha256'"),
    ("checkpoint-embedding-dim-zero", _set("checkpoint.embedding_dim", 0), V, 1, "'checkpoint.embedding_dim'"),
    ("checkpoint-widths-zero", _set("checkpoint.widths", [0, 1.0]), V, 1, "'checkpoint.widths[0]'"),
    ("input-dtype-float16", _set("input.dtype", "float16"), V, 1, "'input.dtype'"),
    ("input-layout-nhwc", _set("input.layout", "NHWC"), V, 1, "'input.layout'"),
    ("input-shape-not-preprocess-size", _set("input.shape", [-1, 3, 128, 64]), V, 1,
     "'input.shape' is [-1, 3, 128, 64], but 'preprocess.size' is [64, 32]"),
    ("output-dtype-int8", _set("output.dtype", "int8"), V, 1, "'output.dtype'"),
    ("preprocess-std-zero", _set("preprocess.std", [0, 0.2, 0.2]), V, 1, "'preprocess' is wrong"),
    ("preprocess-string", _set("preprocess", "imagenet"), V, 1, "'preprocess'"),
    ("calibration-string", _set("calibration", "x"), V, 1, "'calibration'"),
    ("tools-number", _set("tools", {"torch": 2}), V, 1, "'tools.torch'"),
    ("created-number", _set("created", 5), V, 1, "'created'"),
    ("device-string", _set("device", "phone"), V, 1, "'device'"),
    ("bench-artifact-bytes-zero", art(0, bytes=0), BENCH, 2, "'artifacts[0].bytes'"),
    ("device-reference-path-absolute", m(lambda d: d["references"]["1"].update(path="/etc/hostname")), DEV, 1,
     "'references.1.path' points outside"),
    # -- probe -----------------------------------------------------------------------------------------
    ("probe-nan", npy(INPUTS, lambda a: np.where(np.arange(len(a))[:, None, None, None] == 2, np.nan, a)
                      .astype(np.float32)), V, 1, "probe/inputs.npy"),
    ("probe-inf", npy(INPUTS, lambda a: np.where(np.arange(len(a))[:, None, None, None] == 2, np.inf, a)
                      .astype(np.float32)), DEV, 1, "probe/inputs.npy"),
    ("probe-int8", npy(INPUTS, lambda a: a.astype(np.int8)), V, 1, "probe/inputs.npy"),
    ("probe-uint8", npy(INPUTS, lambda a: a.astype(np.uint8)), V, 1, "float32"),
    ("probe-float64", npy(INPUTS, lambda a: a.astype(np.float64)), V, 1, "probe/inputs.npy"),
    ("probe-no-rows", npy(INPUTS, lambda a: a[:0]), V, 1, "probe/inputs.npy"),
    ("probe-truncated", truncate_probe, V, 1, "probe/inputs.npy"),
    ("probe-not-npy", raw(INPUTS, b"\x93NUMPY garbage"), V, 1, "probe/inputs.npy"),
    ("bench-probe-int8", npy(INPUTS, lambda a: a.astype(np.int8)), BENCH, 2, "probe/inputs.npy"),
    ("device-probe-uint8", npy(INPUTS, lambda a: a.astype(np.uint8)), DEV, 1, "probe/inputs.npy"),
    ("labels-camids-short", labels(lambda d: d.update(camids=d["camids"][:-1])), V, 1, "'camids'"),
    ("labels-is-query-short", labels(lambda d: d.update(is_query=d["is_query"][:-1])), V, 1, "'is_query'"),
    ("labels-pids-fraction", labels(lambda d: d.update(pids=d["pids"] + 0.5)), V, 1, "'pids'"),
    ("labels-pids-2d", labels(lambda d: d.update(pids=np.stack([d["pids"]] * 2, 1))), V, 1, "'pids'"),
    ("labels-is-query-int", labels(lambda d: d.update(is_query=d["is_query"].astype(np.int64) * 2)), V, 1,
     "'is_query'"),
    ("labels-key-missing", labels(lambda d: d.pop("camids")), V, 1, "camids"),
    ("labels-no-gallery", labels(lambda d: d.update(is_query=np.ones_like(d["is_query"]))), V, 1, "gallery"),
    ("labels-no-query", labels(lambda d: d.update(is_query=np.zeros_like(d["is_query"]))), V, 1, "quer"),
    ("labels-no-gallery-match", labels(no_match), V, 1, "gallery match"),
    ("labels-not-npz", raw("probe/labels.npz", b"PK\x03\x04 garbage"), V, 1, "probe/labels.npz"),
    # -- references ------------------------------------------------------------------------------------
    ("reference-int8", npy(REF, lambda a: a.astype(np.int8)), V, 1, REF),
    ("reference-float64", npy(REF, lambda a: a.astype(np.float64)), V, 1, "float32"),
    ("reference-short", npy(REF, lambda a: a[:-1]), V, 1, REF),
    ("reference-dim", npy(REF, lambda a: a[:, :16]), V, 1, REF),
    ("reference-1d", npy(REF, lambda a: a[:, 0]), V, 1, REF),
    ("reference-nan", npy(REF, lambda a: np.where(np.arange(len(a))[:, None] == 3, np.nan, a).astype(np.float32)),
     V, 1, "non-finite"),
    ("reference-pickle", npy(REF, lambda a: np.array([{"x": 1}], dtype=object)), V, 1, REF),
    ("reference-not-npy", raw(REF, b"not an npy"), V, 1, REF),
    ("reference-zero-row", npy(REF, lambda a: np.where(np.arange(len(a))[:, None] == 2, 0, a).astype(np.float32)),
     V, 1, "all-zero feature rows"),
    ("reference-server-zeroed", npy(SERVER, np.zeros_like), V, 1, "all-zero feature rows"),
    ("reference-constant", npy(SERVER, lambda a: np.repeat(a[:1], len(a), 0)), V, 1, "constant"),
    # -- baseline (an older bundle given with --baseline) ----------------------------------------------------
    ("baseline-not-a-bundle", lambda r, o: shutil.rmtree(o), [*V, "--baseline", "{O}"], 1, "not a swedge bundle"),
    ("baseline-probe-sha-missing", lambda r, o: _del("probe.inputs_sha256")(o, None), [*V, "--baseline", "{O}"], 1,
     "'probe.inputs_sha256'"),
    ("baseline-reference-dim", npy(SERVER, lambda a: a[:, :16], on="old"), [*V, "--baseline", "{O}"], 1, SERVER),
    ("baseline-reference-int8", npy(SERVER, lambda a: a.astype(np.int8), on="old"), [*V, "--baseline", "{O}"], 1,
     "float32"),
    ("baseline-server-zeroed", npy(SERVER, np.zeros_like, on="old"), [*V, "--baseline", "{O}"], 1,
     "all-zero feature rows"),
    # -- nothing may resolve outside the bundle --------------------------------------------------------------
    ("artifact-symlink-outside", symlink("onnx/w0.5-fp32.onnx", True), V, 1, "symlink"),
    ("artifact-symlink-inside", symlink("onnx/w0.5-fp32.onnx", False), V, 1, "symlink"),
    ("folder-file-symlink-outside", folder_symlink, V, 1, "symlink"),
    ("folder-subdir-symlink", folder_subdir_symlink, V, 1, "symlink"),
    ("folder-fifo", folder_fifo, V, 1, "not a regular file"),
    ("folder-extra-file", folder_extra_file, V, 1, "extra.bin"),
    ("probe-symlink-outside", symlink(INPUTS, True), V, 1, "symlink"),
    ("probe-folder-symlink-outside", symlink("probe", True), V, 1, "symlink"),
    ("reference-symlink-inside", symlink(REF, False), V, 1, "symlink"),
    ("manifest-symlink-outside", symlink(MANIFEST, True), V, 1, "symlink"),
    ("artifact-path-dotdot", art(0, path="../outside.onnx"), V, 1, "outside the bundle"),
    ("artifact-path-absolute", art(0, path="/etc/hostname"), V, 1, "outside the bundle"),
    ("bench-artifact-symlink-outside", symlink("onnx/w0.5-fp32.onnx", True), BENCH, 2, "symlink"),
    # -- thresholds files ----------------------------------------------------------------------------------
    ("thresholds-string", thresholds('"abc"'), T, 2, "JSON object"),
    ("thresholds-null", thresholds("null"), T, 2, "JSON object"),
    ("thresholds-list", thresholds("[0.9]"), T, 2, "JSON object"),
    ("thresholds-binary", thresholds(b"\xff\xfe\x00\x01"), T, 2, "t.json"),
    ("thresholds-empty", thresholds(""), T, 2, "t.json"),
    ("thresholds-missing-file", lambda r, o: None, [*V, "--thresholds", "{B}/none.json"], 2, "none.json"),
    ("thresholds-folder", lambda r, o: None, [*V, "--thresholds", "{B}"], 2, "cannot read thresholds"),
    ("thresholds-value-string", thresholds('{"fp32_cosine_min": "0.9"}'), T, 2, "'fp32_cosine_min'"),
    ("thresholds-value-null", thresholds('{"fp16_cosine_min": null}'), T, 2, "'fp16_cosine_min'"),
    ("thresholds-value-list", thresholds('{"max_map_drop": [1]}'), T, 2, "'max_map_drop'"),
    ("thresholds-value-bool", thresholds('{"max_map_drop": true}'), T, 2, "'max_map_drop'"),
    ("thresholds-nan", thresholds('{"fp32_cosine_min": NaN}'), T, 2, "'fp32_cosine_min'"),
    ("thresholds-infinity", thresholds('{"max_map_drop": Infinity}'), T, 2, "'max_map_drop'"),
    ("thresholds-overflow", thresholds('{"baseline_max_map_drop": 1e400}'), T, 2, "'baseline_max_map_drop'"),
    ("thresholds-negative-drop", thresholds('{"max_map_drop": -1}'), T, 2, "'max_map_drop'"),
    ("thresholds-cosine-above-one", thresholds('{"int8_cosine_mean": 1.5}'), T, 2, "'int8_cosine_mean'"),
    ("thresholds-cosine-below-minus-one", thresholds('{"fp16_cosine_min": -2}'), T, 2, "'fp16_cosine_min'"),
    ("thresholds-rel-error-zero", thresholds('{"fp32_max_rel_error": 0}'), T, 2, "'fp32_max_rel_error'"),
    ("thresholds-weak-cosine", thresholds(f'{{"fp32_cosine_min": {WEAK_COSINE}}}'), T, 2, WEAK_FLAG),
    ("thresholds-weak-cosine-negative", thresholds(f'{{"int8_cosine_mean": {WEAK_COSINE - 0.5}}}'), T, 2, WEAK_FLAG),
    ("thresholds-weak-rel-error", thresholds(f'{{"fp32_max_rel_error": {WEAK_REL_ERROR}}}'), T, 2, WEAK_FLAG),
    ("thresholds-weak-drop", thresholds(f'{{"max_map_drop": {WEAK_MAP_DROP}}}'), T, 2, WEAK_FLAG),
    ("thresholds-weak-baseline-drop", thresholds(f'{{"baseline_max_map_drop": {WEAK_MAP_DROP + 1}}}'), T, 2,
     "'baseline_max_map_drop'"),
    ("device-thresholds-nan", thresholds('{"fp32_cosine_min": NaN}'), [*DEV, "--thresholds", "{T}"], 2,
     "'fp32_cosine_min'"),
    # -- small -----------------------------------------------------------------------------------------------
    ("formats-unknown", lambda r, o: None, [*V, "--formats", "onnxx"], 2, "'onnxx'"),
    ("formats-not-in-bundle", lambda r, o: None, [*V, "--formats", "tflite"], 1, "tflite"),
    ("bench-formats-unknown", lambda r, o: None, [*BENCH, "--formats", "onnxx"], 2, "'onnxx'"),
    ("bench-runtime-unknown", lambda r, o: None, [*BENCH, "--runtime", "onnxruntim"], 2, "'onnxruntim'"),
    ("bench-artifacts-empty", _set("artifacts", []), BENCH, 2, "has no artifacts"),
]


def _run(argv: list[str]) -> int:
    """The command in-process; an exception escaping it is what the user would see as a traceback."""
    if argv[0] == "device":
        from swedge.runtimes.__main__ import main as device_main

        return device_main(["verify", *argv[1:]])
    return main(argv)


@pytest.fixture
def hostile(onnx_bundle, tmp_path):
    """(new bundle, baseline bundle): linked copies of the session bundle, safe to edit."""
    return _linked_copy(onnx_bundle, tmp_path / "b"), _linked_copy(onnx_bundle, tmp_path / "old")


@pytest.mark.parametrize("edit,argv,code,says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_naming_the_problem(hostile, edit, argv, code, says, capsys):
    root, old = hostile
    edit(root, old)
    argv = [a.format(B=root, O=old, T=root.parent / "t.json") for a in argv]
    try:
        rc = _run(argv)
    except BaseException as exc:  # noqa: BLE001 - the very thing under test
        pytest.fail(f"traceback: {type(exc).__name__}: {exc}")
    out, err = capsys.readouterr()
    assert rc != 0, f"silent pass:\n{out}"
    assert rc == code, out + err
    assert "Traceback" not in err
    assert says in out + err, out + err
    problem = [line for line in (out + err).splitlines() if says in line]
    assert len(problem) >= 1 and all(len(line) < 600 for line in problem)  # one line, not a dump


# -- cases that need more than an edit -------------------------------------------------------------------------
def _artifact_outputs(monkeypatch, make):
    """Every artifact's probe features replaced by ``make(reference-shaped zeros)``: what a broken runtime emits."""
    from swedge.runtimes import verify

    real = verify._embed

    def fake(runner, probe, batch):
        feats, spent = real(runner, probe, batch)
        return make(feats), spent

    monkeypatch.setattr(verify, "_embed", fake)


@pytest.mark.parametrize("make,says", [
    (np.zeros_like, "all-zero feature rows"),
    (lambda f: np.where(np.arange(len(f))[:, None] == 1, np.inf, f).astype(np.float32), "non-finite features"),
    (lambda f: np.repeat(f[:1], len(f), 0), "constant features"),
], ids=["zero", "inf-row", "constant"])
def test_degenerate_artifact_features_fail_by_name(onnx_bundle, monkeypatch, make, says, capsys):
    _artifact_outputs(monkeypatch, make)
    rc = main(["verify", str(onnx_bundle), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "verify FAILED: 0 passed" in out and says in out, out


def test_an_undefined_cosine_counts_as_the_worst_not_as_agreement():
    from swedge.metrics.fidelity import row_cosine

    zero, one = np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32)
    for a, b in ((zero, zero), (zero, one), (one, zero)):
        assert (row_cosine(a, b) == -1).all()
    assert row_cosine(one, one) == pytest.approx(1.0)


def test_weak_thresholds_run_only_with_the_flag_and_the_report_says_so(onnx_bundle, tmp_path, capsys):
    t = tmp_path / "t.json"
    t.write_text(json.dumps({"max_map_drop": WEAK_MAP_DROP}))
    argv = ["verify", str(onnx_bundle), "--quiet", "--thresholds", str(t), "--json", str(tmp_path / "v.json")]
    assert main(argv) == 2 and WEAK_FLAG in capsys.readouterr().err
    assert main([*argv, WEAK_FLAG, "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "weak threshold accepted" in out and "'max_map_drop'" in out
    assert "'max_map_drop'" in json.loads((tmp_path / "v.json").read_text())["weak_thresholds"][0]
    assert "weak threshold accepted" in (tmp_path / "rep" / "report.md").read_text()


def test_ctrl_c_during_the_device_verify_is_one_line_and_exit_130(onnx_bundle, monkeypatch, capsys):
    from swedge.runtimes import verify
    from swedge.runtimes.__main__ import main as device_main

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(verify, "_embed", interrupted)  # mid-inference, inside the harness's per-artifact handler
    assert device_main(["verify", str(onnx_bundle), "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == "verify: interrupted"


def test_folder_hash_is_unchanged_for_plain_folders_and_refuses_links(tmp_path):
    """Existing bundles keep verifying (the hash of a plain folder is what it always was); a link is refused by
    the hash itself, not only by the manifest check."""
    from swedge.runtimes.manifest import BundleError

    folder = tmp_path / "ir"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.xml").write_text("<xml/>")
    (folder / "sub" / "w.bin").write_bytes(b"\1\2")
    (folder / "sub.bin").write_bytes(b"\3")  # sorts between 'sub' and 'sub/w.bin' as a string, not as parts
    assert tree_sha256(folder) == _loose_tree_sha(folder)
    (folder / "link.bin").symlink_to(folder / "sub.bin")
    with pytest.raises(BundleError, match="symlink"):
        tree_sha256(folder)


def test_a_bundle_reached_through_a_linked_folder_still_verifies(onnx_bundle, tmp_path, capsys):
    """The bundle folder itself may be a link (bundles/latest -> bundles/v3); only what is under it may not."""
    (tmp_path / "latest").symlink_to(onnx_bundle, target_is_directory=True)
    assert main(["verify", str(tmp_path / "latest"), "--quiet"]) == 0, capsys.readouterr().out
