"""``drop_record`` and ``drop_field``: remove the record, or the field, that holds a value.

``drop_record`` removes the whole record from the dataset (counted in the
report). ``drop_field`` empties the message that holds the value (the turn
stays, with empty content, so the conversation keeps its structure) or
removes the kept extra field that holds it.

What this protects against: everything in the removed record or field,
including context around the value that a span-level operator would keep
(a name next to a diagnosis). What it does not: dropping records changes
the data distribution (and a pattern of what was dropped can itself say
something), and an emptied turn may teach the model odd dialogue.
"""

from __future__ import annotations

from typing import ClassVar

from sealtune.data.redact.base import Effect, Simple, register_operator


class DropRecord(Simple):
    """The ``drop_record`` operator."""

    name = "drop_record"
    effect: ClassVar[Effect] = "drop_record"


class DropField(Simple):
    """The ``drop_field`` operator."""

    name = "drop_field"
    effect: ClassVar[Effect] = "drop_field"


register_operator(DropRecord.name, DropRecord.factory)
register_operator(DropField.name, DropField.factory)
