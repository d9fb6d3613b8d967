"""Issue 18, case 8: a full disk while saving a checkpoint ended in a traceback (the data was
safe). Now one line naming the checkpoint and the problem; the pointer still names the previous,
intact checkpoint, and no temporary file is left behind."""

import errno
import os

import torch
from reliability_helpers import TINY_TRAIN, assert_one_line_error, run_cli

from maskrcnn.training.checkpoint import load_checkpoint


def test_no_space_left_while_saving_the_second_checkpoint(tmp_path, shapes, capsys, monkeypatch):
    real_save = torch.save

    def disk_full_at_the_second_checkpoint(obj, f, *args, **kwargs):
        if ".model_0000002.pt." in str(getattr(f, "name", "")):
            f.write(b"the first bytes fit")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_the_second_checkpoint)
    ann, images = shapes
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "maskrcnn_r18_fpn", "--data", ann, "--images", images,
                           "--out", run, "--set", *TINY_TRAIN, "solver.max_iter=3", "solver.checkpoint_period=1")
    assert code == 2
    assert_one_line_error(err, "train", f"{run / 'model_0000002.pt'}: cannot write it (No space left on device); "
                                        "nothing was written")
    assert (run / "last_checkpoint").read_text() == "model_0000001.pt\n"
    assert load_checkpoint(run / "model_0000001.pt")["iter"] == 1  # intact
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert not (run / "model_0000002.pt").exists()
