"""Caption metrics of short answers — BLEU-1..4, METEOR, ROUGE-L, CIDEr — through pycocoevalcap, as ScanQA's official
`scripts/score.py` computes them: one hypothesis (the top-1 answer) and all references per question, both through
PTBTokenizer (lowercased, punctuation tokens removed), then each scorer over the whole set.

pycocoevalcap is the optional `captions` extra (`pip install spatialtune[captions]`); its PTBTokenizer and METEOR run
Java. Missing pieces never crash an eval: without the package every value is None with a note saying how to install
it; without `java` PTBTokenizer and METEOR are skipped (a note says so) and BLEU / ROUGE-L / CIDEr run on a Python
tokenisation (lowercase, words and single punctuation marks, PTB's punctuation tokens dropped) that only approximates
PTB's, so such numbers are not the official ones.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

CAPTION_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
INSTALL_HINT = "caption metrics need pycocoevalcap: pip install 'spatialtune[captions]'"
# pycocoevalcap's PTBTokenizer drops these tokens after tokenising.
PTB_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])
_WORD_OR_MARK = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\S")


def _one_line(text: str) -> str:
    """All whitespace (newlines, \\r, U+2028 …) as single spaces: PTBTokenizer reads one caption per line."""
    return " ".join(text.split())


def python_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """A Java-free stand-in for PTBTokenizer: lowercase words and marks, PTB's punctuation tokens removed."""
    return {k: [" ".join(t for t in _WORD_OR_MARK.findall(c.lower()) if t not in PTB_PUNCTUATIONS) for c in v] for k, v in captions.items()}


def ptb_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """pycocoevalcap's PTBTokenizer, with captions it drops (trailing empty lines) put back as empty strings."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    return {k: (tokenized.get(k, []) + [""] * len(v))[: len(v)] for k, v in captions.items()}


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of the predictions (one per question) against their references.

    Returns each metric by name (None where it could not be computed) and `note`, saying what was skipped and why.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return {**dict.fromkeys(CAPTION_KEYS), "tokenizer": None, "note": INSTALL_HINT}
    gts = {i: [_one_line(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_one_line(p)] for i, p in enumerate(predictions)}
    notes = []
    java = shutil.which("java") is not None
    if java:
        gts, res, tokenizer = ptb_tokenize(gts), ptb_tokenize(res), "PTBTokenizer"
    else:
        gts, res, tokenizer = python_tokenize(gts), python_tokenize(res), "python (approximates PTB)"
        notes.append("no `java` on PATH: PTBTokenizer and METEOR skipped; BLEU/ROUGE-L/CIDEr on a Python tokenisation, not the official numbers")
    scores: dict[str, Any] = dict.fromkeys(CAPTION_KEYS)
    scorers = [("BLEU", lambda: Bleu(4).compute_score(gts, res, verbose=0)[0]), ("ROUGE-L", lambda: Rouge().compute_score(gts, res)[0]),
               ("CIDEr", lambda: Cider().compute_score(gts, res)[0])]
    if java:
        scorers.append(("METEOR", lambda: _meteor(Meteor, gts, res)))
    for name, compute in scorers:
        try:
            value = compute()
        except Exception as e:  # a scorer failing (Java crash, odd text) costs that number, not the eval
            notes.append(f"{name} failed: {type(e).__name__}: {e}")
            continue
        if name == "BLEU":
            scores.update({f"BLEU-{n}": float(v) for n, v in enumerate(value, start=1)})
        else:
            scores[name] = float(value)
    return {**scores, "tokenizer": tokenizer, "note": "; ".join(notes) or None}


def _meteor(meteor_class, gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    """METEOR 1.5 over the set; the Java process is closed afterwards."""
    meteor = meteor_class()
    try:
        return meteor.compute_score(gts, res)[0]
    finally:
        del meteor
