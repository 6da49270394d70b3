"""The commands of ``nuinfer``: one function per task, each accepting every analysis family for
which the task makes sense (:mod:`nuinfer.spec`) and refusing the others with a one-line message.

Every command validates everything before any work: the analysis file, the options, a memory
estimate of the largest arrays (:mod:`nuinfer.spec.limits`) and its output paths
(:func:`nuinfer.io.check_writable`; the default ``outputs/`` is created, a missing folder given
with ``-o`` is not).  The outputs of one command are then written together
(:func:`nuinfer.io.output_group`: all replaced at the end, or none; the lock of every output is
held for the whole run, so a second run writing the same file fails at once).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from nuinfer import io, spec
from nuinfer.exceptions import ConfigError, InvalidConfig
from nuinfer.spec.limits import estimate_floor, estimate_terrestrial, estimate_xenon, require_memory

_OUT_KEY = "--output-file"


def _out_path(args, default: str) -> Path:
    """The NetCDF output of a command, checked before any work (the default folder is created)."""
    given = getattr(args, "output_file", None)
    p = Path(given or default)
    if p.suffix != ".nc":
        raise ConfigError(f"output file {str(p)!r} must end in .nc", key=_OUT_KEY)
    io.check_writable(p, key=_OUT_KEY, create_parent=not given)
    return p


def _outdir(path, given: bool, key: str = "--outdir") -> Path:
    """An output folder: must be a directory (created if it is the default, or if its parent exists)."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{str(d)!r} is not a directory; give a folder", key=key)
    parent = d.parent if str(d.parent) else Path(".")
    io.check_writable(d / "report.md", key=key, create_parent=not given or d.exists() or parent.is_dir())
    return d


def _with(out: Path, *suffixes: str) -> list[Path]:
    """``out`` and the files next to it: ``".png"`` replaces the suffix, ``"_g90.csv"`` extends the stem."""
    paths = [out]
    for s in suffixes:
        paths.append(out.with_suffix(s) if s.startswith(".") else out.with_name(out.stem + s))
    return paths


@contextlib.contextmanager
def _group(paths):
    """Write the outputs of one command together (locks held for the whole block)."""
    with io.output_group(paths, key=_OUT_KEY, check=False):
        yield


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    print(f"nuinfer: warning: {msg}", file=sys.stderr, flush=True)


def _print(res) -> int:
    # keys in the order the tasks build them (masses in numeric order, not sorted as text)
    print(json.dumps(res, indent=2, default=str))
    return 0


# ----------------------------------------------------------------------------- family helpers
def _xenon(path, overrides=None):
    from nuinfer.spec import xenon as config
    return config.load(path, overrides)


def _xenon_memory(ana, command: str) -> None:
    with spec.translated(ana.family):
        require_memory(estimate_xenon(ana.cfg, command))


def _terrestrial(path, data_dir, command: str, preset: bool = False, overrides: dict | None = None):
    from nuinfer.spec import terrestrial as tcfg
    from nuinfer.spec.terrestrial import _check_reference as check_reference
    ana = tcfg.load(path, overrides or None, data_dir=data_dir)
    with spec.translated(ana.family):
        require_memory(estimate_terrestrial(ana.cfg, command))
        for va in ana.variants().values():  # variants are validated here, before any work
            require_memory(estimate_terrestrial(va.cfg, command))
            va.quenching()    # user tables read and checked now, not after the fit
            va.efficiency()
            va.background()
            check_reference(va)  # read only at the end of a fit: checked now
    return ana


def _terrestrial_outputs(ana, out: Path, extra_variants=()) -> list[Path]:
    """The NetCDF and every figure ``run_fit`` may write next to it."""
    stem = str(out.with_suffix(""))
    names = list(ana.cfg["variants"] or ["nominal"]) + list(extra_variants)
    paths = [out] + [Path(f"{stem}_{v}_spectrum.png") for v in names]
    paths += [Path(f"{stem}{s}.png") for s in ("_sin2w", "_sin2w_summary", "_regions")]
    return paths


def _terrestrial_tasks(ana, given, key: str) -> list[str] | None:
    """Check ``--task``/``--model`` names against the analysis (canonical model names)."""
    if not given:
        return None
    from nuinfer.physics.mediators import canonical_model
    out = []
    for t in given:
        name = t
        if t not in ("sin2w", "dipole", "ngi"):
            try:
                name = canonical_model(t)
            except InvalidConfig:
                name = None
        if name is None or name not in ana.tasks:
            raise ConfigError(f"{t!r} is not a task of {ana.name}; its tasks are {', '.join(ana.tasks)} "
                              "(signal.models)", key=key)
        out.append(name)
    return out


# ----------------------------------------------------------------------------- commands
def cmd_inspect(args) -> int:
    fam = _family(args, "inspect")
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        ana = _terrestrial(args.analysis, args.data_dir, "inspect")
        models = tw.Models(ana)
        sm = models.sm_signal()
        return _print({"name": ana.name, "family": fam, "tasks": ana.tasks, "supports": list(spec.TASKS[fam]),
                       "target": ana.cfg["detector"]["target"], "bins": int(sm.size),
                       "binning_units": ana.cfg["binning"]["units"], "sm_total": float(sm.sum())})
    if fam == "xenonnt":
        from nuinfer.tasks import xenonnt
        return _print(xenonnt.inspect(args.analysis))
    if fam == "floor":
        from nuinfer.tasks import floor as floor
        cfg = floor.load_floor_config(args.analysis)
        with spec.translated(fam):
            require_memory(estimate_floor(cfg))
        fm = floor.forward_model(cfg)
        sm = fm.sm_spectrum()
        return _print({"name": cfg["name"], "family": fam, "supports": list(spec.TASKS[fam]),
                       "scenarios": list(cfg["scenarios"]),
                       "sm_counts_per_tonne_year_per_source": {str(s): float(v) for s, v in
                                                               sm["counts"].sum("bin").to_series().items()},
                       "sm_total_per_tonne_year": float(sm["total"].sum())})
    ana = _xenon(args.analysis)
    _xenon_memory(ana, "inspect")
    fm = ana.forward_model()
    sm = fm.sm_spectrum()
    summary = {
        "name": ana.name,
        "family": fam,
        "supports": list(spec.TASKS[fam]),
        "process": ana.process,
        "models": ana.models,
        "target": fm.target.name,
        "exposure_tonne_year": fm.exposure_tonne_year,
        "bins": [float(fm.binning.edges[0]), float(fm.binning.edges[-1]), fm.binning.nbins],
        "sm_counts_per_source": {str(s): float(v) for s, v in sm["counts"].sum("bin").to_series().items()},
        "sm_total": float(sm["total"].sum()),
    }
    return _print(summary)


def cmd_spectrum(args) -> int:
    if _family(args, "spectrum") == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        ana = _terrestrial(args.analysis, args.data_dir, "spectrum")
        out = _out_path(args, "outputs/spectrum.nc")
        with _group(_terrestrial_outputs(ana, out)):
            res = tw.run_fit(ana, out, tasks=[], plot=not args.no_plot, quiet=args.quiet)
        return _print(res)
    from nuinfer.tasks import xenon as _xenon_tasks
    ana = _xenon(args.analysis)
    _xenon_memory(ana, "spectrum")
    out = _out_path(args, "outputs/spectrum.nc")
    with _group(_with(out, ".png")):
        ds, png = _xenon_tasks.run_spectrum(ana, out, plot=not args.no_plot, quiet=args.quiet)
    totals = {m: float(ds["total_model"].sel(model=m).sum()) for m in ds["model"].values}
    return _print({"output": str(out), "plot": str(png) if png else None,
                   "sm_total": float(ds["total"].sum()), "model_totals": totals})


def _g90_upper_bounds(res: dict) -> None:
    """Say on stderr which g90 values equal the smallest grid coupling (flags from run_contour)."""
    notes = []
    for mo, flags in res.get("g90_upper_bound", {}).items():
        bad = [k for k, v in flags["reference_masses"].items() if v]
        if bad:
            notes.append(f"{mo}: g90 at m_X = {', '.join(bad)} MeV equals the smallest grid coupling, so it is "
                         "only an upper bound on the limit; lower signal.scan.g_X.lo")
    if notes:
        res["notes"] = notes
        for n in notes:
            _warn(n)


#: the toy options of ``contour`` (xenon analyses, with ``--calibrate toys``)
_TOY_OPTIONS = ("--toys", "--mode", "--nuisances", "--seed", "--scheduler", "--workers", "--coverage")
#: options whose use depends on the analysis family: command -> family -> the options it takes; a
#: family not listed (or an option not in its list) refuses an option another family takes
_FAMILY_OPTIONS = {
    "inspect": {"terrestrial": ("--data-dir",)},
    "spectrum": {"terrestrial": ("--data-dir",)},
    "profile": {"terrestrial": ("--data-dir",)},
    "contour": {"xenon": ("--statistic", "--profiler", "--ndof", "--grid", "--calibrate") + _TOY_OPTIONS,
                "xenonnt": ("--statistic", "--ndof", "--grid"),
                "terrestrial": ("--statistic", "--ndof", "--grid", "--data-dir")},
    "sample": {"xenon": ("--walkers", "--steps", "--seed", "--resume", "--data", "--prior-check"),
               "xenonnt": ("--walkers", "--steps", "--seed"),
               "terrestrial": ("--walkers", "--steps", "--seed", "--data-dir")},
}
#: command-line options of ``contour`` that override a key of the analysis file (internal key, the
#: same in every family that takes the option)
_OPTION_KEYS = {"--statistic": "statistics.statistic", "--profiler": "statistics.profiler",
                "--ndof": "statistics.ndof"}


def _dest(option: str) -> str:
    """The argparse attribute of ``--some-option``."""
    return option[2:].replace("-", "_")


def _given(args, option: str) -> bool:
    """Whether ``option`` was set on the command line (its value differs from the parser's default)."""
    dest = _dest(option)
    return hasattr(args, dest) and getattr(args, dest) != args._parser.get_default(dest)


def _family(args, command: str) -> str:
    """The family of the analysis file (``spec.require``), after refusing -- one line, exit 2, before
    any work -- an option the family does not use: never ignored silently."""
    fam = spec.require(args.analysis, command)
    per_family = _FAMILY_OPTIONS.get(command, {})
    takes = per_family.get(fam, ())
    for opt in dict.fromkeys(o for opts in per_family.values() for o in opts):
        if not _given(args, opt) or opt in takes:
            continue
        users = [f for f, opts in per_family.items() if opt in opts]
        raise ConfigError(f"not used for {fam} analyses (only for {', '.join(users)}); drop it", key=opt)
    if command == "contour" and fam == "xenon" and args.calibrate != "toys":
        for opt in _TOY_OPTIONS:
            if _given(args, opt):
                raise ConfigError("applies only with --calibrate toys; add that or drop it", key=opt)
    return fam


def _file_overrides(args, fam: str) -> dict:
    """The options of ``contour`` given, as overrides of the analysis file's keys (the grid's under
    ``signal.scan`` in xenonnt files, ``scan`` in the others)."""
    over = {key: getattr(args, _dest(opt)) for opt, key in _OPTION_KEYS.items() if _given(args, opt)}
    if args.grid is not None:
        scan = "signal.scan" if fam == "xenonnt" else "scan"
        over.update({f"{scan}.m_X_MeV.n": args.grid, f"{scan}.g_X.n": args.grid})
    return over


def _option_of(over: dict) -> dict:
    """``{file key: option}`` of overrides from :func:`_file_overrides`."""
    names = {k: o for o, k in _OPTION_KEYS.items()}
    return {k: names.get(k, "--grid") for k in over}


@contextlib.contextmanager
def _as_option(keys: dict):
    """A validation error of a file key that a command-line option set (``keys``: file key ->
    option) is raised naming the option instead."""
    try:
        yield
    except ConfigError as exc:
        opt = next((o for k, o in keys.items() if (exc.key or "").endswith(k)), None)
        if opt is None:
            raise
        raise ConfigError(str(exc).split(": ", 1)[-1], key=opt) from None


def cmd_contour(args) -> int:
    fam = _family(args, "contour")
    if fam in ("xenonnt", "terrestrial"):
        over = _file_overrides(args, fam)
    if fam == "xenonnt":
        from nuinfer.tasks import xenonnt
        with _as_option(_option_of(over)):
            cfg = spec.load_xenonnt(args.analysis, over)  # validate the file and options before any work
        models = None
        if args.model:
            from nuinfer.physics.mediators import canonical_model
            try:
                models = [canonical_model(args.model)]
            except InvalidConfig as exc:
                raise ConfigError(str(exc).split(": ", 1)[-1], key="--model") from None
        out = _out_path(args, "outputs/scan.nc")
        with _group(_with(out, ".png")):
            res = xenonnt.run_contour(cfg, out, models=models, plot=not args.no_plot, quiet=args.quiet)
        return _print(res)
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        with _as_option(_option_of(over)):
            ana = _terrestrial(args.analysis, args.data_dir, "contour", overrides=over)
        tasks = [t for t in ana.tasks if t != "sin2w"]
        if args.model:
            tasks = _terrestrial_tasks(ana, [args.model], "--model")
        if not tasks:
            raise ConfigError(f"{args.analysis} has no (m_X, g_X) task; its tasks are {ana.tasks} "
                              "(use `nuinfer profile` for sin2w)", key="signal.models")
        out = _out_path(args, "outputs/scan.nc")
        with _group(_terrestrial_outputs(ana, out)):
            res = tw.run_fit(ana, out, tasks=tasks, plot=not args.no_plot, quiet=args.quiet)
        return _print(res)
    from nuinfer.tasks import xenon as _xenon_tasks
    overrides = _file_overrides(args, fam)
    if args.model:
        from nuinfer.physics.mediators import canonical_model
        try:
            overrides["models"] = [canonical_model(args.model)]
        except InvalidConfig as exc:
            raise ConfigError(str(exc).split(": ", 1)[-1], key="--model") from None
    ana = _xenon(args.analysis, overrides)
    _xenon_memory(ana, "contour")
    out = _out_path(args, "outputs/scan.nc")
    if args.calibrate == "toys":
        from nuinfer.engine import check_scheduler
        from nuinfer.spec.limits import check_seed
        from nuinfer.tasks.calibrated import run_calibrated_contour
        if not 10 <= args.toys <= 10**6:
            raise ConfigError(f"needs 10 to 1e6 toys per tested point, got {args.toys}", key="--toys")
        sched = args.scheduler if args.scheduler is not None else ana.cfg["statistics"].get("scheduler")
        if sched is not None:
            check_scheduler(sched, key="--scheduler" if args.scheduler is not None else "statistics.scheduler")
        if args.workers is not None and not 1 <= args.workers <= 256:
            raise ConfigError(f"must be 1 to 256, got {args.workers}", key="--workers")
        seed = 1 if args.seed is None else check_seed(args.seed, "--seed")
        with _group([out]):
            res = run_calibrated_contour(ana, out, model=args.model, n_toys=args.toys, mode=args.mode,
                                         nuisances=args.nuisances, seed=seed, scheduler=sched,
                                         n_workers=args.workers, coverage=args.coverage, progress=not args.quiet)
        return _print(res)
    from nuinfer.render import Renderer
    with _group(_with(out, ".png")), Renderer(parallel=None if not args.no_plot else False) as figures:
        res = _xenon_tasks.run_contour(ana, out, plot=not args.no_plot, quiet=args.quiet, figures=figures)
    _g90_upper_bounds(res)
    return _print(res)


def cmd_sample(args) -> int:
    fam = _family(args, "sample")
    if fam == "xenonnt":
        from nuinfer.spec.limits import check_seed
        from nuinfer.tasks import xenonnt
        cfg = spec.load_xenonnt(args.analysis)  # validate the file before any work
        seed = 1 if args.seed is None else check_seed(args.seed, "--seed")
        out = _out_path(args, "outputs/posterior.nc")
        # the file has no [posterior] table: the sampler's checks name the options
        with _group([out]), _as_option({"posterior.walkers": "--walkers", "posterior.steps": "--steps"}):
            res = xenonnt.run_sample(cfg, out, model=args.model, walkers=args.walkers or 32,
                                     steps=args.steps or 2000, seed=seed, quiet=args.quiet)
        return _print(res)
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        from nuinfer.spec.limits import estimate_sample
        ana = _terrestrial(args.analysis, args.data_dir, "sample")
        task = None
        if args.model:
            from nuinfer.spec.terrestrial import _tasks
            if args.model not in _tasks() + ("ngi",):
                raise ConfigError(f"unknown task {args.model!r}; choose from {', '.join(_tasks())}", key="--model")
            task = args.model
        p = ana.cfg["posterior"]
        require_memory(estimate_sample(args.walkers or p["walkers"], args.steps or p["steps"], 8, "--steps"))
        out = _out_path(args, "outputs/posterior.nc")
        with _group([out]):
            res = tw.run_posterior(ana, out, task=task, walkers=args.walkers, steps=args.steps, seed=args.seed,
                                   quiet=args.quiet)
        return _print(res)
    from nuinfer.tasks import bayes as bayes
    overrides = {}
    for k in ("walkers", "steps", "seed"):
        if getattr(args, k) is not None:
            overrides[f"posterior.{k}"] = getattr(args, k)
    ana = _xenon(args.analysis)
    try:
        checked = ana.replace(**overrides)
    except ConfigError as exc:  # an option conflicting with the file (e.g. thin > --steps)
        raise ConfigError(f"{exc} (with the command-line options)", key=None) from None
    _xenon_memory(checked, "sample")
    out = _out_path(args, "outputs/posterior.nc")
    if args.data is not None:
        from nuinfer.spec.xenon import load_counts
        load_counts(Path(args.data), checked.forward_model().binning.nbins, key="--data")
    if args.prior_check is not None:
        if not (0 < args.prior_check <= 3):
            raise ConfigError(f"the prior-bound shift must be in (0, 3] decades, got {args.prior_check}",
                              key="--prior-check")
        res = bayes.prior_check(ana, shift_dex=args.prior_check, model=args.model, walkers=args.walkers,
                                steps=args.steps, seed=args.seed, outdir=None, progress=not args.quiet)
        return _print(res)
    # the lock of the file is held from the resume read to the final write: two concurrent
    # `--resume` runs cannot both succeed
    with _group([out]):
        res = bayes.run_sample(ana, out, walkers=args.walkers, steps=args.steps, seed=args.seed,
                               resume=args.resume, progress=not args.quiet, model=args.model, data=args.data)
    return _print(res)


def cmd_plot(args) -> int:
    from nuinfer.tasks import bayes as bayes
    post = Path(args.posterior)
    if not post.is_file():
        raise ConfigError(f"posterior file {str(post)!r} not found; write it with `nuinfer sample`", key="posterior")
    base = Path(args.outdir) if args.outdir else post.parent
    if args.outdir:
        _outdir(base, True)
    stem = base / post.stem
    members = [stem.with_name(stem.name + s) for s in ("_corner.png", "_mass_coupling.png", "_g90.csv", "_g90.md")]
    for m in members:
        io.check_writable(m, key="--outdir" if args.outdir else "posterior")
    with _group(members):
        res = bayes.run_plot(args.posterior, outdir=args.outdir)
    return _print(res)


def cmd_compare(args) -> int:
    spec.require(args.analysis, "compare")
    from nuinfer.tasks import paper as workflows
    overrides = {}
    if args.grid is not None:
        overrides = {"scan.m_X_MeV.n": args.grid, "scan.g_X.n": args.grid}
    ana = _xenon(args.analysis, overrides)
    _xenon_memory(ana, "compare")
    out = _out_path(args, "outputs/compare.nc")
    sched = args.scheduler if args.scheduler is not None else ana.cfg["statistics"].get("scheduler")
    if sched is not None:
        from nuinfer.engine import check_scheduler
        sched = check_scheduler(sched, key="--scheduler" if args.scheduler is not None else "statistics.scheduler")
    with _group(_with(out, "_g90.csv", "_g90.md", ".png")):
        res = workflows.run_compare(args.analysis, args.vary, out, model=args.model, quiet=args.quiet,
                                    grid=args.grid, scheduler=sched)
    return _print(res)


def _steps(only) -> list[str] | None:
    """``--only`` names checked against the paper's steps before any work."""
    if not only:
        return None
    try:
        from nuinfer.tasks.paper import STEPS
    except ImportError:  # pragma: no cover
        STEPS = ("fig1", "fig2", "fig3", "fig4", "systematics", "bayes", "current_data")
    names = [n.strip() for item in only for n in str(item).split(",") if n.strip()]
    bad = [n for n in names if n not in STEPS]
    if bad or not names:
        raise ConfigError(f"unknown step(s) {', '.join(map(repr, bad)) or '(none given)'}; valid steps: "
                          f"{', '.join(STEPS)} (comma list or repeated --only)", key="--only")
    return names


def cmd_reproduce(args) -> int:
    from nuinfer.tasks import paper as workflows
    only = _steps(args.only)
    _outdir(args.outdir, args.outdir != "outputs")
    t0 = time.perf_counter()
    res = workflows.reproduce(args.outdir, quick=args.quick, quiet=args.quiet, only=only)
    res["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return _print(res)


def cmd_profile(args) -> int:
    """One-parameter profile (sin^2 theta_W; the 8B flux; the neutrino magnetic moment) of an analysis."""
    if _family(args, "profile") == "xenonnt":
        from nuinfer.tasks import xenonnt
        cfg = spec.load_xenonnt(args.analysis)  # validate the file before any work
        out = _out_path(args, "outputs/profile.nc")
        with _group(_with(out, ".png")):
            res = xenonnt.run_profile(cfg, out, plot=not args.no_plot, quiet=args.quiet)
        return _print(res)
    from nuinfer.tasks import terrestrial as tw
    ana = _terrestrial(args.analysis, args.data_dir, "profile")
    out = _out_path(args, "outputs/profile.nc")
    with _group(_terrestrial_outputs(ana, out)):
        res = tw.run_fit(ana, out, tasks=["sin2w"], plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def cmd_fit(args) -> int:
    spec.require(args.analysis, "fit")
    from nuinfer.tasks import terrestrial as tw
    ana = _terrestrial(args.analysis, args.data_dir, "fit")
    tasks = _terrestrial_tasks(ana, args.task, "--task")
    out = _out_path(args, "outputs/fit.nc")
    with _group(_terrestrial_outputs(ana, out)):
        res = tw.run_fit(ana, out, tasks=tasks, plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def _preset(name: str, key: str = "--preset") -> Path:
    from nuinfer.tasks import terrestrial as tw
    p = tw.preset_path(name)
    if not p.is_file():
        from nuinfer.tasks.xenon import models_dir
        names = sorted(q.stem for q in models_dir().glob("*.toml"))
        raise ConfigError(f"no preset {name!r} in models/; choose from {', '.join(names)}", key=key)
    return p


def cmd_coherent(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    path = _preset(args.preset)
    spec.require(path, "fit")
    ana = _terrestrial(path, args.data_dir, "fit")
    tasks = _terrestrial_tasks(ana, args.task, "--task")
    out = _out_path(args, "outputs/coherent_csi2017.nc")
    with _group(_terrestrial_outputs(ana, out)):
        res = tw.run_coherent(out, preset=args.preset, data_dir=args.data_dir, tasks=tasks,
                              plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def cmd_dresden(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    path = _preset(args.preset)
    spec.require(path, "fit")
    ana = _terrestrial(path, args.data_dir, "fit")
    tasks = _terrestrial_tasks(ana, args.task, "--task")
    if args.quenching_table is not None and not Path(args.quenching_table).is_file():
        raise ConfigError(f"file {args.quenching_table!r} not found", key="--quenching-table")
    out = _out_path(args, "outputs/dresden2.nc")
    extra = ["user_table"] if args.quenching_table else []
    with _group(_terrestrial_outputs(ana, out, extra)):
        res = tw.run_dresden(out, preset=args.preset, data_dir=args.data_dir, tasks=tasks,
                             quenching_table=args.quenching_table, plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def cmd_review_figures(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    _outdir(args.outdir, args.outdir != "outputs")
    if args.quenching_table is not None and not Path(args.quenching_table).is_file():
        raise ConfigError(f"file {args.quenching_table!r} not found", key="--quenching-table")
    return _print(tw.review_figures(args.outdir, coherent_data_dir=args.data_dir,
                                    quenching_table=args.quenching_table, quick=args.quick, quiet=args.quiet))


def _floor_outputs(cfg: dict, out: Path) -> list[Path]:
    stem = out.with_suffix("")
    paths = [out] + [out.with_name(f"{out.stem}_{t}.nc") for t in cfg["compare_targets"]]
    paths += [stem.with_name(stem.name + f"_{s}.png") for s in ("spectra", "fog", "sin2w", "mediators", "xsec")]
    return paths


def _floor_warnings(out: Path) -> list[str]:
    """Scenarios whose discovery fits did not all converge (one stderr line each)."""
    import numpy as np
    try:
        ds = io.read_netcdf(out)
    except Exception:  # pragma: no cover - the file was just written
        return []
    if "converged" not in ds:
        return []
    lines = []
    for s in ds["scenario"].values:
        c = np.asarray(ds["converged"].sel(scenario=s).values, bool)
        bad = c.size - int(c.sum())
        if bad:
            lines.append(f"scenario {str(s)!r}: {bad} of {c.size} discovery fits ({100 * bad / c.size:.0f}%) did not "
                         "converge; its floor and limits there are unreliable (a smaller floor.scenarios."
                         f"{s}.g_X, or a finer signal.wimp grid, usually helps)")
    return lines


def cmd_floor(args) -> int:
    spec.require(args.analysis, "floor")
    from nuinfer.tasks.floor import load_floor_config, run_floor
    cfg = load_floor_config(args.analysis, quick=args.quick)
    if args.scheduler is not None:
        from nuinfer.engine import check_scheduler
        check_scheduler(args.scheduler, key="--scheduler")
    with spec.translated("floor"):
        require_memory(estimate_floor(cfg))
    out = _out_path(args, "outputs/floor.nc")
    with _group(_floor_outputs(cfg, out)):
        res = run_floor(args.analysis, out, quick=args.quick, quiet=args.quiet, plot=not args.no_plot,
                        scheduler=args.scheduler)
    warn = _floor_warnings(out)
    if warn:
        res["warnings"] = warn
        for w in warn:
            _warn(w)
    return _print(res)
