"""Configuration validation: every bad input names its key path and how to fix it."""

import pytest

from nuinfer import config
from nuinfer.exceptions import DataFileError, InvalidConfig, UnknownKey, UnphysicalInput


def test_defaults_are_paper_preset():
    a = config.load({"process": "eves", "models": ["V"]})
    c = a.cfg
    assert c["binning"] == {"lo": 0.1, "hi": 1e4, "n": 100, "scale": "log"}
    assert c["statistics"]["sigma_sys"] == 0.1 and c["statistics"]["sigma_bg"] == 0.1
    assert c["statistics"]["ndof"] == 2 and c["detector"]["quenching"] == "none"
    assert config.load({}).cfg["binning"]["hi"] == 100.0


@pytest.mark.parametrize("raw,exc,key", [
    ({"proces": "eves"}, UnknownKey, "proces"),
    ({"scan": {"m_X_MeV": {"lo": 10, "hi": 1, "n": 5}}}, UnphysicalInput, "scan.m_X_MeV.lo"),
    ({"scan": {"g_X": {"lo": -1, "hi": 1, "n": 5}}}, UnphysicalInput, "scan.g_X.lo"),
    ({"scan": {"g_X": {"lo": 1e-5, "hi": 1, "n": 1}}}, UnphysicalInput, "scan.g_X.n"),
    ({"exposure_tonne_year": 0}, UnphysicalInput, "exposure_tonne_year"),
    ({"exposure_tonne_year": "1"}, InvalidConfig, "exposure_tonne_year"),
    ({"models": ["Q"]}, InvalidConfig, "models[0]"),
    ({"sources": ["9B"]}, InvalidConfig, "sources[0]"),
    ({"sources": []}, InvalidConfig, "sources"),
    ({"binning": {"lo": 10, "hi": 1}}, UnphysicalInput, "binning.lo"),
    ({"binning": {"n": 0}}, UnphysicalInput, "binning.n"),
    ({"statistics": {"cl": 1.5}}, UnphysicalInput, "statistics.cl"),
    ({"statistics": {"ndof": 3}}, InvalidConfig, "statistics.ndof"),
    ({"statistics": {"statistic": "gauss"}}, InvalidConfig, "statistics.statistic"),
    ({"statistics": {"sigma_sys": -0.1}}, UnphysicalInput, "statistics.sigma_sys"),
    ({"detector": {"binding": "yes"}}, InvalidConfig, "detector.binding"),
    ({"process": "eves", "detector": {"quenching": "lindhard"}}, InvalidConfig, "detector.quenching"),
    ({"flux": {"override": {"8B": -1}}}, UnphysicalInput, "flux.override.8B"),
    ({"model": {"axial_form": "weird"}}, InvalidConfig, "model.axial_form"),
])
def test_bad_configs_name_the_key(raw, exc, key):
    with pytest.raises(exc) as info:
        config.load(raw)
    assert str(info.value).startswith(key)


def test_malformed_and_missing_files(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("process = \n")
    with pytest.raises(InvalidConfig, match="malformed TOML"):
        config.load(p)
    with pytest.raises(InvalidConfig, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_replace_and_overrides():
    a = config.load({"process": "eves", "models": ["V"]})
    b = a.replace(**{"statistics.sigma_sys": 0.0, "exposure_tonne_year": 20})
    assert b.cfg["statistics"]["sigma_sys"] == 0.0 and b.cfg["exposure_tonne_year"] == 20
    assert a.cfg["statistics"]["sigma_sys"] == 0.1
    with pytest.raises(UnknownKey):
        a.replace(**{"statistics.sigma_sis": 0.0})


@pytest.mark.parametrize("content,msg", [
    ("1 2\n2 1 3\n", ":2: expected 2 columns"),
    ("1 2\n0.5 1\n", ":2: first column must increase"),
    ("1 2\n2 -1\n", ":2: negative value"),
    ("1 2\n2 nan\n", ":2: NaN or inf"),
    ("1 2\n2 x\n", ":2: non-numeric"),
    ("# only a comment\n", "no data rows"),
])
def test_user_tables_name_file_and_line(tmp_path, content, msg):
    p = tmp_path / "t.txt"
    p.write_text(content)
    with pytest.raises(DataFileError, match=msg):
        config.load_table(p, "flux.tables.x")
    with pytest.raises(DataFileError, match="cannot read"):
        config.load_table(tmp_path / "missing.txt", "x")


def test_presets_all_validate():
    from pathlib import Path
    d = Path(__file__).resolve().parents[1] / "models"
    paths = sorted(d.glob("fig*.toml")) + sorted(d.glob("bayes*.toml"))
    assert len(paths) >= 9
    for p in paths:  # analysis presets (floor and terrestrial presets have their own schemas and tests)
        a = config.load(p)
        assert a.models, p


def test_user_flux_table_and_override_reach_the_forward_model(tmp_path):
    # a user table (E [MeV], dPhi/dE) for a nu_e source, normalised to a given total flux
    E = [1.0, 5.0, 10.0, 15.0, 20.0]
    (tmp_path / "flux.txt").write_text("".join(f"{e} {1.0}\n" for e in E))
    raw = {"process": "cevns", "sources": ["mysrc"],
           "flux": {"tables": {"mysrc": {"path": "flux.txt", "flux": 1e6}}}}
    p = tmp_path / "a.toml"
    p.write_text('process = "cevns"\nsources = ["mysrc"]\n[flux.tables.mysrc]\npath = "flux.txt"\nflux = 1e6\n')
    a = config.load(p)
    n1 = float(a.forward_model().sm_spectrum()["total"].sum())
    raw["flux"]["tables"]["mysrc"]["flux"] = 2e6
    p.write_text(p.read_text().replace("1e6", "2e6"))
    n2 = float(config.load(p).forward_model().sm_spectrum()["total"].sum())
    assert n1 > 0 and n2 == pytest.approx(2 * n1, rel=1e-9)
    # a preset override changes one source only
    b = config.load({"process": "cevns", "sources": ["8B"], "flux": {"override": {"8B": 5.46e6}}})
    c = config.load({"process": "cevns", "sources": ["8B"]})
    r = float(b.forward_model().sm_spectrum()["total"].sum()) / float(c.forward_model().sm_spectrum()["total"].sum())
    assert r == pytest.approx(5.46 / 5.29, rel=1e-9)
