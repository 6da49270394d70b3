"""Configuration validation: every bad input names its key path and how to fix it."""

import json
from pathlib import Path

import pytest

from nuinfer import spec
from nuinfer.spec import xenon as config
from nuinfer.exceptions import ConfigError, DataFileError, InvalidConfig, UnknownKey, UnphysicalInput


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
    ({"statistics": {"sigma_sys": None}}, InvalidConfig, "statistics.sigma_sys"),  # null only where unset is allowed
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
    for p in paths:  # xenon presets (floor and terrestrial presets: their own loaders and tests)
        a = config.load(p)
        assert a.models, p
        # what a result file stores (config_json, nulls for settings left unset) loads back the same
        again = config.load(json.loads(a.to_json()))
        assert again.to_json() == a.to_json(), p


def test_user_flux_table_and_override_reach_the_forward_model(tmp_path):
    # a user table (E [MeV], dPhi/dE) for a nu_e source, normalised to a given total flux
    E = [1.0, 5.0, 10.0, 15.0, 20.0]
    (tmp_path / "flux.txt").write_text("".join(f"{e} {1.0}\n" for e in E))
    raw = {"process": "cevns", "sources": ["mysrc"],
           "flux": {"tables": {"mysrc": {"path": "flux.txt", "flux": 1e6}}}}
    p = tmp_path / "a.toml"
    p.write_text('[experiment]\nprocess = "cevns"\nsources = ["mysrc"]\n'
                 '[experiment.flux.tables.mysrc]\npath = "flux.txt"\nflux = 1e6\n')
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


# --------------------------------------------------------------------------------------------
# the one analysis-file schema (nuinfer.spec; docs/analysis-files.md)
# --------------------------------------------------------------------------------------------
MODELS = Path(__file__).resolve().parents[1] / "models"


def _family_of_preset(name: str) -> str:
    if name.startswith(("fig", "bayes")):
        return "xenon"
    if name.startswith(("coherent", "dresden")):
        return "terrestrial"
    if name.startswith("xenonnt"):
        return "xenonnt"
    assert name.startswith("floor"), name
    return "floor"


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_preset_reads_through_the_schema(path):
    fam, low = spec.read(path)
    assert fam == _family_of_preset(path.stem)
    assert low["name"] == path.stem


def test_schema_covers_every_preset_family():
    fams = {spec.read(p)[0] for p in MODELS.glob("*.toml")}
    assert fams == set(spec.FAMILIES) == {"xenon", "xenonnt", "terrestrial", "floor"}


def test_file_layout_dict_equals_internal_dict():
    file_layout = {"experiment": {"process": "eves", "exposure_tonne_year": 2.0, "binning": {"n": 40}},
                   "signal": {"models": ["V"], "scan": {"g_X": {"lo": 1e-8, "hi": 1e-2, "n": 10}}},
                   "backgrounds": {"sigma_bg": 0.2}, "nuisances": {"sigma_sys": 0.05},
                   "statistics": {"cl": 0.95}}
    internal = {"process": "eves", "exposure_tonne_year": 2.0, "binning": {"n": 40}, "models": ["V"],
                "scan": {"g_X": {"lo": 1e-8, "hi": 1e-2, "n": 10}},
                "statistics": {"sigma_bg": 0.2, "sigma_sys": 0.05, "cl": 0.95}}
    assert config.load(file_layout).cfg == config.load(internal).cfg


def _cli_error(tmp_path, capsys, text: str, command: str = "inspect") -> str:
    from nuinfer.cli import main
    p = tmp_path / "analysis.toml"
    p.write_text(text)
    assert main([command, str(p)]) == 2
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert out == "" and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_old_layout_top_level_key_is_rejected(tmp_path, capsys):
    with pytest.raises(UnknownKey) as info:
        config.load(_write(tmp_path, 'process = "eves"\n'))
    assert str(info.value).startswith("process")
    assert "docs/analysis-files.md" in str(info.value)
    line = _cli_error(tmp_path, capsys, 'process = "eves"\n')
    assert "process" in line and "docs/analysis-files.md" in line


def test_sigma_sys_under_statistics_points_to_nuisances(tmp_path, capsys):
    text = '[experiment]\nprocess = "eves"\n[statistics]\nsigma_sys = 0.2\n'
    with pytest.raises(UnknownKey) as info:
        config.load(_write(tmp_path, text))
    assert str(info.value).startswith("statistics.sigma_sys") and "nuisances.sigma_sys" in str(info.value)
    line = _cli_error(tmp_path, capsys, text)
    assert "statistics.sigma_sys" in line and "nuisances.sigma_sys" in line


def _write(tmp_path, text: str, name: str = "analysis.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_deep_errors_name_the_file_key_path(tmp_path, capsys):
    from nuinfer.tasks import floor as floor
    from nuinfer.spec import terrestrial as terrestrial_config
    # xenon: a negative nuisance width
    with pytest.raises(UnphysicalInput) as info:
        config.load(_write(tmp_path, "[nuisances]\nsigma_sys = -0.1\n"))
    assert str(info.value).startswith("nuisances.sigma_sys")
    assert "nuisances.sigma_sys" in _cli_error(tmp_path, capsys, "[nuisances]\nsigma_sys = -0.1\n")
    # terrestrial: the live time missing from [experiment]
    text = "\n".join(ln for ln in (MODELS / "dresden2_asimov.toml").read_text().splitlines()
                     if not ln.startswith("live_days"))
    with pytest.raises(InvalidConfig) as info:
        terrestrial_config.load(_write(tmp_path, text, "dresden.toml"))
    assert str(info.value).startswith("experiment.live_days")
    assert "experiment.live_days" in _cli_error(tmp_path, capsys, text)
    # floor: a discovery fraction outside (0, 1)
    text = (MODELS / "floor_xenon.toml").read_text().replace("fraction = 0.9", "fraction = 2", 1)
    assert "fraction = 2" in text
    with pytest.raises(UnphysicalInput) as info:
        floor.load_floor_config(_write(tmp_path, text, "floor.toml"))
    assert str(info.value).startswith("floor.discovery.fraction")
    assert "floor.discovery.fraction" in _cli_error(tmp_path, capsys, text)


def test_command_refuses_a_file_of_another_family(capsys):
    from nuinfer.cli import main
    assert main(["profile", str(MODELS / "fig2_cevns.toml")]) == 2
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert out == "" and len(lines) == 1, err
    assert "xenon" in lines[0] and "not 'profile'" in lines[0]
    for task in spec.TASKS["xenon"]:
        assert task in lines[0]


def test_one_load_for_every_family_gives_one_analysis_type():
    import nuinfer
    for name, fam in (("fig2_cevns", "xenon"), ("dresden2_asimov", "terrestrial"), ("floor_xenon", "floor"),
                      ("xenonnt_sr0_er", "xenonnt")):
        a = nuinfer.load(MODELS / f"{name}.toml")
        assert isinstance(a, spec.Analysis) and a.family == fam and a.name == name
        assert set(a.tasks) <= set(spec.TASKS[fam]) and "inspect" in a.tasks
    # overrides use the file's keys; errors name them
    a = nuinfer.load(MODELS / "fig2_eves.toml", {"nuisances.sigma_sys": 0.3})
    assert a.cfg["statistics"]["sigma_sys"] == 0.3 and a.forward_model().binning.nbins == 100
    with pytest.raises(ConfigError, match="nuisances.sigma_sys"):
        nuinfer.load(MODELS / "fig2_eves.toml", {"nuisances.sigma_sys": -1.0})
