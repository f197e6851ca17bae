"""Hits as the text ``softdb demo`` and ``softdb search`` print: rank, weight bar, score, id, summary."""

from __future__ import annotations

from typing import Any

__all__ = ["hit_rows", "print_hit_rows"]


def hit_rows(hits: Any, mode: str) -> list[dict[str, Any]]:
    """One query's SearchResult as ``[{"id", "score", "weight", "payload"}]`` ("weight": soft mode only)."""
    out = []
    for i, s, w, p in zip(
        hits.ids, hits.scores, hits.weights, hits.payloads if hits.payloads is not None else [None] * len(hits.ids)
    ):
        if i is None:
            continue
        row = {"id": i, "score": round(float(s), 6)}
        if mode == "soft":
            row["weight"] = round(float(w), 6)
        row["payload"] = p
        out.append(row)
    return out


def print_hit_rows(rows: list[dict[str, Any]], mode: str) -> None:
    """Print hits (dicts of :func:`hit_rows` or of ``softdb.views.search_record``), best first."""
    from softdb.render._html import snippet

    if mode == "soft":
        print(f"{'rank':>4}  {'weight':>6}  {'':<20} {'score':>6}  id — summary")
    else:
        print(f"{'rank':>4}  {'score':>6}  id — summary")
    for r, row in enumerate(rows, 1):
        text = snippet(row["payload"], 70)
        if mode == "soft":
            bar = "█" * round(row["weight"] * 20)
            print(f"{r:>4}  {row['weight']:>6.3f}  {bar:<20} {row['score']:>6.3f}  {row['id']} — {text}")
        else:
            print(f"{r:>4}  {row['score']:>6.3f}  {row['id']} — {text}")
