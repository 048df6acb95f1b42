"""Shared fixtures for the training tests: one tiny model per session, synthetic chats."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from sealtune.data.records import Message, Record
from sealtune.train.tiny import make_tiny

RecordsFactory = Callable[..., list[Record]]

_ASKS = ("我的银行卡被冻结了，请帮我处理。", "When will my order arrive?",
         "请问怎么修改登录密码？", "My card was charged twice.")
_REPLIES = ("您好，已为您提交申请，请留意短信通知。", "Your order ships tomorrow.",
            "请在设置页面点击修改密码。", "I have opened a refund request for you.")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (seed 0), built once per session; tests must not modify it."""
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture
def make_records() -> RecordsFactory:
    """``make_records(n)``: n short synthetic conversations (system, user, assistant)."""

    def make(n: int = 16) -> list[Record]:
        return [Record(id=f"c{i}", line=i + 1, messages=[
            Message("system", "你是客服助手。You are a support assistant."),
            Message("user", f"{_ASKS[i % 4]} #{i}"),
            Message("assistant", _REPLIES[i % 4])]) for i in range(n)]

    return make
