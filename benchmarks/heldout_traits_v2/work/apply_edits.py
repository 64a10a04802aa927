"""Apply one trait's hand-written edit list to the plain base answers and write the SFT set.

The same edit format and code as the first held-out set (`benchmarks/heldout_traits/work/apply_edits.py`), run on
this folder's `base.jsonl` and `<trait>.edits`: `python apply_edits.py TRAIT`.
"""

import importlib.util
import sys
from pathlib import Path

_V1 = Path(__file__).resolve().parents[2] / "heldout_traits" / "work" / "apply_edits.py"


def main(trait: str) -> None:
    spec = importlib.util.spec_from_file_location("heldout_v1_apply_edits", _V1)
    assert spec is not None and spec.loader is not None, _V1
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(trait, work=Path(__file__).resolve().parent)


if __name__ == "__main__":
    main(sys.argv[1])
