"""`mlpipe models …`: list, describe, push, set-default, alias and delete registry versions; roll out
a challenger (canary share or shadow), promote it, roll back, and read the audit log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.display import display_path


def add_registry_flags(p: argparse.ArgumentParser, root: bool = True) -> None:
    g = p.add_argument_group("registry")
    if root:
        g.add_argument("--registry-root", dest="registry_root",
                       help="registry directory or gs://BUCKET/PATH, e.g. the cloud pipeline's GCS_ROOT/registry "
                       "(default STATE_DIR/registry; env MLPIPE_REGISTRY_ROOT)")
    g.add_argument("--model", dest="model_name", help="model name (default mnist; env MLPIPE_MODEL)")


def registry_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.replace(registry_root=getattr(args, "registry_root", None),
                            model_name=getattr(args, "model_name", None))


def _registry(args: argparse.Namespace, settings: Settings):
    from mlpipe.registry import registry_for

    return registry_for(registry_settings(args, settings))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _list(args: argparse.Namespace, settings: Settings) -> int:
    reg = _registry(args, settings)
    versions = reg.list_versions()
    others = [m for m in reg.list_models() if m != reg.model]
    also = f"  (other models: {', '.join(others)})" if others else ""
    print(f"model {reg.model} in {display_path(reg.location)}{also}")
    if not versions:
        print("(no versions; push one with `mlpipe models push SAVED_MODEL_DIR` or run the pipeline)")
        return 0
    rollout = reg.rollout()
    print(f"{'VERSION':<10}{'DEFAULT':<9}{'ALIASES':<20}{'CREATED (UTC)':<22}"
          f"{'TEST ACC':>9}{'BASELINE':>10}  RUN")
    for v in versions:
        m = v.metadata
        role = "*" if v.is_default else (_rollout_label(rollout) if rollout and rollout.version == v.name else "")
        print(f"{v.name:<10}{role:<9}{','.join(v.aliases) or '-':<20}"
              f"{v.created_time[:19].replace('T', ' '):<22}{_pct(m.test_accuracy):>9}"
              f"{_pct(m.baseline_accuracy):>10}  {m.pipeline_run_id or '-'}")
    return 0


def _describe(args: argparse.Namespace, settings: Settings) -> int:
    reg = _registry(args, settings)
    v = reg.resolve(version=args.version)
    doc = {
        "model": v.model,
        "version": v.name,
        "default": v.is_default,
        "aliases": list(v.aliases),
        "created_time": v.created_time,
        "saved_model_dir": v.saved_model_uri,
        "metadata": v.metadata.to_dict(),
        "signature": v.signatures.get("serving_default", {}),
    }
    # A remote (gs://) version is copied to a local mirror first.
    search = _search_summary(v.saved_model_dir if v.is_local else reg.local_saved_model(v))
    if search:
        doc["search"] = search
    print(json.dumps(doc, indent=2))
    return 0


def _search_summary(saved_model_dir: Path) -> dict:
    """The AdaNet search report the Trainer left in the SavedModel: chosen ensemble and plot paths."""
    report_dir = saved_model_dir / "assets.extra" / "search"
    try:
        report = json.loads((report_dir / "search_report.json").read_text())
    except (OSError, ValueError):
        return {}
    final = report.get("final_ensemble") or {}
    return {
        "chosen_architecture": report.get("final_architecture_text"),
        "chosen_ensemble": final.get("name"),
        "members": [f"{m['builder']} (iteration {m['iteration']})" for m in final.get("members", [])],
        "eval_accuracy": final.get("valid_accuracy"),
        "test_accuracy": (report.get("test") or {}).get("accuracy"),
        "iterations": len(report.get("iterations", [])),
        "train_seconds": report.get("train_seconds"),
        "report": str(report_dir / "search_report.json"),
        "plots": sorted(str(p) for p in report_dir.glob("*.png")),
    }


def _push(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.errors import NotFoundError, UsageError

    metadata: dict = {}
    if args.metadata:
        try:
            metadata = json.loads(Path(args.metadata).read_text())
        except FileNotFoundError:
            raise NotFoundError(f"metadata file {args.metadata} does not exist") from None
        except ValueError as e:
            raise UsageError(f"metadata file {args.metadata} is not valid JSON: {e}") from None
        except RecursionError:
            raise UsageError(f"metadata file {args.metadata} is nested too deeply") from None
    if args.description:
        metadata = {**metadata, "description": args.description}
    v = _registry(args, settings).push(args.saved_model_dir, metadata, promote=args.promote)
    print(f"pushed {v.model}/{v.name}" + (" (default)" if v.is_default else " (not default)"))
    return 0


def _rollout_label(rollout) -> str:
    return f"{rollout.mode} {100 * rollout.share:g}%"


def _set_default(args: argparse.Namespace, settings: Settings) -> int:
    v = _registry(args, settings).set_default(args.version, reason=args.reason)
    print(f"{v.model}: default version is now {v.name}")
    return 0


def _challenger(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.errors import UsageError

    reg = _registry(args, settings)
    if args.clear:
        if args.version:
            raise UsageError("give either VERSION or --clear, not both")
        print(f"{reg.model}: {reg.clear_challenger(reason=args.reason)} is no longer the challenger")
        return 0
    if not args.version:
        current = reg.rollout()
        print(f"{reg.model}: " + (f"challenger {current.version} ({_rollout_label(current)})"
                                  if current else "no challenger"))
        return 0
    r = reg.set_challenger(args.version, args.share, "shadow" if args.shadow else "canary", reason=args.reason)
    what = (f"sees a shadow copy of {100 * r.share:g}% of the default's requests (answers not returned)"
            if r.mode == "shadow" else f"answers {100 * r.share:g}% of the default's requests")
    print(f"{reg.model}: challenger {r.version} {what}")
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    reg = _registry(args, settings)
    before = reg.default_version()
    v = reg.promote(reason=args.reason)
    print(f"{v.model}: promoted {v.name} to default (was {before}; `mlpipe models rollback` undoes it)")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    reg = _registry(args, settings)
    before = reg.default_version()
    v = reg.rollback(to=args.to, reason=args.reason)
    print(f"{v.model}: rolled back the default from {before} to {v.name}")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    entries = _registry(args, settings).audit()[-args.limit:]
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    if not entries:
        print("(no changes recorded)")
        return 0
    print(f"{'TIME (UTC)':<21}{'ACTION':<16}{'VERSION':<9}{'WAS':<9}{'BY':<28}WHY / DETAILS")
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items() if k != "metrics")
        why = "; ".join(x for x in (e.reason, details) if x)
        print(f"{e.time[:19].replace('T', ' '):<21}{e.action:<16}{e.version or '-':<9}"
              f"{e.previous or '-':<9}{e.actor[:27]:<28}{why}")
    return 0


def _alias(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.errors import UsageError

    reg = _registry(args, settings)
    if args.remove:
        if args.version:
            raise UsageError("give either VERSION or --remove, not both")
        print(f"{reg.model}: removed alias {args.name} (was {reg.remove_alias(args.name)})")
        return 0
    if not args.version:
        raise UsageError("give the VERSION the alias should point at (or --remove)")
    v = reg.set_alias(args.name, args.version)
    print(f"{reg.model}: alias {args.name} → {v.name}")
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    reg = _registry(args, settings)
    reg.delete(args.version)
    print(f"{reg.model}: deleted {args.version}")
    return 0


def register(sub, add_settings_flags) -> None:
    models = sub.add_parser("models", help="list and manage model versions in the registry",
                            description="The model registry: versions v1, v2, …, the serving "
                            "default, aliases (champion, canary, …) and each version's metadata.")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def action(name: str, handler, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_)
        add_registry_flags(p)
        add_settings_flags(p)
        p.set_defaults(handler=handler)
        return p

    action("list", _list, "versions with default, aliases, creation time and accuracy")
    p = action("describe", _describe, "one version's metadata and signature as JSON")
    p.add_argument("version", nargs="?", help="version name, e.g. v3 (default: the default version)")
    p = action("push", _push, "copy a SavedModel into the registry as the next version")
    p.add_argument("saved_model_dir", help="SavedModel directory with the serving contract")
    p.add_argument("--no-promote", dest="promote", action="store_false",
                   help="keep the current default (the first version always becomes the default)")
    p.add_argument("--metadata", help="JSON file with PushMetadata fields (test_accuracy, …)")
    p.add_argument("--description", help="free-text description of this version")
    p = action("set-default", _set_default, "make VERSION the default (also how to roll back)")
    p.add_argument("version")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p = action("challenger", _challenger,
               "show, set or clear the challenger: a version that answers a share of the default's "
               "traffic (canary) or sees a copy of it (shadow)")
    p.add_argument("version", nargs="?", help="version to roll out, e.g. v4 (none: show the current one)")
    p.add_argument("--share", type=float, default=0.1,
                   help="fraction of the default's requests routed to it (default 0.1)")
    p.add_argument("--shadow", action="store_true",
                   help="shadow mode: the default answers; the challenger's predictions are only logged")
    p.add_argument("--clear", action="store_true", help="end the rollout (the default answers everything)")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p = action("promote", _promote, "make the challenger the default (recorded in the audit log)")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p = action("rollback", _rollback,
               "move the default back to the version it had before its last change (or --to VERSION)")
    p.add_argument("--to", help="the version to roll back to (default: the previous default)")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p = action("audit", _audit, "the audit log: who moved the default or the challenger, when and why")
    p.add_argument("--limit", type=int, default=50, help="newest N entries (default 50)")
    p.add_argument("--json", action="store_true", help="as JSON, with the versions' metrics")
    p = action("alias", _alias, "point alias NAME at VERSION, or remove it with --remove")
    p.add_argument("name", help="alias name, e.g. champion")
    p.add_argument("version", nargs="?", help="version name, e.g. v2")
    p.add_argument("--remove", action="store_true", help="remove the alias")
    p = action("delete", _delete, "delete VERSION (refused for the default and aliased versions)")
    p.add_argument("version")
