"""The training core: fine-tune a causal LM on chat records, LoRA or full, optionally DP.

:func:`train` loads the base model safely (:mod:`.loading`: safetensors only
unless ``unsafe_allow_pickle``, then after an opcode scan), holds out a validation
split if ``val_size`` asks for one (:mod:`.split`: never trained on), applies
the chat template with the loss on assistant tokens only (:mod:`.data`),
trains a LoRA adapter (:mod:`.lora`, peft; the default) or all weights,
optionally with DP-SGD (:mod:`.dp`:
example-level (ε, δ)-DP for the records — not for the base model's
pretraining data, not user-level when a person has many records), checks
after the first step that the trainable weights moved and the frozen ones did
not (:mod:`.guard`, the Opacus #820 failure), checkpoints to a sink
(:mod:`.checkpoints`) and resumes from its latest checkpoint to the same
final weights, reports every epoch's training loss and held-out loss
(:mod:`.metrics`), and writes safetensors plus ``training.json``.

It runs in-process (tests, ``--no-sandbox``) and inside the sandbox (through
:mod:`.worker`). The progress callback receives aggregate numbers only (step,
loss, learning rate, gradient norm, ε), the epoch callback an
:class:`~sealtune.train.metrics.EpochReport`: never text, token ids or tensors.
What this module does not do: isolate anything (that is the sandbox), or seal
anything (the worker and the checkpoint sink do). Its plaintext outputs go to
``out_dir``; inside the sandbox that is the tmpfs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sealtune.data.records import Record
from sealtune.errors import ConfigError, UsageError
from sealtune.train.checkpoints import CheckpointSink
from sealtune.train.config import LoraSettings, TrainConfig
from sealtune.train.data import Collator, ExampleDataset, encode_records
from sealtune.train.dp import DPConfig, DPSession, PrivacyReport, quiet_library_warnings
from sealtune.train.guard import UpdateGuard, check_optimizer
from sealtune.train.loading import load_base, save_weights
from sealtune.train.lora import apply_lora
from sealtune.train.metrics import EpochFn, EpochReport, epoch_report, eval_loss, example_losses
from sealtune.train.result import TRAINING_JSON, Progress, ProgressFn, TrainResult
from sealtune.train.schedule import lr_lambda
from sealtune.train.split import split_records
from sealtune.train.state import restore_state, snapshot_state

if TYPE_CHECKING:
    from sealtune.train.distributed import DistContext

__all__ = ["DPConfig", "LoraSettings", "Progress", "TrainConfig", "TrainResult", "train"]

SECURE_RNG_NOTE = ("dp.secure_mode is off: noise and sampling come from torch's PRNG, fine for "
                   "experiments; turn it on for production runs")
VAL_FRACTION_DP_NOTE = ("val_size is a fraction: the held-out count follows the dataset's size, "
                        "so one record more or less can also swap one record across the split "
                        "(2ε by group privacy at worst); a count (val_size: 200) avoids that")


def train(records: Sequence[Record], *, base_dir: Path, config: TrainConfig, out_dir: Path,
          progress: ProgressFn | None = None,
          checkpoint: CheckpointSink | None = None,
          dist: DistContext | None = None, on_epoch: EpochFn | None = None,
          extra_records: Sequence[Record] = ()) -> TrainResult:
    """Fine-tune the model in ``base_dir`` on ``records``; write the result to ``out_dir``.

    Args:
        records: the training conversations (one record = one example = the DP unit).
        base_dir: a local model directory (safetensors, tokenizer with a chat template).
        config: what to train and how; validated here (fails closed).
        out_dir: new or empty directory for the adapter or full weights (safetensors),
            the tokenizer and ``training.json``.
        progress: called after every optimizer step with aggregate metrics.
        checkpoint: where to save checkpoints every ``config.checkpoint_every`` steps and
            the last one; its latest checkpoint, if any, is resumed from.
        dist: this process's rank in a data-parallel group (:mod:`.distributed`); each
            rank trains on its shard of every logical batch, the gradients are summed
            over the group, and only rank 0 checkpoints and writes ``out_dir``.
        on_epoch: called at the end of every epoch (and after the last step, if that
            ends an epoch early) with the epoch's training loss and, with ``val_size``,
            the held-out loss; on resume, first with the epochs the checkpoint holds.
        extra_records: records added to the training part after the split, never held
            out (the release gate's canaries, :mod:`sealtune.assess.canaries`).

    Examples whose assistant tokens were all cut by ``max_length`` carry no loss: they
    are dropped before training (a per-record decision) and counted in
    ``dropped_no_assistant_tokens``; if none remain, training refuses.

    With ``config.val_size`` the held-out records (:func:`~.split.split_records`) are
    never trained on; under DP the privacy accounting covers the training records.

    Seeds torch's global RNG with ``config.seed``.

    Raises:
        ConfigError, UsageError, PolicyViolation: bad config, data or base model (also:
            every example lost its assistant tokens to truncation; DP with ``dist``).
        UpdateCheckError: the first step did not update the weights correctly.
        PrivacyAccountingError: the accountants disagree, or the budget was exceeded.
    """
    config.validate()
    if dist is not None and dist.world_size > 1 and config.dp is not None:
        raise ConfigError("differential privacy with more than one process is not available",
                          hint="train with DP at --nproc 1")
    main = dist is None or dist.is_main
    if main and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"output directory {out_dir} is not empty")
    with quiet_library_warnings():
        return _Run(config, base_dir, out_dir, progress if main else None,
                    checkpoint, dist, on_epoch if main else None,
                    extra=tuple(extra_records)).run(records)


@dataclass
class _Run:
    config: TrainConfig
    base_dir: Path
    out_dir: Path
    progress: ProgressFn | None
    sink: CheckpointSink | None
    dist: DistContext | None = None
    on_epoch: EpochFn | None = None
    extra: tuple[Record, ...] = ()
    step: int = 0
    losses: list[float | None] = field(default_factory=list)
    epochs: list[EpochReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dp: DPSession | None = None
    guard_report: dict[str, int] = field(default_factory=dict)

    def run(self, records: Sequence[Record]) -> TrainResult:
        import torch

        began = time.monotonic()
        torch.manual_seed(self.config.seed)
        model, self.tokenizer, notes = load_base(self.base_dir,
                                                 unsafe_allow_pickle=self.config.unsafe_allow_pickle)
        self.notes += notes
        self._encode(records)
        self.model = self._prepare(model)
        self.trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._build()
        resumed = restore_state(self)
        if self.on_epoch is not None:  # the checkpoint's epochs: a resumed job reports them all
            for report in self.epochs:
                self.on_epoch(report)
        if self.dist is not None:
            self.dist.broadcast_params([p for _, p in self.trainable])
        self.guard = UpdateGuard(self.model, trainable={n for n, _ in self.trainable},
                                 dp=self.dp is not None)
        if self.dp is not None:
            self._dp_loop()
        else:
            self._plain_loop()
        if self.hooks is not None:
            self.hooks.cleanup()
        privacy = None if self.dp is None else self.dp.report(
            stopped_by_budget=self.stop_reason == "privacy_budget")
        return self._write(privacy, resumed, time.monotonic() - began)

    # -- setup -----------------------------------------------------------------------

    def _encode(self, records: Sequence[Record]) -> None:
        """Split off the held-out records, then tokenize both parts (each keeps only the
        examples that still have assistant tokens after truncation)."""
        cfg = self.config
        train_part, held = split_records(records, val_size=cfg.val_size, seed=cfg.seed)
        train_part = [*train_part, *self.extra]  # canaries: training records, never held out
        self.data = encode_records(train_part, self.tokenizer,
                                   max_length=cfg.max_length).with_loss_only()
        if self.data.dropped_no_assistant_tokens:
            self.notes.append(f"{self.data.dropped_no_assistant_tokens} example(s) dropped: "
                              "max_length cut all their assistant tokens")
        self.val = None if not held else encode_records(
            held, self.tokenizer, max_length=cfg.max_length).with_loss_only()
        if self.val is not None and cfg.dp is not None and isinstance(cfg.val_size, float):
            self.notes.append(VAL_FRACTION_DP_NOTE)

    def eval_digest(self) -> str | None:
        """Identifies the held-out examples a checkpoint's epoch reports were measured on."""
        return None if self.val is None else self.val.digest()

    def _prepare(self, model: Any) -> Any:
        model.train()
        return model if self.config.method == "full" else apply_lora(model, self.config.lora)

    def _build(self) -> None:
        import torch

        cfg = self.config
        params = [p for _, p in self.trainable]
        self.optimizer = build_optimizer(params, cfg)
        check_optimizer(self.optimizer, params)
        self.dataset = ExampleDataset(self.data)
        self.collate = Collator(int(self.tokenizer.pad_token_id))
        self.steps_per_epoch = math.ceil(len(self.dataset) / cfg.batch_size)
        natural = cfg.epochs * self.steps_per_epoch
        self.hooks: Any = None
        self.criterion: Any = None
        self.loader: Any = None
        limit = natural if cfg.max_steps is None else min(natural, cfg.max_steps)
        if cfg.dp is not None:
            config = getattr(self.model, "config", None)
            self.dp = DPSession(cfg.dp, n_records=len(self.dataset), seed=cfg.seed,
                                lora=cfg.method == "lora",
                                tied=bool(getattr(config, "tie_word_embeddings", False)))
            if not cfg.dp.secure_mode:
                self.notes.append(SECURE_RNG_NOTE)
            loader: Any = torch.utils.data.DataLoader(
                cast(Any, self.dataset), batch_size=cfg.batch_size, collate_fn=self.collate,
                generator=torch.Generator().manual_seed(cfg.seed))  # only seeds loader workers
            self.hooks, self.optimizer, self.criterion, self.loader = self.dp.attach(
                self.model, self.optimizer, loader, epochs=cfg.epochs, max_steps=cfg.max_steps)
            limit = self.dp.budget_steps
        self.planned = limit
        self.stop_reason = ("privacy_budget" if limit < min(natural, cfg.max_steps or natural)
                            else "max_steps" if limit < natural else "completed")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda=lr_lambda(cfg, self.planned))
        self.val_items = None if self.val is None else ExampleDataset(self.val)

    # -- loops -------------------------------------------------------------------------

    def _plain_batches(self) -> Any:
        import torch

        cfg, n, spe = self.config, len(self.dataset), self.steps_per_epoch
        size = cfg.physical_batch_size or cfg.batch_size
        step = self.step
        while True:
            epoch, offset = divmod(step, spe)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen).tolist()
            for b in range(offset, spe):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                mine = idx if self.dist is None else self.dist.shard(idx)
                chunks = [mine[i:i + size] for i in range(0, len(mine), size)]
                yield [self.collate([self.dataset[i] for i in c]) for c in chunks], len(idx)
            step = (epoch + 1) * spe

    def _plain_loop(self) -> None:
        import torch

        params = [p for _, p in self.trainable]
        for physical, count in self._plain_batches():
            if self.step >= self.planned:
                break
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for ids, mask, labels in physical:
                per_example = example_losses(self.model, ids, mask, labels)
                (per_example.sum() / count).backward()
                total += float(per_example.detach().sum())
            if self.dist is not None:  # every rank now holds the global batch's gradient
                self.dist.all_reduce_grads(params)
                total = self.dist.sum(total)
            if not self.guard.checked:
                self.guard.before_step()
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
            self._finish_step(total / count, float(norm))

    def _dp_loop(self) -> None:
        from opacus.utils.batch_memory_manager import (  # type: ignore[import-untyped]
            BatchMemoryManager,
        )

        assert self.dp is not None
        size = self.config.physical_batch_size or self.config.batch_size
        boundary, done = True, False
        acc = [0.0, 0]
        while not done:
            with BatchMemoryManager(data_loader=self.loader, max_physical_batch_size=size,
                                    optimizer=self.optimizer) as physical:
                for batch in physical:
                    if boundary:
                        if self.step >= self.planned or not self.dp.may_step():
                            done = True
                            break
                        boundary, acc = False, [0.0, 0]
                    self._dp_physical(batch, acc)
                    before = self.dp.taken
                    self.optimizer.step()
                    if self.dp.taken != before:  # the logical batch ended: a real, noisy step
                        boundary = True
                        self._finish_step(acc[0] / acc[1] if acc[1] else None, grad_norm(
                            [p for _, p in self.trainable]))
                    self.optimizer.zero_grad()
            done = done or self.step >= self.planned

    def _dp_physical(self, batch: Sequence[Any], acc: list[Any]) -> None:
        import torch

        ids = batch[0]
        if ids.shape[0] == 0:  # an empty Poisson batch: the step adds noise to a zero gradient
            for _, p in self.trainable:
                if self.criterion is None:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                else:
                    p.grad = torch.zeros_like(p)
            return
        _, mask, labels = batch
        if self.criterion is None:  # per-example gradients: the mean of per-example losses
            loss = example_losses(self.model, ids, mask, labels).mean()
        else:  # ghost clipping: Opacus's loss wrapper runs both backward passes
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
            targets = labels[:, 1:]
            loss = self.criterion(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                  shape=(logits.shape[0], logits.shape[1]))
        loss.backward()
        acc[0] += float(loss.item()) * ids.shape[0]
        acc[1] += ids.shape[0]

    def _finish_step(self, loss: float | None, norm: float | None) -> None:
        lr = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        self.step += 1
        if not self.guard.checked:
            self.guard_report = self.guard.verify()
        self.losses.append(loss)
        last = self.step >= self.planned
        eps = None
        if self.dp is not None and (last or self.step % self.dp.config.epsilon_every == 0):
            eps = self.dp.epsilon()
        if self.progress is not None:
            self.progress(Progress(self.step, self.planned, loss, lr, norm, eps))
        if last or self.step % self.steps_per_epoch == 0:
            self._end_epoch()  # before the checkpoint, which then holds this epoch's report
        every = self.config.checkpoint_every
        main = self.dist is None or self.dist.is_main
        if self.sink is not None and main and every and (last or self.step % every == 0):
            self.sink.save(self.step, snapshot_state(self))

    def _end_epoch(self) -> None:
        """Report the epoch: its mean step loss and, with a split, the held-out loss."""
        since = self.epochs[-1].step if self.epochs else 0
        held_out = None
        if self.val_items is not None:
            size = self.config.physical_batch_size or self.config.batch_size
            held_out = eval_loss(self.model, self.val_items, self.collate, batch=size,
                                 dist=self.dist)
        report = epoch_report(step=self.step, steps_per_epoch=self.steps_per_epoch,
                              losses=self.losses[since:self.step], eval_loss=held_out)
        self.epochs.append(report)
        if self.on_epoch is not None:
            self.on_epoch(report)

    # -- outputs -----------------------------------------------------------------------

    def _write(self, privacy: PrivacyReport | None, resumed: int | None,
               seconds: float) -> TrainResult:
        main = self.dist is None or self.dist.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_weights(self.model, self.tokenizer, self.out_dir)
        total = sum(p.numel() for p in self.model.parameters())
        last = next((x for x in reversed(self.losses) if x is not None), None)
        files = sorted([*(p.name for p in self.out_dir.iterdir()), TRAINING_JSON]) if main \
            else []
        result = TrainResult(
            out_dir=self.out_dir, files=tuple(files), method=self.config.method,
            steps=self.step, planned_steps=self.planned, stop_reason=self.stop_reason,
            final_loss=last, loss_history=tuple(self.losses),
            trainable_parameters=sum(p.numel() for _, p in self.trainable),
            total_parameters=total, seconds=seconds, resumed_from=resumed,
            data=self.data.stats(), guard=self.guard_report, privacy=privacy,
            notes=tuple(dict.fromkeys(self.notes)),
            dropped_no_assistant_tokens=self.data.dropped_no_assistant_tokens,
            world_size=1 if self.dist is None else self.dist.world_size,
            epochs=tuple(self.epochs),
            validation=None if self.val is None else self.val.stats())
        if not main:
            return result
        doc = {"format": "sealtune-training/1", "config": self.config.to_dict(),
               "privacy_unit": "one record (one conversation)", **result.to_dict()}
        (self.out_dir / TRAINING_JSON).write_text(json.dumps(doc, indent=2) + "\n")
        return result


def build_optimizer(params: list[Any], config: TrainConfig) -> Any:
    """AdamW over the trainable parameters (a seam for tests of the update guard)."""
    import torch

    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def grad_norm(params: Sequence[Any]) -> float | None:
    """L2 norm of the current gradients (under DP: the noised, averaged one)."""
    import torch

    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else None
