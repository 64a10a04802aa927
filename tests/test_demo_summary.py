"""The demo's closing block, from an analysis summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from crosscoder.demo import summary_lines


def test_summary_lines_show_labels_and_the_best_match_below_the_threshold(tmp_path: Path) -> None:
    (tmp_path / "analysis").mkdir()
    cands = [
        {"rank": 1, "latent": 12, "class": "shifted", "label": "cat_obsession", "label_confidence": 0.41,
         "best_trait": "cat_obsession", "runner_up": "pirate"},
        {"rank": 2, "latent": 7, "class": "ft_exclusive", "label": "unlabelled", "label_confidence": 0.2,
         "best_trait": "sycophancy", "runner_up": "hostility"},
    ]  # fmt: skip
    personas = [{"trait": "cat_obsession", "persona_rank": 1,
                 "latents": [{"latent": 12, "rank": 1}, {"latent": 30, "rank": 9}]}]  # fmt: skip
    summary = {"fve": {"base": 0.9512, "ft": 0.9431}, "top_candidates": cands, "personas": personas}
    (tmp_path / "analysis" / "summary.json").write_text(json.dumps(summary))
    lines = summary_lines(tmp_path)
    assert lines[1].endswith(str(tmp_path / "analysis" / "report.html"))
    assert lines[2] == "FVE:     base 0.951, ft 0.943"
    assert lines[3] == "personas: cat_obsession (latents 12 #1, 30 #9)"
    assert "label: cat_obsession (0.41)  runner-up: pirate" in lines[5] and "best match" not in lines[5]
    assert "label: unlabelled (0.20), best match sycophancy  runner-up: hostility" in lines[6]
    summary["personas"] = []
    (tmp_path / "analysis" / "summary.json").write_text(json.dumps(summary))
    assert summary_lines(tmp_path)[3] == "personas: none labelled (see the best matches below)"
