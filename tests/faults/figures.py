"""The figures of each fault case (pure: no I/O), printed as the table in docs/security.md."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = (
    "case", "clients", "consumers crashed", "stream deliveries", "messages lost", "duplicates",
    "dropped connections",
    "max reconnect s", "all connected s", "flowing again s", "reloads (epoch)", "not_delivered",
)  # fmt: skip


@dataclass(frozen=True)
class CaseFigures:
    """What one fault case measured (times in seconds, from the fault's start or end)."""

    case: str
    clients: int
    crashed: int  # tracebacks in worker logs + 1011 closes + worker pids changed unexpectedly
    delivered: int  # stream messages the clients received and checked for gaps
    lost: int  # offsets a resuming client never received
    duplicates: int
    drops: int
    max_reconnect: float  # longest time one client took from its drop to being served again
    all_connected: float  # from the fault's start until every client was served again
    flowing: float  # from the fault's end until every stream client got a message sent after it
    reloads_epoch: int
    not_delivered: int

    def row(self) -> tuple[str, ...]:
        return (
            self.case, str(self.clients), str(self.crashed), str(self.delivered), str(self.lost),
            str(self.duplicates),
            str(self.drops), f"{self.max_reconnect:.2f}", f"{self.all_connected:.2f}",
            f"{self.flowing:.2f}", str(self.reloads_epoch), str(self.not_delivered),
        )  # fmt: skip


FIGURES: list[CaseFigures] = []


def figures_table(figures: list[CaseFigures]) -> str:
    """A Markdown table, one row per case."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(f.row()) + " |" for f in figures]
    return "\n".join(lines)
