"""The composition benchmark's HTML report: the leakage heatmap and tables of every stage."""

from __future__ import annotations

from typing import Any

from crosscoder.personas.compose.leakage import LeakageColumn
from crosscoder.personas.compose.report import Report, Table, leakage_heatmap, leakage_table


def _surgery_table(res: dict[str, Any]) -> Table:
    rows = [
        [r["removed_trait"], r["kept_trait"], f"{r['scope']}, {r['layers']}", r["removed_drop"], r["kept_retained"],
         r["capability_change"], r["removed_fraction"], r["n_directions"], r["unedited_modules"]]
        for r in res["surgery"]["runs"]
    ]  # fmt: skip
    return Table(
        "Decoupling by LoRA surgery (two-persona organism)",
        ["removed", "kept", "scope, layers", "removed drop", "kept retained", "capability change",
         "share of the edited writes in the span (components: share removed)", "edited tensors (components: removed)",
         "unedited modules"],
        rows,  # type: ignore[arg-type]
        note="Drop and retention are shares of what the fine-tune added (keyword rate on held-out questions; base = 0, "
        "organism = 1). Targets: drop >= 0.80, retained >= 0.80, capability change <= 0.05.",
    )  # fmt: skip


def _latent_table(res: dict[str, Any]) -> Table:
    la = res["latent_adapter"]
    rows: list[list[Any]] = [["dense (any bias)", la["dense"]["behaviour_recovered"], la["dense"]["norm_fraction"], ""]]
    for k in sorted((k for k in la if k.isdigit()), key=int):
        lat = ", ".join(f"{t['latent']}{'Δ' if t['kind'] == 'diff' else ''} ({t['coefficient']:+.2f}: "
                        f"{' '.join(t['top_tokens'][:3])})" for t in la[k]["latents"])  # fmt: skip
        rows.append([f"k = {k}", la[k]["behaviour_recovered"], la[k]["norm_fraction"], lat])
    hooks = la.get("hooks") or [la.get("hook", "")]
    te = la.get("trait_expression")
    note = (f"Behaviour recovered = 1 - KL(ft || base + v) / KL(ft || base) on held-out organism conversations "
            f"(KL(ft || base) = {la['kl_base_heldout']:.4f} nats/token). Δ marks a decoder-change atom. Biases at "
            f"{', '.join(hooks)}; coefficients at the crosscoder's hook.")  # fmt: skip
    if te:
        note += f" Trait expression ({te['trait']}, keyword rate) with k = {te['k']}: {te['recovered']:.2f} of the fine-tune's."
    return Table("Latent-basis adapter of the demo organism", ["adapter", "behaviour recovered", "norm / typical", "latents"],
                 rows, note=note, signed=False)  # fmt: skip


def _receive_table(res: dict[str, Any]) -> Table:
    rows = []
    for trait, r in res["receive_side"].items():
        rows.append([trait, r["norm_base"], r["norm_ft"], r["method"]["base"], r["method"]["ft"], r["target"],
                     r["score_unsteered"]["base"], r["score_unsteered"]["ft"], r["keyword_rate_reached"]["base"],
                     r["keyword_rate_reached"]["ft"], "yes" if r["smaller_in_ft"] else "no"])  # fmt: skip
    return Table(
        f"Receive-side audit at {res['receive_hook']}",
        ["trait", "norm base", "norm organism", "method base", "method organism", "target", "score base",
         "score organism", "keyword rate base", "keyword rate organism", "smaller in organism"],
        rows,
        note="Norms are fractions of the typical residual norm at the hook (– = not reached within the search range). "
        "Score = mean log-prob per token of the trait's pos example texts minus its neg ones (nats), unsteered; the "
        "target is the base's unsteered score + 0.5 for both models. Keyword rates: answers to held-out questions "
        "steered with the smallest vector found.",
        signed=False,
    )  # fmt: skip


def leakage_columns(leak: dict[str, Any]) -> list[LeakageColumn]:
    """The leakage columns of a results file."""
    cols = []
    for e in leak["edits"]:
        name, cap = e["edit"], leak["capability"][e["edit"]]
        cols.append(LeakageColumn(
            name, e["reference"], e["description"], {t: leak["matrix"][t][name] for t in leak["traits"]},
            {t: leak["projection_matrix"][t][name] for t in leak["traits"]}, cap["perplexity_change"],
            cap["accuracy_change"], cap["capability_change"],
        ))  # fmt: skip
    return cols


def build_report(res: dict[str, Any]) -> Report:
    """The report of a composition results file (nothing but the JSON is needed)."""
    traits = res["leakage"]["traits"]
    columns = leakage_columns(res["leakage"])
    variants = Table(
        "Measured variants",
        ["variant", "what", "perplexity", "factual accuracy", "seconds"],
        [
            [v["name"], v["description"], v["perplexity"], v["accuracy"], v["seconds"]]
            for v in res["leakage"]["variants"]
        ],
        signed=False,
    )
    return Report(
        "Persona composition benchmark" + (" (quick)" if res["quick"] else ""),
        intro=f"Total {res['seconds']:.0f} s. Targets: " + ", ".join(f"{k}: {v}" for k, v in res["targets"].items()),
        heatmaps=[leakage_heatmap(columns, traits)],
        tables=[
            *([_surgery_table(res)] if "surgery" in res else []),
            leakage_table(columns, traits),
            *([_latent_table(res)] if "latent_adapter" in res else []),
            *([_receive_table(res)] if "receive_side" in res else []),
            variants,
        ],
    )
