import json

import numpy as np
import pytest

from locator.cli import main as geoloc
from locator.geo import haversine_km
from locator.metrics import FAILURE_ERROR_KM, THRESHOLDS_KM, geolocation_metrics, markdown_table


def test_thresholds_are_the_papers():
    assert THRESHOLDS_KM == (0.1, 1, 5, 10, 25, 200, 750, 2500)


def test_accuracy_uses_strict_less_than_and_counts_failures_as_misses():
    true_lat, true_lon = np.zeros(4), np.zeros(4)
    pred_lat = np.array([0.0, 0.0, 0.0, np.nan])
    pred_lon = np.array([0.0, 0.5, 3.0, np.nan])
    exact = float(haversine_km(0, 0, 0, 0.5))
    metrics = geolocation_metrics(true_lat, true_lon, pred_lat, pred_lon, thresholds=(exact, exact + 1e-6))
    assert metrics.images == 4 and metrics.failed == 1
    assert metrics.accuracy == {f"{exact:g} km": 0.25, f"{exact + 1e-6:g} km": 0.5}


def test_median_and_mean_against_direct_numpy():
    rng = np.random.default_rng(0)
    t_lat, t_lon = rng.uniform(-60, 60, 101), rng.uniform(-180, 180, 101)
    p_lat, p_lon = rng.uniform(-60, 60, 101), rng.uniform(-180, 180, 101)
    p_lat[7] = np.nan
    errors = 6371.0 * 2 * np.arcsin(np.sqrt(np.sin(np.radians(p_lat - t_lat) / 2) ** 2 + np.cos(np.radians(t_lat))
                                            * np.cos(np.radians(p_lat)) * np.sin(np.radians(p_lon - t_lon) / 2) ** 2))
    errors[7] = FAILURE_ERROR_KM
    metrics = geolocation_metrics(t_lat, t_lon, p_lat, p_lon)
    assert metrics.median_km == pytest.approx(np.median(errors))
    assert metrics.mean_km == pytest.approx(np.mean(errors))
    assert metrics.accuracy["2500 km"] == pytest.approx(np.sum(errors < 2500) / 101)
    table = markdown_table([metrics])
    assert table.splitlines()[0].startswith("| method | Acc@0.1 km | Acc@1 km |")


def test_evaluate_cli(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("IMG_ID,AUTHOR,LAT,LON\na/1.jpg,u,10,10\na/2.jpg,u,20,20\na/3.jpg,v,-5,100\n")
    preds = tmp_path / "preds.csv"
    preds.write_text("image,lat,lon\n/photos/a/1.jpg,10,10.001\n2.jpg,,\nnot-in-truth.jpg,1,1\n")
    out = tmp_path / "m.json"
    assert geoloc(["evaluate", "--predictions", str(preds), "--truth", str(truth), "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "| preds.csv | 0.0 | 33.3 |" in printed.out
    assert "1 prediction(s) match no image" in printed.err
    data = json.loads(out.read_text())["rows"][0]
    assert data["images"] == 3 and data["failed"] == 2
    assert data["accuracy"]["1 km"] == pytest.approx(1 / 3)


def test_evaluate_cli_bad_input_is_one_clear_error(tmp_path, capsys):
    preds = tmp_path / "preds.csv"
    preds.write_text("file,latitude\nx,1\n")
    truth = tmp_path / "t.csv"
    truth.write_text("image,lat,lon\nx.jpg,1,2\n")
    assert geoloc(["evaluate", "--predictions", str(preds), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert "preds.csv: missing column(s) image, lat, lon" in err and "Traceback" not in err
