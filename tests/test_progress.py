"""tgan.progress: a bar on a terminal, plain periodic lines elsewhere (no carriage returns)."""
import io

from tqdm import tqdm

from tgan.progress import LineProgress, progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_every_interval_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(total=100, desc="stage 1/3 MLE", unit="step", every=30.0, stream=out,
                       clock=clock)
    for _ in range(100):
        clock.t += 1.0  # one step per second
        bar.update(1)
        if bar.n == 40:
            bar.set_postfix(loss="2.310", tok_s="16012")
    bar.close()
    bar.close()  # closing twice writes once
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "stage 1/3 MLE: 30/100 (30%) 1.0 step/s, 70 s left"
    assert lines[1] == "stage 1/3 MLE: 60/100 (60%) 1.0 step/s, 40 s left; loss=2.310 tok_s=16012"
    assert lines[-1] == "stage 1/3 MLE: 100/100 (100%) 1.0 step/s, 100 s; loss=2.310 tok_s=16012"
    assert len(lines) == 4  # at 30, 60, 90 s and the end


def test_resumed_count_rate_and_iteration():
    out, clock = io.StringIO(), Clock()
    with LineProgress(total=50, initial=20, desc="x", every=10.0, stream=out, clock=clock) as bar:
        clock.t = 10.0
        bar.update(5)
    assert out.getvalue().splitlines()[0] == "x: 25/50 (50%) 0.5 it/s, 50 s left"
    seen = list(LineProgress(["a", "b"], desc="files", stream=out, clock=clock))
    assert seen == ["a", "b"] and out.getvalue().splitlines()[-1].startswith("files: 2/2 (100%)")
    quiet = io.StringIO()
    LineProgress(total=3, disable=True, stream=quiet).close()
    assert quiet.getvalue() == ""


def test_progress_picks_a_bar_only_for_a_terminal():
    assert isinstance(progress(total=3, stream=Terminal()), tqdm)
    assert isinstance(progress(total=3, stream=io.StringIO()), LineProgress)
