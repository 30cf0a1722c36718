"""The served model reads no server file outside the folders its operator allows, answers the same whether a file
outside exists or not, refuses every non-image input with a 400, and never starts pip (Ultralytics' AutoUpdate)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from PIL import Image

from conftest import REPO

from wildtrain import serve

SERVING = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"  # set by MLflow's scoring server before it loads a model


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def refusal(paths: list[str]) -> list[tuple[int, str]]:
    """(HTTP status, message with the caller's own path blanked) of each image_path request."""
    from mlflow.exceptions import MlflowException

    out = []
    for path in paths:
        with pytest.raises(MlflowException) as e:
            serve.read_rows(pd.DataFrame({"image_path": [path]}), 10**8)
        out.append((e.value.get_http_status_code(), e.value.message.replace(path, "<path>")))
    return out


def test_served_image_path_is_off_unless_allowed_and_outside_says_nothing_about_existence(tmp_path, monkeypatch):
    allowed, secret_dir = tmp_path / "surveys", tmp_path / "secret"
    allowed.mkdir()
    secret_dir.mkdir()
    (allowed / "ok.png").write_bytes(png_bytes())
    (allowed / "notes.txt").write_text("not an image")
    (secret_dir / "key.png").write_bytes(png_bytes())
    (allowed / "link.png").symlink_to(secret_dir / "key.png")  # inside by name, outside once resolved

    monkeypatch.delenv(serve.SERVE_PATHS_ENV, raising=False)
    monkeypatch.setenv(SERVING, "true")
    ((status, message),) = refusal([str(allowed / "ok.png")])
    assert status == 400 and "image_path is off on this server" in message

    monkeypatch.setenv(serve.SERVE_PATHS_ENV, str(allowed))
    (image,) = serve.read_rows(pd.DataFrame({"image_path": [str(allowed / "ok.png")]}), 10**8)
    assert image.shape == (30, 40, 3)
    outside = [str(secret_dir / "key.png"), str(secret_dir / "missing.png"), "/etc/passwd", "/nonexistent/x.png",
               str(allowed / ".." / "secret" / "key.png"), str(allowed / ".." / "secret" / "missing.png"),
               str(allowed / "link.png"), "surveys/../../etc/passwd", "bad\x00name"]
    answers = refusal(outside)
    assert {a for a in answers} == {(400, "row 0: image_path '<path>': image_path is outside the folders this "
                                          f"server may read ({serve.SERVE_PATHS_ENV})")}, answers
    # inside the allowed folders: a non-image or a folder is a 400 too, never a 500
    inside = refusal([str(allowed / "notes.txt"), str(allowed)])
    assert inside[0][0] == inside[1][0] == 400
    assert "not a readable image" in inside[0][1] and "not a file" in inside[1][1]

    # loaded in the caller's own process (not served), the caller's own files are theirs to read
    monkeypatch.delenv(SERVING)
    monkeypatch.delenv(serve.SERVE_PATHS_ENV)
    assert serve.read_rows(pd.DataFrame({"image_path": [str(secret_dir / "key.png")]}), 10**8)[0].shape == (30, 40, 3)


@pytest.mark.parametrize("data", [b"hello, not a picture", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "%%%not base64",
                                  12345, b""])
def test_every_non_image_input_is_a_400(data):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as e:
        serve.read_rows(pd.DataFrame({"image": [data]}), 10**8)
    assert e.value.get_http_status_code() == 400 and e.value.message.startswith("row 0: image")


PROBE = textwrap.dedent("""
    import os, sys
    started = []

    def hook(event, args):  # every process this interpreter starts is recorded; an install is blocked
        if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"):
            started.append(f"{event} {args[:2]!r}")
            if "install" in repr(args):
                raise PermissionError("blocked by the test")

    import ultralytics.utils.checks as checks  # imported first, as a model's family may import it before serve
    checks.ONLINE = True  # as on a machine with the network: AutoUpdate would run pip (uv) now
    if sys.argv[1] == "control":  # the probe sees an install when AutoUpdate is on (Ultralytics' default)
        sys.addaudithook(hook)
        checks.check_requirements("pi-heif")
        print("STARTED", len(started), started)
        sys.exit(0)
    from wildtrain import serve  # what a served model imports first
    sys.addaudithook(hook)
    from mlflow.exceptions import MlflowException
    for data in (b"hello, not a picture", open("/etc/hostname", "rb").read() or b"x"):
        try:
            serve.decode(data, "row 0: image", 10**8)
        except MlflowException as e:
            print("STATUS", e.get_http_status_code(), e.message)
    print("STARTED", len(started), started[:1])
""")


def probe(tmp_path, mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_AUTOINSTALL", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(PYTHONPATH=str(REPO / "src"), YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "yolo"),
               YOLO_VERBOSE="False")
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_non_image_request_starts_no_pip_even_online(tmp_path):
    control = probe(tmp_path, "control")
    assert "'install'" in control, control  # the probe can see an install attempt

    out = probe(tmp_path, "serve")
    assert out.count("STATUS 400 row 0: image: not a readable image") == 2, out
    assert "STARTED 0 []" in out, out
