"""The pipeline: one declarative file, ``sealtune run pipeline.yaml``, every stage in order.

The public surface::

    from sealtune.pipeline import init_example, load_pipeline, run_pipeline, write_run_bundle

    init_example(Path("support"))                     # a commented example that runs as is
    pipeline = load_pipeline("support/pipeline.yaml")  # validated; errors at line:column
    result = run_pipeline(pipeline, ws)                # steps in order, cached when unchanged
    write_run_bundle(ws, result, Path("run.tar"))      # its signed evidence bundle

Layout: :mod:`sealtune.yaml_source` reads the file with positions, :mod:`.schema`
(with :mod:`.train_fields` and :mod:`.secret_keys`) validates it into frozen dataclasses,
:mod:`.cache` computes step keys, :mod:`.state` keeps the run state,
:mod:`.secret` the pipeline's sealed secret, :mod:`.steps` adapts the
stages, :mod:`.runner` runs them, :mod:`.bundle` writes a run's evidence
bundle, :mod:`.example` writes the example. The
file format is documented in ``docs/pipeline.md``.

What this protects against and what it does not: see each module.
"""

from sealtune.pipeline.bundle import check_bundle_path, write_run_bundle
from sealtune.pipeline.example import init_example
from sealtune.pipeline.runner import RunResult, StepRun, ensure_secret, run_pipeline
from sealtune.pipeline.schema import AssessStep, DataStep, Pipeline, TrainStep, load_pipeline
from sealtune.pipeline.state import StepRecord

__all__ = ["AssessStep", "DataStep", "Pipeline", "RunResult", "StepRecord", "StepRun", "TrainStep",
           "check_bundle_path", "ensure_secret", "init_example", "load_pipeline",
           "run_pipeline", "write_run_bundle"]
