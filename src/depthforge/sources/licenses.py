"""What a depth source may be used for: its licences, read from where the source states them, carried into every
file made from it, and checked against a policy before anything is downloaded or computed.

This module holds the records and the policy; `depthforge.sources.license_sources` reads them from model cards,
packages, checkpoints and exported files.

A source's licences are a list of records, one per thing it derives from (depthforge's code, the pretrained
encoder weights a recipe starts from, the foundation model it fine-tunes, the checkpoint it was initialised from)::

    {"license": "cc-by-nc-4.0", "terms": "non-commercial", "of": "hf:depth-anything/Depth-Anything-V2-Base-hf",
     "read_from": "models/base/README.md (model card, license field)"}

``terms`` is ``commercial`` (the licence allows commercial use; some, like OpenRAIL++, with use restrictions
named in ``note``), ``non-commercial`` (non-commercial or research-only) or ``unknown``. A licence that is not
stated stays ``unknown``: it is never guessed. ``--license-policy commercial`` refuses a source any of whose
records is not ``commercial``, naming the licence and where it was read.
"""

from __future__ import annotations

import os
import re

POLICIES = ("any", "commercial")
POLICY_ENV = "DEPTHFORGE_LICENSE_POLICY"  # the default policy of every command and of depthforge.load

# Hub licence ids (https://huggingface.co/docs/hub/repositories-licenses) whose terms allow commercial use.
COMMERCIAL = {"apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "isc", "zlib",
              "unlicense", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0",
              "cc-by-sa-4.0", "mpl-2.0", "lgpl-3.0", "gpl-3.0", "agpl-3.0", "artistic-2.0", "bsl-1.0", "ecl-2.0",
              "openrail", "openrail++", "creativeml-openrail-m", "bigscience-openrail-m", "odc-by", "pddl"}
# Commercial use allowed, with conditions a user must read.
RESTRICTED = {"openrail": "use-based restrictions (OpenRAIL)", "openrail++": "use-based restrictions (OpenRAIL++-M)",
              "creativeml-openrail-m": "use-based restrictions (CreativeML OpenRAIL-M)",
              "bigscience-openrail-m": "use-based restrictions (BigScience OpenRAIL-M)",
              "gpl-3.0": "copyleft", "agpl-3.0": "copyleft, also over a network", "cc-by-sa-3.0": "share-alike",
              "cc-by-sa-4.0": "share-alike", "lgpl-3.0": "weak copyleft", "mpl-2.0": "weak copyleft"}
NON_COMMERCIAL = {"cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0",
                  "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "apple-amlr", "apple-ascl-research"}
# Words of a licence text (a card's `license: other`) that restrict it to non-commercial or research use.
NON_COMMERCIAL_WORDS = re.compile(r"non[- ]?commercial|research[- ](?:purposes?|use)?\s*only|for research purposes|"
                                  r"not (?:be used )?for commercial|no commercial use|research-only", re.I)
# Licence texts recognised in a package's LICENSE file (the offline ImageNet weights' packages ship one).

PROJECT = "apache-2.0"  # pyproject.toml's licence: depthforge's own code, in every recipe it trains


class LicensePolicyError(ValueError):
    """A source refused by a licence policy; the message names the licence and where it was read."""


def terms_of(license_id: str | None, text: str = "") -> str:
    """``commercial``, ``non-commercial`` or ``unknown`` for a licence id (and, for ``other``, its text)."""
    lid = (license_id or "").strip().lower()
    if lid in COMMERCIAL:
        return "commercial"
    if lid in NON_COMMERCIAL or lid.startswith("cc-by-nc") or NON_COMMERCIAL_WORDS.search(text or ""):
        return "non-commercial"
    return "unknown"


def record(license_id: str | None, of: str, read_from: str, text: str = "", note: str = "") -> dict:
    """One licence record (see the module docstring); ``license_id`` None: not stated, so ``unknown``."""
    lid = (license_id or "unknown").strip().lower()
    out = {"license": lid, "terms": terms_of(lid, text), "of": of, "read_from": read_from}
    if text:
        out["text"] = " ".join(text.split())[:300]
    note = note or RESTRICTED.get(lid, "")
    if note:
        out["note"] = note
    return out


def derived(records: list[dict], how: str) -> list[dict]:
    """The records of what a model was made from (``how``: fine-tuned from, initialised from, exported from ...):
    the same licences, each saying how it reached the new model."""
    return [{**r, "via": f"{how} {r['of']}" if "via" not in r else f"{how} {r['of']}; {r['via']}"} for r in records]


def unique(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = (r["license"], r["of"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def overall(records: list[dict]) -> str:
    """The terms of a source made of several: non-commercial if any is, else unknown if any is (or none is known)."""
    terms = {r["terms"] for r in records}
    if "non-commercial" in terms:
        return "non-commercial"
    return "commercial" if terms == {"commercial"} else "unknown"


def summary(records: list[dict]) -> str:
    """One line: the distinct licences and the overall terms, e.g. ``apache-2.0 + cc-by-nc-4.0 (non-commercial)``."""
    ids = list(dict.fromkeys(r["license"] for r in records)) or ["unknown"]
    return f"{' + '.join(ids)} ({overall(records)})"


def describe(r: dict) -> str:
    """One record as a line: ``cc-by-nc-4.0 (non-commercial): hf:X, fine-tuned from hf:X; read from F``."""
    via = f", {r['via']}" if r.get("via") else ""
    note = f" [{r['note']}]" if r.get("note") else ""
    return f"`{r['license']}` ({r['terms']}{note}): {r['of']}{via}; read from {r['read_from']}"


def policy_of(given: str | None = None) -> str:
    """The policy in force: the one given, else $DEPTHFORGE_LICENSE_POLICY, else ``any``."""
    policy = (given or os.environ.get(POLICY_ENV) or "any").strip().lower()
    if policy not in POLICIES:
        raise LicensePolicyError(f"license policy {policy!r}: choose one of {', '.join(POLICIES)}")
    return policy


def check(records: list[dict], policy: str | None, what: str) -> None:
    """Refuse ``what`` under ``policy`` when any record's terms are not commercial (one line: licence, where read)."""
    if policy_of(policy) == "any":
        return
    bad = [r for r in records if r["terms"] != "commercial"]
    if bad:
        r = bad[0]
        via = f", {r['via']}" if r.get("via") else ""
        raise LicensePolicyError(
            f"{what}: licence {r['license']} of {r['of']} ({r['terms']}; read from {r['read_from']}{via}) is refused "
            "by --license-policy commercial; choose a source licensed for commercial use, or --license-policy any "
            "once you have checked its terms yourself")


def spec_name(spec: dict) -> str:
    """The file(s) or model a source spec names, for messages."""
    where = spec.get("checkpoint", spec.get("onnx", spec.get("model")))
    return ", ".join(map(str, where)) if isinstance(where, (list, tuple)) else str(where)
