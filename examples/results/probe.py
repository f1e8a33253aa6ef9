"""Probe one hyperparameter of a reproduction cell under the validation protocol.

Runs the cell of ``examples/reproduce.py`` with one setting changed — a field of its
``Cell`` (``l2``, ``lr``, ``sampling``, …), a model argument named ``model.<arg>``
(``model.num_layers 1``), or else one of its loss arguments; comma-separated
keys and values change several at once (``lr,mask_positives 1e-4,true``) — for ``EPOCHS``
epochs (or until its early stopping, or a ``BUDGET`` in seconds), on the same seed and
validation carve as the cell itself. The record (validation and test history; test is read,
never used for a choice) goes to ``OUT_DIR/<cell>-<key>=<value>-<epochs>ep[-<budget>s].json``
(several settings joined by ``+``, numbers as ``:g``: ``lr=0.0001+mask_positives=True``);
compare it with the same epochs of ``results/repro/<cell>.json``. With ``--refit`` it then
retrains the probed setting on the full training split for the probe's best-validation epoch
count (as ``reproduce.py --refit`` does for a cell) and writes ``<probe record>-refit.json``.
With ``--refit-ahead N`` it instead trains that refit *before* the choice, for ``N`` epochs with
test metrics at every evaluation (``<probe record>-refit_ahead.json``; the first ``n`` epochs
of it are the refit of ``n`` epochs: same seed and batches, no schedule that depends on the
total), so it can run beside the validation run; ``--refit`` then reads the refit at the
chosen epoch from it instead of training again.

    python examples/results/probe.py t2-mf-bpr lr 1e-4 300 examples/results/bpr_probe 2700
    python examples/results/probe.py t2-mf-bpr lr 1e-4 300 examples/results/bpr_probe 2700 --refit
    python examples/results/probe.py t2-mf-bpr lr 1e-4 300 examples/results/bpr_probe 2700 \
        --refit-ahead 300
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any


def _reproduce() -> Any:
    spec = importlib.util.spec_from_file_location(
        "reproduce", Path(__file__).resolve().parents[1] / "reproduce.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = mod
    spec.loader.exec_module(mod)
    return mod


def _parse(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _settings(key: str, value: Any) -> dict[str, Any]:
    """``{key: value}``; comma-separated keys take a sequence of as many values."""
    keys = key.split(",")
    values = list(value) if len(keys) > 1 else [value]
    if len(values) != len(keys) or len(set(keys)) != len(keys):
        raise SystemExit(f"probe: keys {keys} need as many values, got {values}")
    return dict(zip(keys, values, strict=True))


def _command(
    cell_id: str, settings: dict[str, Any], epochs: int, out_dir: Path, budget: float | None
) -> str:
    key = ",".join(settings)
    value = ",".join(str(v) for v in settings.values())
    return " ".join(
        ["python examples/results/probe.py", cell_id, key, value, str(epochs), str(out_dir)]
        + ([f"{budget:g}"] if budget else [])
    )


def _probed_cell(mod: Any, cell_id: str, fields: dict[str, Any], name: str, epochs: int) -> Any:
    """The cell with the probed ``Cell`` fields and ``model.<arg>`` model arguments (loss
    arguments go as overrides)."""
    base = mod.BY_ID[cell_id]
    plain = {k: v for k, v in fields.items() if not k.startswith("model.")}
    model = {k.removeprefix("model."): v for k, v in fields.items() if k.startswith("model.")}
    if model:
        import inspect

        from pyg_cf.nn import GraphCF

        builder = getattr(GraphCF, base.model.replace("-", "_"))
        known = set(inspect.signature(builder).parameters) - {"num_users", "num_items"}
        unknown = sorted(set(model) - known)
        if unknown:
            raise SystemExit(
                f"probe: {base.model} takes no model argument {unknown}; it takes {sorted(known)}"
            )
        plain["model_kwargs"] = {**base.model_kwargs, **model}
    return dataclasses.replace(base, id=name, epochs=epochs, **plain)


def _grid_choice(mod: Any, cell_id: str, loss_args: dict[str, Any]) -> dict[str, Any]:
    """The base cell's grid choice (e.g. its τ) for the grid's keys the probe does not set:
    a probe changes one setting of the cell *as selected*, not of its ungridded defaults."""
    cell = mod.BY_ID[cell_id]
    open_keys = [k for k in cell.grid if k not in loss_args]
    if not open_keys:
        return {}
    rec = mod.load_record(cell)
    chosen = ((rec or {}).get("grid") or {}).get("selected")
    if chosen is None:
        raise SystemExit(
            f"probe: {cell_id} selects {open_keys} on a grid that has not run yet: run "
            f"`python examples/reproduce.py --cell {cell_id}` first, or set "
            f"{', '.join(open_keys)} in the probe"
        )
    return {k: v for k, v in chosen.items() if k in open_keys}


def probe_names(
    cell_id: str, settings: dict[str, Any], epochs: int, out_dir: Path, budget: float | None
) -> tuple[str, Path, Path]:
    """The probe's run name (its checkpoints: ``<CHECKPOINTS>/<name>/``), its record and its
    refit-ahead record."""
    suffix = f"-{budget:g}s" if budget else ""
    tag = "+".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
    )
    out = out_dir / f"{cell_id}-{tag}-{epochs}ep{suffix}.json"
    return f"x-{cell_id}-{tag}{suffix}", out, out.with_name(f"{out.stem}-refit_ahead.json")


def probe(
    cell_id: str,
    key: str,
    value: Any,
    epochs: int,
    out_dir: Path,
    budget: float | None = None,
    refit: bool = False,
    refit_ahead: int | None = None,
) -> Path:
    """Train the probe (unless its record exists) and return the record's path; with
    ``refit``, also retrain it on the full training split and return that record's path;
    with ``refit_ahead``, only train the refit ahead of the choice and return its path."""
    mod = _reproduce()
    if cell_id not in mod.BY_ID:
        raise SystemExit(f"probe: unknown cell {cell_id!r}; `python examples/reproduce.py --list`")
    settings = _settings(key, value)
    name, out, ahead_out = probe_names(cell_id, settings, epochs, out_dir, budget)
    cmd = _command(cell_id, settings, epochs, out_dir, budget)
    names = {f.name for f in dataclasses.fields(mod.BY_ID[cell_id])}
    fields = {k: v for k, v in settings.items() if k in names or k.startswith("model.")}
    loss_args = {k: v for k, v in settings.items() if k not in fields}
    loss_args = {**_grid_choice(mod, cell_id, loss_args), **loss_args}
    if refit_ahead is not None:
        if ahead_out.exists():
            print(f"{ahead_out} exists: nothing to do")
            return ahead_out
        cell = _probed_cell(mod, cell_id, fields, name, refit_ahead)
        chosen = {**cell.loss_kwargs, **loss_args}
        rec = mod.run_cell(
            cell, None, overrides=chosen, epochs=refit_ahead, refit=True,
            eval_every=cell.eval_every,
        )  # fmt: skip
        rec["probe"] = {"base_cell": cell_id, **settings}
        rec["command"] = cmd + f" --refit-ahead {refit_ahead}"
        out_dir.mkdir(parents=True, exist_ok=True)
        ahead_out.write_text(json.dumps(rec, indent=1))
        print(f"refit ahead: {rec['epochs_run']} epochs, test {rec['test']}")
        return ahead_out
    if out.exists():
        print(f"{out} exists: nothing to train for the probe")
    else:
        cell = _probed_cell(mod, cell_id, fields, name, epochs)
        rec = mod.run_cell(cell, budget, overrides=loss_args or None)
        rec["probe"] = {"base_cell": cell_id, **settings}
        rec["command"] = cmd
        out_dir.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=1))
        print(rec["test"])
    if not refit:
        return out
    refit_out = out.with_name(f"{out.stem}-refit.json")
    if refit_out.exists():
        print(f"{refit_out} exists: nothing to do")
        return refit_out
    source = json.loads(out.read_text())
    n = int(source["best_epoch"])
    cell = _probed_cell(mod, cell_id, fields, name, n)
    chosen = source.get("loss_kwargs") or dict(cell.loss_kwargs)
    rec = mod.refit_from_ahead(cell, chosen, n, path=ahead_out)
    if rec is None:
        rec = mod.run_cell(cell, None, overrides=chosen, epochs=n, refit=True)
        rec["command"] = cmd + " --refit"
    else:  # the run that trained it, then the command that read it at the chosen epoch
        rec["command"] = f"{json.loads(ahead_out.read_text())['command']} then {cmd} --refit"
    rec["probe"] = {"base_cell": cell_id, **settings}
    rec["selected_from"] = {
        "probe": out.name,
        "loss_kwargs": rec["loss_kwargs"],
        "best_epoch": n,
        "val_run_test_recall@20": source["test"]["recall@20"],
    }
    refit_out.write_text(json.dumps(rec, indent=1))
    print(rec["test"])
    return refit_out


if __name__ == "__main__":
    argv = sys.argv[1:]
    ahead: int | None = None
    if "--refit-ahead" in argv:
        i = argv.index("--refit-ahead")
        try:
            ahead = int(argv[i + 1])
        except (IndexError, ValueError):
            sys.exit("probe: --refit-ahead needs a number of epochs")
        if ahead < 1:
            sys.exit(f"probe: --refit-ahead must be a positive number of epochs, got {ahead}")
        argv = argv[:i] + argv[i + 2 :]
    args = [a for a in argv if a != "--refit"]
    if len(args) not in (5, 6):
        sys.exit(__doc__)
    cell_id, key, value, epochs, out_dir = args[:5]
    try:
        n_epochs, budget_s = int(epochs), float(args[5]) if len(args) > 5 else None
    except ValueError:
        sys.exit(f"probe: EPOCHS must be an integer and BUDGET a number, got {args[3:6]}")
    from pyg_cf.errors import PygCFError

    try:
        probe(
            cell_id,
            key,
            [_parse(v) for v in value.split(",")] if "," in key else _parse(value),
            n_epochs,
            Path(out_dir),
            budget_s,
            refit="--refit" in argv,
            refit_ahead=ahead,
        )
    except PygCFError as e:  # a bad setting: say which, without a traceback
        sys.exit(f"probe: {e}")
