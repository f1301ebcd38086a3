"""What the product writes, under hostile but fair use: --force never deletes an input or a foreign folder,
one writer per output, unwritable outputs refused before the work, stale staging cleaned, Ctrl-C aborts."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swedge.cli import main
from swedge.exporters import load_exporters
from swedge.exporters.base import EXPORTERS
from swedge.io import umask
from swedge.outputs import exclusive, staging_prefix
from swedge.runtimes.manifest import MANIFEST, read_manifest

EXPORT = ["--formats", "onnx", "--widths", "0.5", "--precisions", "fp32", "--quiet"]


def _tree(root: Path) -> set:
    return {(p.relative_to(root).as_posix(), p.is_dir()) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def made_bundle(tiny_checkpoint, tiny_market, tmp_path_factory):
    """One real export at --widths 0.5 only: the server width is not among the exported widths."""
    out = tmp_path_factory.mktemp("made") / "bundle"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--probe", str(tiny_market), *EXPORT]) == 0
    return out


# --- the catalogue: one row per hostile case (id, build(tmp, ckpt, data, bundle) -> argv, exit code, message) --

def _ckpt_in_run(tmp, ckpt, data, bundle):
    run = tmp / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "model.safetensors")
    return ["export", str(run / "model.safetensors"), "--out", str(run), "--probe", str(data), "--force", *EXPORT]


def _ckpt_in_bundle(tmp, ckpt, data, bundle):
    copy = tmp / "b"
    shutil.copytree(bundle, copy)
    shutil.copy(ckpt, copy / "model.safetensors")
    return ["export", str(copy / "model.safetensors"), "--out", str(copy), "--probe", str(data), "--force", *EXPORT]


def _data_copy(tmp, data):
    shutil.copytree(data, tmp / "data")
    return tmp / "data"


def _calib_is_out(tmp, ckpt, data, bundle):
    d = _data_copy(tmp, data)
    return ["export", str(ckpt), "--calib", str(d), "--out", str(d), "--force", *EXPORT]


def _probe_is_out(tmp, ckpt, data, bundle):
    d = _data_copy(tmp, data)
    return ["export", str(ckpt), "--probe", str(d), "--out", str(d), "--force", *EXPORT]


def _link_to_data(tmp, ckpt, data, bundle):
    d = _data_copy(tmp, data)
    (tmp / "link").symlink_to(d)
    return ["export", str(ckpt), "--probe", str(d), "--out", str(tmp / "link"), "--force", *EXPORT]


def _foreign(force):
    def build(tmp, ckpt, data, bundle):
        (tmp / "mine").mkdir()
        (tmp / "mine" / "thesis.tex").write_text("years of work")
        return ["export", str(ckpt), "--probe", str(data), "--out", str(tmp / "mine"), *EXPORT,
                *(["--force"] if force else [])]
    return build


def _staging_as_out(tmp, ckpt, data, bundle):  # a killed export's folder: no manifest, so not a bundle
    staging = tmp / ".b.partial-abcd1234"
    shutil.copytree(bundle, staging)
    (staging / MANIFEST).unlink()
    return ["export", str(ckpt), "--probe", str(data), "--out", str(staging), "--force", *EXPORT]


def _json_is_ckpt(tmp, ckpt, data, bundle):
    c = tmp / "model.safetensors"
    shutil.copy(ckpt, c)
    return ["export", str(c), "--probe", str(data), "--out", str(tmp / "o"), "--json", str(c), *EXPORT]


def _train_into_foreign(tmp, ckpt, data, bundle):
    _foreign(False)(tmp, ckpt, data, bundle)
    return ["train", "--data", str(data), "--out", str(tmp / "mine"), "--force"]


def _demo_into_foreign(tmp, ckpt, data, bundle):
    _foreign(False)(tmp, ckpt, data, bundle)
    return ["demo", "--out", str(tmp / "mine"), "--data", str(data), "--epochs", "1", "--formats", "onnx"]


def _demo_data_is_its_bundle(tmp, ckpt, data, bundle):  # the demo's export stage would replace its own data
    shutil.copytree(data, tmp / "demo" / "bundle")
    return ["demo", "--out", str(tmp / "demo"), "--data", str(tmp / "demo" / "bundle"), "--epochs", "1",
            "--formats", "onnx"]


def _a_file(tmp):
    (tmp / "f").write_text("x")
    return tmp / "f"


def _out(cmd_argv, where):
    def build(tmp, ckpt, data, bundle):
        target = {"file": lambda: _a_file(tmp), "under-file": lambda: _a_file(tmp) / "sub",
                  "proc": lambda: Path("/proc/self/swedge-out"), "folder": lambda: tmp}[where]()
        return [a.format(ckpt=ckpt, data=data, bundle=bundle, out=target, tmp=tmp) for a in cmd_argv]
    return build


_EXPORT_ARGV = ["export", "{ckpt}", "--probe", "{data}", *EXPORT]
_TRAIN_ARGV = ["train", "--data", "{data}", "--epochs", "1"]

CASES = [
    # data loss: --force must never delete an input or a folder swedge did not write
    ("force-out-is-run-holding-ckpt", _ckpt_in_run, 2, "holds the input CHECKPOINT"),
    ("force-out-is-bundle-holding-ckpt", _ckpt_in_bundle, 2, "holds the input CHECKPOINT"),
    ("force-out-is-calib", _calib_is_out, 2, "holds the input --calib"),
    ("force-out-is-probe", _probe_is_out, 2, "holds the input --probe"),
    ("force-out-symlink-to-probe", _link_to_data, 2, "holds the input --probe"),
    ("force-foreign-folder", _foreign(True), 2, "is not a bundle (no manifest.json of schema swedge.bundle)"),
    ("foreign-folder-no-force-hint", _foreign(False), 2, "swedge replaces only its own folders"),
    ("force-killed-staging-folder", _staging_as_out, 2, "is not a bundle"),
    ("json-overwrites-ckpt", _json_is_ckpt, 2, "would overwrite the input CHECKPOINT"),
    ("train-out-is-data", lambda t, c, d, b: ["train", "--data", str(_data_copy(t, d)), "--out", str(t / "data"),
                                              "--force"], 2, "holds the training data --data"),
    ("train-force-foreign-folder", _train_into_foreign, 2, "is not a training run"),
    ("demo-foreign-folder", _demo_into_foreign, 2, "is not a demo run folder"),
    ("demo-data-is-its-bundle", _demo_data_is_its_bundle, 2, "holds the input --calib"),
    # output paths: refused before the work, naming the path
    ("export-out-file", _out([*_EXPORT_ARGV, "--out", "{out}"], "file"), 2, "is a file, not a folder"),
    ("export-out-under-file", _out([*_EXPORT_ARGV, "--out", "{out}"], "under-file"), 2, "which is a file"),
    ("export-out-proc", _out([*_EXPORT_ARGV, "--out", "{out}"], "proc"), 2, "pseudo file system"),
    ("export-json-folder", _out([*_EXPORT_ARGV, "--out", "{tmp}/o", "--json", "{out}"], "folder"), 2,
     "is a folder: give a file path"),
    ("export-json-under-file", _out([*_EXPORT_ARGV, "--out", "{tmp}/o", "--json", "{out}"], "under-file"), 2,
     "--json"),
    ("train-out-file", _out([*_TRAIN_ARGV, "--out", "{out}"], "file"), 2, "is a file, not a folder"),
    ("train-out-proc", _out([*_TRAIN_ARGV, "--out", "{out}"], "proc"), 2, "pseudo file system"),
    ("demo-out-under-file", _out(["demo", "--out", "{out}", "--data", "{data}", "--epochs", "1", "--formats", "onnx"],
                                 "under-file"), 2, "which is a file"),
    ("compare-out-file", _out(["compare", "--methods", "sfsc", "--data", "{data}", "--out", "{out}"], "file"), 2,
     "is a file"),
    ("data-synth-out-proc", _out(["data", "synth", "--out", "{out}"], "proc"), 2, "pseudo file system"),
    ("verify-report-under-file", _out(["verify", "{bundle}", "--report", "{out}"], "under-file"), 2,
     "--report"),
    ("verify-json-proc", _out(["verify", "{bundle}", "--json", "{out}"], "proc"), 2, "pseudo file system"),
    ("verify-junit-folder", _out(["verify", "{bundle}", "--junit", "{out}"], "folder"), 2, "is a folder"),
    ("eval-json-under-file", _out(["eval", "{ckpt}", "--data", "{data}", "--json", "{out}"], "under-file"), 2,
     "which is a file"),
    ("bench-json-proc", _out(["bench", "{bundle}", "--json", "{out}"], "proc"), 2, "pseudo file system"),
]


@pytest.mark.parametrize("build, code, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_output(build, code, message, tiny_checkpoint, tiny_market, made_bundle, tmp_path, capsys):
    argv = build(tmp_path, tiny_checkpoint, tiny_market, made_bundle)
    before = _tree(tmp_path)
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert "pass --force" not in err  # every case here is one --force would not fix
    assert _tree(tmp_path) == before  # nothing created, nothing deleted (inputs included)


def test_force_replaces_a_bundle_and_removes_stale_staging_saying_so(made_bundle, tiny_checkpoint, tiny_market,
                                                                    tmp_path, capsys):
    out = tmp_path / "b"
    shutil.copytree(made_bundle, out)
    stale = [tmp_path / f"{staging_prefix(out)}k1ll3d_x", tmp_path / ".b.old-1700000000"]  # of killed exports
    unrelated = [tmp_path / ".b.partial-mine", tmp_path / ".other.partial-abcd1234"]  # not this export's names
    for d in stale + unrelated:
        (d / "onnx").mkdir(parents=True)
    argv = ["export", str(tiny_checkpoint), "--probe", str(tiny_market), "--out", str(out), *EXPORT]
    assert main(argv) == 2 and "already holds a bundle; pass --force" in capsys.readouterr().err
    assert all(d.exists() for d in stale)  # a refused export removes nothing
    assert main([*argv, "--force"]) == 0
    err = capsys.readouterr().err
    assert all(not d.exists() and f"removed {d}" in err for d in stale), err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b"] + [d.name for d in unrelated])  # no lock left


def test_a_bundle_without_the_server_width_still_verifies(made_bundle, capsys):
    bundle = read_manifest(made_bundle)
    assert bundle.widths == [0.5] and bundle.server_width == 1.0
    assert set(bundle.manifest.references) == {"0.5", "1"}
    assert main(["verify", str(made_bundle), "--quiet"]) == 0, capsys.readouterr()


def test_bundles_are_published_with_the_usual_permissions(made_bundle):
    assert made_bundle.stat().st_mode & 0o777 == 0o777 & ~umask()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_refused_before_the_work(tiny_checkpoint, tiny_market, tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        rc = main(["export", str(tiny_checkpoint), "--probe", str(tiny_market), "--out", str(tmp_path / "o"), *EXPORT])
    finally:
        tmp_path.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write in" in err and str(tmp_path) in err


@pytest.mark.parametrize("argv", [["export", "{ckpt}", "--probe", "{data}", *EXPORT],
                                  ["train", "--data", "{data}", "--epochs", "1"]], ids=["export", "train"])
def test_a_second_writer_fails_at_once_naming_the_first(argv, tiny_checkpoint, tiny_market, tmp_path, capsys):
    out = tmp_path / "o"
    with exclusive(out, "swedge export (the first)"):
        t0 = time.perf_counter()
        rc = main([a.format(ckpt=tiny_checkpoint, data=tiny_market) for a in argv] + ["--out", str(out)])
        seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and f"{out} is being written by swedge export (the first) (pid {os.getpid()})" in err, err
    assert seconds < 30 and not out.exists()  # "at once": no waiting for the first writer (loaded CI boxes: imports)


def _ctrl_c_inside(original, swallow: bool, at: int, calls: list):
    """An exporter whose backend gets Ctrl-C in its ``at``-th export and hides it: wrapped as a RuntimeError
    (recorded as a failed artifact before), or swallowed (the export went on as if nothing happened)."""
    def export(self, job):
        calls.append(job.precision)
        if len(calls) == at:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here
            except KeyboardInterrupt as exc:
                if not swallow:
                    raise RuntimeError("converter aborted") from exc
        return original(self, job)
    return export


@pytest.fixture
def sigint_restored():
    """main() ignores Ctrl-C once a command was interrupted (the process is ending): give pytest its own back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.parametrize("swallow, at", [(False, 1), (True, 1), (True, 2)],
                         ids=["wrapped-in-first", "swallowed-in-first", "swallowed-in-last"])
def test_ctrl_c_hidden_by_a_backend_still_aborts(swallow, at, tiny_checkpoint, tiny_market, tmp_path, capsys,
                                                 monkeypatch, sigint_restored):
    load_exporters()
    cls, calls = EXPORTERS.get("onnx"), []
    monkeypatch.setattr(cls, "export", _ctrl_c_inside(cls.export, swallow, at, calls))
    out = tmp_path / "o"
    rc = main(["export", str(tiny_checkpoint), "--probe", str(tiny_market), "--out", str(out), *EXPORT,
               "--precisions", "fp32,fp16"])
    err = capsys.readouterr().err
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    assert len(calls) == at  # nothing more was exported after the Ctrl-C
    assert list(tmp_path.iterdir()) == []  # nothing published, staging and lock removed


def test_os_and_memory_errors_are_one_line(tiny_checkpoint, monkeypatch, capsys):
    import swedge.cli.export as export_cli

    for exc, words in ((OSError(28, "No space left on device", "/x/y.onnx"), "No space left on device: /x/y.onnx"),
                       (MemoryError(), "out of memory")):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(export_cli, "run", boom)
        rc = main(["export", str(tiny_checkpoint), "--out", "unused", "--probe", "unused"])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def _wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    return proc.poll() is None and predicate()


@pytest.mark.e2e
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_mid_export_aborts_publishes_nothing_and_exits_130(presses, tiny_checkpoint, tiny_market, tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "swedge", "export", str(tiny_checkpoint), "--out", str(out), "--formats", "onnx",
           "--precisions", "fp32,fp16", "--probe", str(tiny_market), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    inside = _wait_for(lambda: list(tmp_path.glob(".o.partial-*/onnx/*.onnx")), proc)  # provably mid-export
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    _, err = proc.communicate(timeout=120)
    assert inside, f"the export was not caught mid-export (rc {proc.returncode}): {err[-2000:]}"
    assert proc.returncode == 130 and "interrupted" in err.splitlines()[-1], err[-3000:]
    assert "Traceback" not in err and "terminate called" not in err and "C++" not in err, err[-3000:]
    assert not out.exists() and list(tmp_path.iterdir()) == []


TRAIN = ["--input-size", "32x16", "--widths", "0.5,1.0", "--embedding-dim", "8", "--workers", "0", "--epochs", "4",
         "--ids-per-batch", "4", "--images-per-id", "2", "--log-every", "1", "--quiet"]


@pytest.mark.e2e
def test_kill_9_mid_training_then_resume_finishes_and_nothing_looked_complete(tiny_market, tmp_path):
    from swedge.checkpoint import load_checkpoint
    from swedge.training.trainer import LOG_FILE, STATE_FILE

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "swedge", "train", "--data", str(tiny_market), "--out", str(run), *TRAIN]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def past_a_saved_epoch():  # a resume point exists and a later step was logged: the kill lands mid-run
        return (run / STATE_FILE).is_file() and '"epoch": 2' in (run / LOG_FILE).read_text()

    alive = _wait_for(past_a_saved_epoch, proc)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert alive, f"training ended (rc {proc.returncode}) before it could be killed: {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(run / "model.safetensors").meta["extra"]["epochs_done"]  # loads: never half-written
    assert 1 <= done < 4  # the killed run's checkpoint does not claim to be the finished one
    assert main(["train", "--data", str(tiny_market), "--out", str(run), *TRAIN, "--resume"]) == 0
    assert load_checkpoint(run / "model.safetensors").meta["extra"]["epochs_done"] == 4
    steps = [json.loads(line)["step"] for line in (run / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))
    assert not list(tmp_path.glob(".run.lock")) and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.e2e
def test_two_real_exports_to_one_out_the_second_fails_at_once(tiny_checkpoint, tiny_market, tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "swedge", "export", str(tiny_checkpoint), "--out", str(out), "--probe",
           str(tiny_market), *EXPORT]
    # the first exports all four widths: busy long enough for the second to start up and reach the lock
    first = subprocess.Popen([*cmd, "--widths", "0.25,0.5,0.75,1.0"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    writing = _wait_for(lambda: list(tmp_path.glob(".o.partial-*")), first)  # the first holds --out now
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    first_alive = first.poll() is None
    _, first_err = first.communicate(timeout=300)
    assert writing and first_alive, f"the first export was not mid-export: {first_err[-2000:]}"
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 2 and f"is being written by swedge export (pid {first.pid})" in second.stderr
    assert read_manifest(out).artifacts[0].status == "ok"
