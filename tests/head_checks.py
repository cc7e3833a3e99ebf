"""Assertions shared by the tests of the code-predicting heads (mamba, transformer)."""

from __future__ import annotations

import torch


def assert_causal(head, codes: torch.Tensor, ordering: str, changed_frame: int = 3) -> None:
    """Changing every code of ``changed_frame`` must leave all earlier logits untouched and move later ones.

    ``head.logits(codes)`` is ``(B, T', N, K)``. Frame ordering: row ``r`` sees frames ``<= r``, so
    rows ``< changed_frame`` may not change. Token ordering: the inputs are shifted by one, so
    everything up to and including the first code of ``changed_frame`` may not change.
    """
    changed = codes.clone()
    changed[:, changed_frame] = (changed[:, changed_frame] + 1) % head.num_codes
    with torch.no_grad():
        before, after = head.logits(codes), head.logits(changed)
    if ordering == "frame":
        same, moved = (before[:, :changed_frame], after[:, :changed_frame]), (before[:, changed_frame:], after[:, changed_frame:])
    else:
        flat_b, flat_a = before.flatten(1, 2), after.flatten(1, 2)
        cut = changed_frame * codes.shape[2] + 1
        same, moved = (flat_b[:, :cut], flat_a[:, :cut]), (flat_b[:, cut:], flat_a[:, cut:])
    torch.testing.assert_close(*same, atol=0, rtol=0)
    assert (moved[0] - moved[1]).abs().amax() > 1e-3  # later outputs do depend on the changed frame
