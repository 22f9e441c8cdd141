"""State directory layout and the errors a misconfigured one gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.store.state_dir import StateDirError, prepare_state_dir


def test_layout_is_created(tmp_path: Path) -> None:
    state = prepare_state_dir(tmp_path / "outrider-state")
    assert state.root == tmp_path / "outrider-state"
    assert sorted(p.name for p in state.root.iterdir()) == [
        "checkpoints", "plots", "probes", "references"
    ]
    assert state.incidents_db == state.root / "incidents.sqlite"
    assert state.plot_path(12, "firing") == state.root / "plots" / "incident-12-firing.png"
    assert state.plot_path(12, "resolved") == state.root / "plots" / "incident-12-resolved.png"
    with pytest.raises(ValueError, match="plots are drawn for firing, resolved, not 'pending'"):
        state.plot_path(12, "pending")
    assert prepare_state_dir(state.root) == state  # idempotent


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "plots").write_text("not a folder")
    with pytest.raises(StateDirError, match=r"state directory path .*plots exists and is not a"):
        prepare_state_dir(tmp_path / "state")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_folder_is_named(tmp_path: Path) -> None:
    root = tmp_path / "state"
    prepare_state_dir(root)
    (root / "checkpoints").chmod(0o500)
    try:
        with pytest.raises(StateDirError, match=r"checkpoints is not writable by uid"):
            prepare_state_dir(root)
    finally:
        (root / "checkpoints").chmod(0o700)
