"""The jobs package: what a job measures, and that reading the catalogue stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sealtune
from sealtune.train.jobs.run import CODE_DIR


def test_a_job_measures_the_whole_sealtune_package() -> None:
    # run.py sits two packages down (train/jobs/): the measured tree must still be all of
    # sealtune, not train/ alone, or a change to the sandbox or keys would go unmeasured.
    assert Path(sealtune.__file__).resolve().parent == CODE_DIR
    assert (CODE_DIR / "sandbox" / "launcher.py").is_file()


def test_reading_the_job_catalogue_loads_no_sandbox_and_no_worker() -> None:
    code = ("import json, sys; import sealtune.train.jobs.records; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sealtune.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    loaded = set(json.loads(out.stdout))
    assert "sealtune.train.jobs.records" in loaded
    assert not {"sealtune.sandbox.process", "sealtune.train.worker", "sealtune.train.jobs.run",
                "sealtune.keys.sealing"} & loaded
