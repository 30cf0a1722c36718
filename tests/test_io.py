import pytest

from wildtrain.errors import WildtrainError
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


def test_read_json_reads_nan_and_reports_broken_files_in_one_line(tmp_path):
    import gc
    import math

    (tmp_path / "nan.json").write_text('{"bbox": [1, NaN, Infinity, 2]}')  # orjson refuses; json reads
    box = read_json(tmp_path / "nan.json")["bbox"]
    assert box[0] == 1 and math.isnan(box[1]) and math.isinf(box[2])
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(WildtrainError) as e:
        read_json(tmp_path / "bad.json", "COCO annotation file")
    assert str(e.value).startswith(f"{tmp_path / 'bad.json'}: unreadable COCO annotation file (")
    assert "\n" not in str(e.value) and gc.isenabled()
    (tmp_path / "latin1.json").write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(WildtrainError, match="unreadable"):
        read_json(tmp_path / "latin1.json")


def test_gc_paused_restores_the_collector_as_it_found_it():
    import gc

    from wildtrain.io import gc_paused

    for was in (True, False):
        gc.enable() if was else gc.disable()
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is was
    gc.enable()
    gc.freeze()  # a caller's own frozen objects stay frozen
    try:
        before = gc.get_freeze_count()
        with gc_paused():
            pass
        assert gc.get_freeze_count() == before > 0
    finally:
        gc.unfreeze()
