"""Progress lines with the time left (issue 15: every long step shows an ETA)."""
from intvit.progress import Eta, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_left_is_extrapolated_from_the_pace_and_lines_are_throttled(capsys):
    clock = Clock()
    eta = Eta(clock)
    eta("scored", 0, 10)
    clock.now += 30
    eta("scored", 3, 10, "blocks.2.norm1")
    clock.now += 1  # within the interval: no line
    eta("scored", 4, 10)
    clock.now += 9
    eta("scored", 10, 10)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  scored 3/10 blocks.2.norm1 (elapsed 30 s, about 1 min 10 s left)",
                     "  scored 10/10 (elapsed 40 s, about 0 s left)"]


def test_durations_read_naturally():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]
