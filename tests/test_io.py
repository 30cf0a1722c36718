import pytest

from wildtrain.io import read_json, replaced_dir, write_json


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    f = tmp_path / "m.json"
    write_json(f, {"v": 1})
    with pytest.raises(TypeError):
        write_json(f, {"v": object()})  # not serializable: fails mid-write
    assert read_json(f) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_replaced_dir_swaps_only_on_success(tmp_path):
    d = tmp_path / "out"
    with replaced_dir(d) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with replaced_dir(d) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-stage")
    assert (d / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
