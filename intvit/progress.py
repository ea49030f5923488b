"""Progress lines with the elapsed time and an estimate of the time left, for long runs."""
import time

MIN_INTERVAL_S = 2.0
"""Lines of one task come at most this often (the last one always comes)."""


class Eta:
    """``eta(stage, done, total, what="")`` prints ``  stage done/total what (elapsed 12 s, about
    34 s left)``, the time left extrapolated from the average pace of the stage so far; a call
    with ``done == 0`` starts the stage's clock."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started: dict = {}
        self.printed: dict = {}

    def __call__(self, stage: str, done: int, total: int, what: str = "") -> None:
        now = self.clock()
        start = self.started.setdefault(stage, now)
        if done == 0:  # the stage begins: its clock starts, nothing to report yet
            self.started[stage] = now
            return
        if done < total and now - self.printed.get(stage, -MIN_INTERVAL_S) < MIN_INTERVAL_S:
            return
        self.printed[stage] = now
        elapsed = now - start
        left = elapsed / done * (total - done) if done else 0.0
        label = f" {what}" if what else ""
        print(f"  {stage} {done}/{total}{label} (elapsed {duration(elapsed)}, about "
              f"{duration(left)} left)", flush=True)


def duration(seconds: float) -> str:
    """``12 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
