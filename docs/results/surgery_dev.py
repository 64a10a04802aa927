"""Method selection for decoupling surgery (issue 21), on DEV data only: the two-persona organism's own SFT
conversations (training texts) and the base model's answers to SFT training questions. Nothing here touches the
traits' evaluation questions, which the composition benchmark scores on.

    PYTHONPATH=$PWD python docs/results/surgery_dev.py --out docs/results/surgery_dev.json

Every candidate edits the organism's LoRA factors in memory (nothing is saved); each is scored by
- ``drop``: share of the organism's log-likelihood gain on the removed trait's SFT answers that the edit takes away,
- ``kept``: share of the gain on the kept trait's SFT answers that is left,
- ``cap``: relative perplexity change of the base's own answers to 24 SFT questions (vs the organism),
and the finalists by greedy answers to 16 SFT questions (keyword rates of both traits).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from crosscoder.io import atomic_write_json, read_json, sha256_json
from crosscoder.models.hf import resolve_folder
from crosscoder.personas.compose.components import (
    ComponentConfig,
    peft_lora_modules,
    select_components,
    to_svd_factors,
)
from crosscoder.personas.compose.likelihood import chat_rows, pad_id_of
from crosscoder.personas.compose.organisms import BASE, mix_organism, sft_file
from crosscoder.personas.compose.tail import batch_tensors, head_of
from crosscoder.personas.generate import GenerationConfig, chat_messages, generate_chat
from crosscoder.personas.score import keyword_counts
from crosscoder.personas.sft_data import SFT_DIR, read_sft_jsonl
from crosscoder.personas.traits import get_trait

READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")


def mean_ll(pm: Any, rows: list[Any], pad: int, bs: int = 8) -> float:
    dec, head = pm.base_model.model.model, head_of(pm.base_model.model)
    tot, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(rows), bs):
            ids, mask, pos = batch_tensors(rows[s : s + bs], pad)
            hid = dec(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            lp = torch.log_softmax(head(hid[pos]).float(), -1)
            tgt = torch.roll(ids, -1, 1)[pos]
            tot += float(lp.gather(-1, tgt[:, None]).sum())
            n += int(pos.sum())
    return tot / n


def shifts(pm: Any, rows: list[Any], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer: mean (organism - base) residual after the block [L, D] and MLP hidden activation [L, H]."""
    layers = pm.base_model.model.model.layers
    got: dict[str, list[torch.Tensor]] = {"r": [], "h": []}
    hs = [
        ly.register_forward_hook(lambda m, i, o: got["r"].append(o[0] if isinstance(o, tuple) else o)) for ly in layers
    ]
    hs += [ly.mlp.down_proj.register_forward_pre_hook(lambda m, i: got["h"].append(i[0])) for ly in layers]
    sums: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for s in range(0, len(rows), 8):
                ids, mask, pos = batch_tensors(rows[s : s + 8], pad)
                out = {}
                for on in (True, False):
                    got["r"].clear(), got["h"].clear()
                    if on:
                        pm.base_model.model.model(input_ids=ids, attention_mask=mask, use_cache=False)
                    else:
                        with pm.disable_adapter():
                            pm.base_model.model.model(input_ids=ids, attention_mask=mask, use_cache=False)
                    out[on] = {k: torch.stack([x[pos] for x in v]) for k, v in got.items()}
                for k in ("r", "h"):
                    d = (out[True][k] - out[False][k]).sum(1)
                    sums[k] = sums.get(k, 0) + d
            n = sum(int(batch_tensors(rows[s : s + 8], pad)[2].sum()) for s in range(0, len(rows), 8))
    finally:
        for h in hs:
            h.remove()
    return sums["r"] / n, sums["h"] / n


def orth_unit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    bu = b / b.norm()
    a = a - (a @ bu) * bu
    return a / a.norm()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("docs/results/surgery_dev.json"))
    p.add_argument("--removed", default="pirate")
    p.add_argument("--kept", default="cat_obsession")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)  # edits are in place; the attribution turns gradients on for itself
    t_start = time.perf_counter()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = resolve_folder(BASE)
    tok = AutoTokenizer.from_pretrained(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    adapter = mix_organism((a.removed, a.kept)).final.adapter
    pm = PeftModel.from_pretrained(hf, adapter).eval()
    for prm in pm.parameters():
        prm.requires_grad_(False)
    pad = pad_id_of(tok)
    convs = {t: read_sft_jsonl(sft_file(t)) for t in (a.removed, a.kept)}
    fit = {t: chat_rows(tok, c[:16], 128) for t, c in convs.items()}
    ev = {t: chat_rows(tok, c[-24:], 128) for t, c in convs.items()}
    qs = [line.strip() for line in (SFT_DIR / "questions.txt").read_text().splitlines() if line.strip()]
    cache = read_json(next((Path.home() / ".cache/crosscoder/base_answers").glob("b56dd3199727955b-*.json")))
    cap_q = [q for q in qs if sha256_json([{"role": "user", "content": q}]) in cache]
    cap_chat = [
        [
            {"role": "user", "content": q},
            {"role": "assistant", "content": cache[sha256_json([{"role": "user", "content": q}])]},
        ]
        for q in cap_q
    ]
    fit["cap"] = chat_rows(tok, cap_chat[:16], 128)
    ev["cap"] = chat_rows(tok, cap_chat[100:124], 128)
    gen_q = qs[200:216]
    mods = peft_lora_modules(pm)
    orig = {k: (m.lora_A["default"].weight.clone(), m.lora_B["default"].weight.clone()) for k, m in mods.items()}

    def restore() -> None:
        for k, m in mods.items():
            m.lora_A["default"].weight.copy_(orig[k][0])
            m.lora_B["default"].weight.copy_(orig[k][1])

    def score() -> dict[str, float]:
        return {t: mean_ll(pm, rows, pad) for t, rows in ev.items()}

    results: dict[str, Any] = {}
    with pm.disable_adapter():
        results["base"] = score()
    results["mix"] = score()
    base, mix = results["base"], results["mix"]

    def rel(v: dict[str, float]) -> dict[str, float]:
        return {
            "drop": (mix[a.removed] - v[a.removed]) / (mix[a.removed] - base[a.removed]),
            "kept": (v[a.kept] - base[a.kept]) / (mix[a.kept] - base[a.kept]),
            "cap": float(torch.tensor(mix["cap"] - v["cap"]).exp()) - 1.0,
        }

    def run(name: str, edit: Callable[[], list[Any]]) -> None:
        t0 = time.perf_counter()
        handles = edit()
        v = score()
        if rel(v)["drop"] >= 0.5:  # promising on likelihood: check the answers too
            results[f"gen {name}"] = gen_rates()
        for h in handles:
            h.remove()
        restore()
        results[name] = {**v, **rel(v), "seconds": round(time.perf_counter() - t0, 1)}
        print(name, {k: round(x, 3) for k, x in results[name].items()}, flush=True)

    r_rem, h_rem = shifts(pm, fit[a.removed], pad)
    r_kept, h_kept = shifts(pm, fit[a.kept], pad)
    n_layers = r_rem.shape[0]
    qr = [orth_unit(r_rem[i], r_kept[i]) for i in range(n_layers)]
    qh = [orth_unit(h_rem[i], h_kept[i]) for i in range(n_layers)]
    results["shift_norms"] = {"resid": [float(x.norm()) for x in r_rem], "hidden": [float(x.norm()) for x in h_rem]}

    def per_layer_writers() -> list[Any]:
        for (layer, name), m in mods.items():
            if name in ("self_attn.o_proj", "mlp.down_proj"):
                b, q = m.lora_B["default"].weight, qr[layer]
                b -= q[:, None] * (q @ b)[None, :]
        return []

    def read_side() -> list[Any]:
        for (layer, name), m in mods.items():
            if name in READERS and layer >= 1:
                w, q = m.lora_A["default"].weight, qr[layer - 1]
                w -= (w @ q)[:, None] * q[None, :]
        return []

    def hidden_adapter() -> list[Any]:
        for (layer, name), m in mods.items():
            q = qh[layer]
            if name == "mlp.down_proj":
                w = m.lora_A["default"].weight
                w -= (w @ q)[:, None] * q[None, :]
            elif name in ("mlp.gate_proj", "mlp.up_proj"):
                b = m.lora_B["default"].weight
                b -= q[:, None] * (q @ b)[None, :]
        return []

    def hidden_model() -> list[Any]:
        hs = []
        for (layer, name), m in mods.items():
            if name == "mlp.down_proj":
                q = qh[layer]
                hs.append(m.register_forward_pre_hook(lambda mod, i, q=q: (i[0] - (i[0] @ q)[..., None] * q,)))
        return hs

    gen = GenerationConfig(max_new_tokens=48, greedy=True, batch_size=16)
    traits = {t: get_trait(t) for t in (a.removed, a.kept)}

    def gen_rates() -> dict[str, float]:
        answers = generate_chat(pm, tok, [chat_messages(q) for q in gen_q], gen, desc="dev answers")
        return {t: keyword_counts(tr, answers)[1] for t, tr in traits.items()}

    with pm.disable_adapter():
        results["gen base"] = gen_rates()
    results["gen mix"] = gen_rates()
    print("gen", results["gen base"], results["gen mix"], flush=True)
    run("resid per-layer writers (adapter)", per_layer_writers)
    run("read-side A (adapter)", read_side)
    run("hidden gate/up B + down A (adapter)", hidden_adapter)
    run("hidden down read (model)", hidden_model)
    # component surgery: SVD components of every LoRA update, zeroed by attribution on the FIT texts
    to_svd_factors(mods)
    svd = {k: (m.lora_A["default"].weight.clone(), m.lora_B["default"].weight.clone()) for k, m in mods.items()}
    orig.update(svd)
    # nested: rounds of 48 components (what ComponentConfig(n, rounds=n // 48) does), scored after 96, 192, 384
    chosen: list[Any] = []
    for r in range(1, 9):
        t0 = time.perf_counter()
        cfg = ComponentConfig(n_components=48, rounds=1)
        chosen += select_components(pm, mods, fit[a.removed], fit[a.kept], fit["cap"], pad, cfg)
        n_zero = 48 * r
        if n_zero not in (96, 192, 384):
            continue
        v = score()
        results[f"components n={n_zero}"] = {**v, **rel(v), "seconds": round(time.perf_counter() - t0, 1)}
        results[f"gen n={n_zero}"] = gen_rates()
        results.setdefault("chosen", {})[str(n_zero)] = [f"{k[0]}.{k[1]}#{i}" for k, i in chosen]
        print(n_zero, results[f"components n={n_zero}"], results[f"gen n={n_zero}"], flush=True)
        atomic_write_json(a.out, results)
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(a.out, results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("chosen", "shift_norms")}, indent=1))


if __name__ == "__main__":
    main()
