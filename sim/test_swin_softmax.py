"""Each softmax candidate's row unit under Verilator on the bundled Swin's real window rows of its
shifted block, masks included (issue 19): every output, masked elements' too, equals the golden
masked softmax, which the integer Swin itself computed on those rows (the long run over more
images: ``python bench/swin_rows.py``)."""
import pytest

from intvit.golden_model.vectors import save_vectors
from intvit.sim.swin_rows import WINDOW_ROW, BundledSwinRows
from intvit.sim.verify import verify

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

IMAGES = 2
ROWS = 600
"""Rows from the first images: an image's shifted block has 4 windows x 2 heads x 49 rows."""


@pytest.fixture(scope="module")
def swin_rows():
    return BundledSwinRows()


@pytest.mark.parametrize("method", ["iptq", "ivit", "ibert", "fqvit"])
def test_softmax_unit_equals_golden_on_masked_window_rows(swin_rows, method, tmp_path):
    vectors = swin_rows.vectors(method, IMAGES, ROWS)
    keeps = vectors.row_keeps()
    masked = sum(not keep.all() for keep in keeps)
    assert len(keeps) == ROWS and masked >= 100  # 3 of an image's 4 windows are cut
    assert vectors.lengths.max() == WINDOW_ROW
    path = save_vectors(tmp_path / "rows.npz", vectors)
    outcome = verify(f"softmax/{method}", lanes=1, max_row=WINDOW_ROW, work_dir=tmp_path,
                     vectors_path=path)
    assert outcome.result.mismatches == 0, outcome.summary()
    assert outcome.result.checked == ROWS * WINDOW_ROW
