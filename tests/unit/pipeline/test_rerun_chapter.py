"""data_scripts/rerun_chapter.py: each run gets its own absolute, empty data folder."""

import json
from pathlib import Path


def test_a_relative_work_folder_gives_the_chapters_an_absolute_empty_data_folder(
    tmp_path, monkeypatch, load_script
):
    script = load_script("rerun_chapter")
    seen = []

    def fake_run(cmd, cwd, env, check):
        data = Path(env["CIRLIB_DATA_DIR"])
        seen.append((data, sorted(data.iterdir())))
        stage = Path(cmd[cmd.index("--stage") + 1])
        chapter = cmd[cmd.index("--only") + 1]
        (stage / "notebooks").mkdir(parents=True, exist_ok=True)
        glued = {
            "output_type": "display_data",
            "metadata": {"scrapbook": {"name": "x", "mime_prefix": ""}},
            "data": {"text/plain": "1.5"},
        }
        nb = {"cells": [{"cell_type": "code", "outputs": [glued]}]}
        (stage / "notebooks" / f"{chapter}.ipynb").write_text(json.dumps(nb))

    monkeypatch.setattr(script.subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work" / "data-a").mkdir(parents=True)
    (tmp_path / "work" / "data-a" / "left-over").write_text("from an earlier run")

    glued = script.run_once(["01_x"], "smoke", Path("work"), "a")

    assert glued == {"01_x": {"x": "1.5"}}
    ((data, contents),) = seen
    assert data.is_absolute()  # cirlib refuses a relative CIRLIB_DATA_DIR
    assert data == tmp_path / "work" / "data-a"
    assert contents == []  # emptied before the run
