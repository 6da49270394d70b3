"""NetCDF I/O: atomic writes, attribute sanitising, round trips, provenance."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import nuinfer
from nuinfer.exceptions import DataFileError, InvalidConfig
from nuinfer.io import provenance_attrs, read_datatree, read_netcdf, sanitize_attrs, write_netcdf


@pytest.fixture
def dataset():
    return xr.Dataset(
        {"x": (("m_X", "g_X"), np.arange(6.0).reshape(2, 3), {"units": "1", "flag": True}),
         "ok": (("m_X",), np.array([True, False]))},
        coords={"m_X": ("m_X", [1.0, 2.0], {"units": "MeV"}), "g_X": [0.1, 0.2, 0.3]},
        attrs={"name": "scan", "n": 3, "none": None, "cfg": {"b": [1, 2], "a": "x"},
               "path": Path("/tmp/a.nc"), "np_float": np.float64(0.5), "flag": np.bool_(True)},
    )


def test_round_trip_with_sanitised_attrs(dataset, tmp_path):
    path = write_netcdf(dataset, tmp_path / "out.nc")
    back = read_netcdf(path)
    assert back.attrs["none"] == "" and back.attrs["flag"] == 1
    assert json.loads(back.attrs["cfg"]) == {"a": "x", "b": [1, 2]}
    assert back.attrs["path"] == "/tmp/a.nc" and back["x"].attrs["flag"] == 1
    assert back["ok"].dtype == bool
    expected = dataset.copy()
    expected.attrs = sanitize_attrs(dataset.attrs)
    expected["x"].attrs = sanitize_attrs(dataset["x"].attrs)
    xr.testing.assert_identical(back, expected)
    assert dataset.attrs["none"] is None  # the input is not modified


def test_read_closes_the_file(dataset, tmp_path):
    path = write_netcdf(dataset, tmp_path / "out.nc")
    first = read_netcdf(path)
    write_netcdf(dataset.assign(x=dataset["x"] * 2), path)  # replace while `first` is alive
    assert float(read_netcdf(path)["x"].sum()) == 2 * float(first["x"].sum())


def test_datatree_round_trip(dataset, tmp_path):
    tree = xr.DataTree.from_dict({
        "/": xr.Dataset(attrs={"seed": 42, "config_json": {"k": 1}}),
        "/posterior": xr.Dataset({"log10_g_X": (("chain", "draw"), np.zeros((2, 4)))}),
        "/scan": dataset,
    })
    path = write_netcdf(tree, tmp_path / "tree.nc")
    back = read_datatree(path)
    assert back.attrs["config_json"] == '{"k": 1}'
    assert back["posterior"]["log10_g_X"].shape == (2, 4)
    assert read_netcdf(path, group="scan").attrs["none"] == ""


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_failed_write_keeps_previous_file_and_no_temp(dataset, tmp_path, monkeypatch, exc):
    path = tmp_path / "out.nc"
    write_netcdf(dataset, path)
    before = path.read_bytes()
    real = xr.Dataset.to_netcdf

    def half_then_fail(self, target, *args, **kwargs):
        real(self, target, *args, **kwargs)  # a complete temporary file exists...
        with open(target, "r+b") as fh:  # ...is being corrupted mid-way...
            fh.truncate(100)
        raise exc("disk full")  # ...and the write dies

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_then_fail)
    with pytest.raises(exc):
        write_netcdf(dataset.assign(x=dataset["x"] + 1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]
    assert float(read_netcdf(path)["x"].sum()) == float(dataset["x"].sum())


def test_new_file_has_normal_permissions(dataset, tmp_path):
    path = write_netcdf(dataset, tmp_path / "out.nc")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_errors(dataset, tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        write_netcdf(dataset, tmp_path / "missing" / "out.nc")
    with pytest.raises(DataFileError, match="does not exist"):
        read_netcdf(tmp_path / "nope.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(DataFileError, match="cannot read"):
        read_netcdf(tmp_path / "junk.nc")
    bad = dataset.copy()
    bad.attrs["obj"] = object()
    with pytest.raises(InvalidConfig, match="obj"):
        write_netcdf(bad, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == [tmp_path / "junk.nc"]  # nothing half-written
    with pytest.raises(InvalidConfig, match="Dataset"):
        write_netcdf({"x": 1}, tmp_path / "out.nc")


def test_provenance_attrs(tmp_path):
    attrs = provenance_attrs({"scan": {"n": 3}, "out": Path("x.nc")}, seed=7)
    assert attrs["creation_library"] == "nuinfer"
    assert attrs["nuinfer_version"] == nuinfer.__version__
    assert attrs["numpy_version"] == np.__version__ and attrs["xarray_version"] == xr.__version__
    assert attrs["scipy_version"] and attrs["iminuit_version"]
    created = dt.datetime.fromisoformat(attrs["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60
    assert json.loads(attrs["config_json"]) == {"out": "x.nc", "scan": {"n": 3}}
    assert attrs["seed"] == 7
    assert all(isinstance(v, (str, int, float)) for v in attrs.values())
    empty = provenance_attrs()
    assert empty["config_json"] == "" and empty["seed"] == ""
    ds = xr.Dataset(attrs=attrs)
    xr.testing.assert_identical(read_netcdf(write_netcdf(ds, tmp_path / "p.nc")), ds)
    with pytest.raises(InvalidConfig, match="seed"):
        provenance_attrs(seed=1.5)
