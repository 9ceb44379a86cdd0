"""A demo run is checked first, built aside and swapped in whole: a failed run never destroys the previous one."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from locator.errors import SettingsError
from training import run_folder
from training.cli import main as geoloc_train

ROOT = Path(__file__).resolve().parents[2]


def _previous_run(out: Path) -> dict[str, str]:
    files = {"bundle/config.json": "{}", "store/geoloc_store.json": "{}", "features/train/meta.json": "{}",
             "eval.md": "old table", "map.html": "<html>old</html>", "predictions.csv": "image,lat,lon\n",
             run_folder.MARKER: "{}"}
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return files


def _unchanged(out: Path, files: dict[str, str]) -> bool:
    return all((out / name).read_text() == text for name, text in files.items())


def test_publish_swaps_in_the_new_run_and_only_then_drops_the_old(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old = _previous_run(out)
    stage = run_folder.start(out)
    assert stage == tmp_path / "run.partial" and _unchanged(out, old)
    (stage / "eval.md").write_text("new table")
    run_folder.publish(stage, out, "test")
    assert (out / "eval.md").read_text() == "new table" and not (out / "map.html").exists()
    assert (out / run_folder.MARKER).is_file() and not stage.exists() and not (tmp_path / "run.previous").exists()


def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(SettingsError, match="not a geoloc run"):
        run_folder.start(out)
    (tmp_path / "home.partial").mkdir()
    with pytest.raises(SettingsError, match="not a geoloc run"):
        run_folder.publish(tmp_path / "home.partial", out, "test")
    assert (out / "thesis.tex").read_text() == "precious"


def test_run_start_validates_the_data_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    old = _previous_run(out)
    assert geoloc_train(["run-start", "--out", str(out), "--data", str(tmp_path / "nosuch.csv")]) == 2
    assert "nosuch.csv: no such file or folder" in capsys.readouterr().err
    assert _unchanged(out, old) and not (tmp_path / "run.partial").exists()


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / ".installed").is_file() or shutil.which("make") is None,
                    reason="needs the project's .venv (make install) and make")
def test_make_demo_with_missing_data_keeps_the_previous_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old = _previous_run(out)
    env = {**os.environ, "GEOLOC_DATA": str(tmp_path / "nosuch.csv"), "GEOLOC_OUT": str(out)}
    result = subprocess.run(["make", "-C", str(ROOT), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "nosuch.csv: no such file or folder" in result.stderr
    assert _unchanged(out, old) and sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        Path(name).name for name in old)
