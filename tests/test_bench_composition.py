"""The composition benchmark's options, target check and report (from a results file alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscoder.bench.composition import main, parse_args, targets
from crosscoder.bench.composition_report import build_report
from crosscoder.errors import ConfigError
from crosscoder.personas.compose.report import render

TRAITS = ["cat_obsession", "pirate"]


def _surgery(drop: float, kept: float, cap: float, scope: str) -> dict:
    return {"removed_trait": "pirate", "kept_trait": "cat_obsession", "removed_drop": drop, "kept_retained": kept,
            "capability_change": cap, "removed_fraction": 0.05, "n_directions": 60, "unedited_modules": 150,
            "scope": scope, "layers": "reach", "variant": f"surgery -pirate ({scope})"}  # fmt: skip


def _results(k16: float, smaller: tuple[bool, bool, bool]) -> dict:
    edits = ["mix", "steer +pirate"]
    rs = {t: {"organism": t, "target": 0.1, "norm_base": 0.05, "norm_ft": 0.02 if s else None, "smaller_in_ft": s,
              "method": {"base": "optimised", "ft": "persona_vector"}, "score_unsteered": {"base": -0.4, "ft": 0.0},
              "keyword_rate_reached": {"base": 0.0, "ft": 1.0}, "score_reached": {"base": 0.1, "ft": 0.1}}
          for t, s in zip(["cat_obsession", "pirate", "pessimism"], smaller, strict=True)}  # fmt: skip
    runs = [_surgery(0.9, 0.85, 0.01, "adapter"), _surgery(0.1, 0.2, 2.0, "model")]
    return {
        "quick": True,
        "seconds": 10.0,
        "surgery": {**runs[0], "runs": runs},
        "leakage": {
            "traits": TRAITS,
            "edits": [{"edit": e, "reference": "base", "description": e} for e in edits],
            "matrix": {t: {e: 0.25 for e in edits} for t in TRAITS},
            "projection_matrix": {t: {e: 1.0 for e in edits} for t in TRAITS},
            "capability": {
                e: {"perplexity_change": 0.1, "accuracy_change": -0.05, "capability_change": 0.1} for e in edits
            },  # fmt: skip
            "variants": [{"name": "base", "description": "b", "seconds": 1.0, "perplexity": 3.7, "accuracy": 0.5}],
        },
        "latent_adapter": {
            "kl_base_heldout": 0.6,
            "n_atoms": 10,
            "dense": {"behaviour_recovered": 0.35, "norm_fraction": 0.3},
            "16": {
                "behaviour_recovered": k16,
                "norm_fraction": 0.2,
                "latents": [{"latent": 3, "kind": "diff", "coefficient": -0.1, "top_tokens": [" Cats"]}],
            },
        },  # fmt: skip
        "receive_side": rs,
        "receive_hook": "blocks.20.hook_resid_post",
    }


def test_targets() -> None:
    res = _results(0.6, (True, True, True))
    t = targets(res, TRAITS)
    assert t["surgery_removed_drop_ge_0.8"] and t["surgery_kept_retained_ge_0.8"]
    assert t["surgery_capability_change_le_0.05"] and t["leakage_all_shipped_traits"]
    assert t["receive_side_smaller_in_ft_on_3_organisms"] and t["latent_adapter_k16_ge_0.5"]
    t = targets(_results(0.4, (True, False, True)), [*TRAITS, "hostility"])
    assert not t["receive_side_smaller_in_ft_on_3_organisms"] and t["receive_side_smaller_in_ft"] == [
        "cat_obsession",
        "pessimism",
    ]
    assert not t["latent_adapter_k16_ge_0.5"] and not t["leakage_all_shipped_traits"]


def test_report_from_results_file_alone(tmp_path: Path) -> None:
    res = _results(0.4, (True, True, False))
    res["targets"] = targets(res, TRAITS)
    html = render(build_report(res))
    assert html.count("<table>") == 5 and html.count('<svg class="chart"') == 1
    assert "319" not in html and "3Δ" in html and "adapter, reach" in html
    out = tmp_path / "r.json"
    out.write_text(json.dumps(res))
    main(["--report-only", "--out", str(out)])
    assert (tmp_path / "r.html").read_text(encoding="utf-8").count("<table>") == 5


def test_partial_results_render_and_leave_missing_targets_open() -> None:
    res = _results(0.4, (True, True, True))
    del res["receive_side"], res["latent_adapter"]
    t = targets(res, TRAITS)
    assert t["receive_side_smaller_in_ft_on_3_organisms"] is None and t["latent_adapter_k16_ge_0.5"] is None
    assert t["surgery_removed_drop_ge_0.8"] is True
    res["targets"] = t
    assert render(build_report(res)).count("<table>") == 3


def test_options_refuse_bad_pairs() -> None:
    with pytest.raises(ConfigError, match="REMOVED,KEPT"):
        parse_args(["--pair", "pirate"])
    with pytest.raises(ConfigError, match="two different traits"):
        parse_args(["--pair", "pirate,pirate"])
    opts = parse_args(["--quick"])
    assert opts.quick and not opts.both_directions and opts.pair == ("pirate", "cat_obsession")
    assert parse_args([]).both_directions  # full runs do both directions
    with pytest.raises(ConfigError, match="--stages"):
        parse_args(["--stages", "surgery,nothing"])
    opts = parse_args(["--stages", "surgery,latent", "--latent-hooks", ""])
    assert opts.stages == ("surgery", "latent") and opts.latent_hooks == ()
