"""What following each suggestion costs per keystroke: `python3 dev.py bench acceptance`.

Replays typing through real code (modules of packages installed here): at each keystroke
a suggestion is shown (the file's next 40 characters, as a model that guessed right would
have it), then typed through character by character; every `--dismiss-every` keystrokes
the user types something else instead, and every `--accept-every` the editor reports an
accept (the item's command). The tracker (features/acceptance.py) runs as the completion
feature runs it, with the real sink (remote/acceptance.AcceptanceLog, SQLite, flushed in
its thread). Side by side: the time of a keystroke's `shown` call with tracking, and the
same loop without it (the string slicing the feature does anyway), so the ratio and the
difference are ours. Prints a table and writes bench/results/acceptance-*.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.features.acceptance import Acceptance  # noqa: E402
from aiguilleur.remote.acceptance import AcceptanceLog, acceptance_rows  # noqa: E402
from bench.common import installed_modules  # noqa: E402


def files(n: int, seed: int) -> list[Path]:
    found = [p for p in installed_modules() if 20_000 < p.stat().st_size < 200_000]
    return random.Random(seed).sample(found, n)


def replay(
    text: str,
    start: int,
    keystrokes: int,
    tracked: bool,
    log: AcceptanceLog,
    rng: random.Random,
    dismiss_every: int,
    accept_every: int,
) -> list[float]:
    acc = Acceptance(log if tracked else None)
    uri = "file:///bench.py"
    doc = text[:start]
    rest = text[start:]
    tail = "\n\n" + text[:2000]
    times = []
    shown_id = 0
    suggestion = rest[:40]
    for k in range(keystrokes):
        if k % dismiss_every == dismiss_every - 1:
            ch = "#"  # something else than the suggestion
            suggestion = ""
        else:
            ch = rest[0] if rest else "x"
            rest = rest[1:]
        doc += ch
        offset = len(doc)
        full = doc + tail  # what stands after the cursor: not the text typed next
        continued = bool(suggestion) and suggestion.startswith(ch)
        suggestion = suggestion[1:] if continued else rest[:40]
        t0 = time.perf_counter_ns()
        if tracked:
            shown_id = acc.shown(
                uri, full, offset, suggestion or "x", "cloud", "vendor/coder", continued
            )
            if k % accept_every == accept_every - 1:
                acc.reported(shown_id, None)
        else:
            # What the feature slices per keystroke anyway (the text before and after).
            _ = (full[max(0, offset - 32) : offset], full[offset : offset + 32], suggestion)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    acc.close(uri, doc + tail)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--keystrokes", type=int, default=2000, help="per file")
    parser.add_argument("--dismiss-every", type=int, default=25)
    parser.add_argument("--accept-every", type=int, default=60)
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args()
    out: dict[str, list[float]] = {"tracked": [], "untracked": []}
    with tempfile.TemporaryDirectory() as tmp:
        log = AcceptanceLog(Path(tmp) / "ledger.db")
        for i, path in enumerate(files(args.files, args.seed)):
            text = path.read_text(encoding="utf-8", errors="replace")
            start = len(text) // 3
            for arm in ("untracked", "tracked", "untracked", "tracked"):  # interleaved
                rng = random.Random(args.seed + i)
                out[arm] += replay(
                    text,
                    start,
                    args.keystrokes,
                    arm == "tracked",
                    log,
                    rng,
                    args.dismiss_every,
                    args.accept_every,
                )
        log.flush()
        rows = acceptance_rows(Path(tmp) / "ledger.db")
    summary = {}
    print(f"{'arm':10} {'keystrokes':>10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}")
    for arm, times in out.items():
        q = statistics.quantiles(times, n=100)
        summary[arm] = {
            "n": len(times),
            "p50_ms": statistics.median(times),
            "p90_ms": q[89],
            "p99_ms": q[98],
        }
        print(
            f"{arm:10} {len(times):>10} {summary[arm]['p50_ms']:>9.4f} {q[89]:>9.4f} {q[98]:>9.4f}"
        )
    extra = summary["tracked"]["p50_ms"] - summary["untracked"]["p50_ms"]
    print(f"\ntracking adds {extra * 1000:.1f} us per keystroke at p50 (goal: at most 100 us)")
    counted = {r.route: (r.shown, r.accepted, r.partial) for r in rows}
    print(f"counted (shown, accepted, partial): {counted}")
    result = ROOT / "bench" / "results" / f"acceptance-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(
        json.dumps(
            {"summary": summary, "extra_p50_ms": extra, "counted": counted, "args": vars(args)},
            indent=1,
        )
    )
    print(f"wrote {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
