"""`make test` finds ../shared without GEOLOC_SHARED (issue #8 item 6)."""

import tests.conftest as conftest


def test_shared_defaults_to_the_folder_beside_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "checkout").mkdir()
    monkeypatch.setattr(conftest, "ROOT", tmp_path / "checkout")
    monkeypatch.delenv("GEOLOC_SHARED", raising=False)
    assert conftest.shared_dir() is None
    (tmp_path / "shared").mkdir()
    assert conftest.shared_dir() == tmp_path / "shared"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("GEOLOC_SHARED", str(tmp_path / "elsewhere"))
    assert conftest.shared_dir() == tmp_path / "elsewhere"
