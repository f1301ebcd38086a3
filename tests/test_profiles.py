"""Device profiles (TOML): the shipped examples load, and every malformed profile is one line naming the field."""

import sys
from pathlib import Path

import pytest

from swedge.errors import SwedgeError
from swedge.runtimes.profiles import load_profiles, parse_profiles, read_toml

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"runtime": "onnxruntime", "threads": 1, "batch": 1, "latency_p90_ms": 2.0, "memory_mb": 400, "size_mb": 50,
        "min_map_cross": 10.0, "max_map_drop": 15.0, "description": "x"}


def test_the_example_profiles_load():
    profiles = load_profiles(ROOT / "examples" / "profiles.toml")
    by_name = {p.name: p for p in profiles}
    assert set(by_name) == {"cpu-2core-1t-2ms", "cpu-2core-1t-4ms", "cpu-2core-batch32"}
    assert by_name["cpu-2core-1t-2ms"].latency_budgets() == [("p90", 2.0)]
    assert by_name["cpu-2core-1t-4ms"].latency_p90_ms == 4.0 and by_name["cpu-2core-1t-4ms"].threads == 1
    assert by_name["cpu-2core-batch32"].latency_budgets() == [("p50", 60.0)] and by_name["cpu-2core-batch32"].batch == 32


def test_defaults_and_types():
    (p,) = parse_profiles({"device": {"d": {"runtime": "litert", "memory_mb": 300}}})
    assert (p.threads, p.batch, p.memory_mb, p.latency_budgets()) == (1, 1, 300.0, [])
    assert isinstance(p.memory_mb, float) and p.to_dict() == {"name": "d", "runtime": "litert", "threads": 1,
                                                              "batch": 1, "memory_mb": 300.0}


@pytest.mark.parametrize("change, says", [
    ({"latency_ms": 2.0}, "device.d: unknown key 'latency_ms' (did you mean 'latency_p90_ms'?)"),
    ({"threads": "1"}, "device.d.threads must be a finite number"),
    ({"threads": True}, "device.d.threads must be a finite number"),
    ({"batch": 1.5}, "device.d.batch must be a whole number"),
    ({"latency_p90_ms": 0}, "device.d.latency_p90_ms is 0: p90 latency budget in ms must be > 0"),
    ({"latency_p50_ms": float("inf")}, "device.d.latency_p50_ms must be a finite number"),
    ({"memory_mb": -5}, "device.d.memory_mb is -5: peak resident memory budget in MB must be > 0"),
    ({"size_mb": 0.0}, "device.d.size_mb is 0.0"),
    ({"threads": 0}, "device.d.threads is 0"),
    ({"batch": 100000}, "device.d.batch is 100000: more than 4096"),
    ({"min_map_cross": 150.0}, "device.d.min_map_cross is 150.0: mAP is in points"),
    ({"min_map_cross": 0}, "device.d.min_map_cross is 0"),
    ({"max_map_drop": -1.0}, "device.d.max_map_drop is -1.0: an mAP drop in points lies in [0, 100)"),
    ({"runtime": "onnxrt"}, "device.d.runtime: unknown runtime 'onnxrt'"),
    ({"runtime": "torch"}, "device.d.runtime: unknown runtime 'torch'"),
    ({"runtime": 3}, "device.d.runtime must be a string"),
    ({"description": 1}, "device.d.description must be a string"),
])
def test_a_bad_field_is_one_line_naming_it(change, says):
    with pytest.raises(SwedgeError) as err:
        parse_profiles({"device": {"d": {**GOOD, **change}}}, "p.toml")
    msg = str(err.value)
    assert msg.startswith("p.toml: ") and says in msg and "\n" not in msg, msg


@pytest.mark.parametrize("data, says", [
    ({}, "no [device.NAME] table"),
    ({"device": {}}, "no [device.NAME] table"),
    ({"devices": {"d": GOOD}}, "unknown top-level key(s) ['devices']"),
    ({"device": {"d": {"threads": 1}}}, "device.d.runtime is missing"),
    ({"device": {"a b": GOOD}}, "device.a b: a device name is"),
    ({"device": {"d": 3}}, "device.d must be a table"),
])
def test_a_bad_document_is_one_line(data, says):
    with pytest.raises(SwedgeError, match=None) as err:
        parse_profiles(data, "p.toml")
    assert says in str(err.value), str(err.value)


def test_invalid_toml_and_missing_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[device.d\nruntime = 1")
    with pytest.raises(SwedgeError, match="is not valid TOML"):
        load_profiles(tmp_path / "bad.toml")
    with pytest.raises(SwedgeError, match="cannot read profiles"):
        load_profiles(tmp_path / "absent.toml")


def test_older_pythons_read_toml_with_tomli_or_say_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "p.toml"
    path.write_text('[device.d]\nruntime = "litert"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python < 3.11
    pytest.importorskip("tomli")
    assert read_toml(path) == {"device": {"d": {"runtime": "litert"}}}
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(SwedgeError, match=r"needs Python 3.11\+ \(tomllib\) or the tomli package: pip install tomli"):
        read_toml(path)
