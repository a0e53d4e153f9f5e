"""Prompt lookup: propose the tokens that followed the last occurrence of the current n-gram in the prompt and
the text so far (Saxena 2023; as in HF transformers and GenAI). Copying is common in real use (summaries,
answers over given passages, code edits) and a proposal costs no model call.
"""

from __future__ import annotations


class PromptLookup:
    """An index of every n-gram (1..max_ngram tokens) to the position after its latest occurrence, updated as the
    sequence grows, so each proposal costs O(max_ngram) dictionary lookups. Proposals follow n-grams of at least
    min_ngram tokens unless asked for shorter ones (a free slot: speculative.free_slot)."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2):
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            # Index the n-grams that end at the token before this one: their continuation starts here.
            end = len(self.tokens)
            for n in range(1, self.max_ngram + 1):
                if end >= n:
                    self.after[tuple(self.tokens[end - n:end])] = end
            self.tokens.append(token)

    def sync(self, sequence: list[int]) -> None:
        """Follow `sequence`, which only ever grows by appending (the decoding loop's)."""
        if len(sequence) > len(self.tokens):
            self.extend(sequence[len(self.tokens):])

    def propose(self, limit: int, shortest: int | None = None) -> list[int]:
        """Up to `limit` tokens that followed the longest n-gram (of at least `shortest` tokens, min_ngram by
        default) ending the sequence, from its latest earlier occurrence; [] when there is none."""
        if limit <= 0:
            return []
        end = len(self.tokens)
        for n in range(self.max_ngram, (shortest or self.min_ngram) - 1, -1):
            if end < n:
                continue
            start = self.after.get(tuple(self.tokens[end - n:end]))
            if start is not None and start < end:  # start == end would be the suffix itself (indexed next step)
                return self.tokens[start:min(start + limit, end)]
        return []


def copy_walks(prompt: list[int], answer: list[int], limits: range) -> dict[int, tuple[list[tuple[int, int]], int]]:
    """Per proposal limit, the steps prompt lookup would have verified while decoding `answer` after `prompt`,
    proposing up to that many tokens wherever an n-gram matched: ([(proposed, kept), ...], answer tokens those steps
    gave). The first answer token is the prefill's. For pricing an engine that did not run this text
    (engines.EngineChoice). The index grows by the answer in order whatever the limit, so each position's
    proposal is read once, at the longest limit (a shorter one proposes its prefix)."""
    lookup = PromptLookup()
    lookup.extend(list(prompt) + list(answer[:1]))
    longest = max(limits)
    proposals = []
    for i in range(1, len(answer)):
        proposals.append(lookup.propose(min(longest, len(answer) - i)))
        lookup.extend(answer[i:i + 1])
    walks = {}
    for limit in limits:
        steps, covered, i = [], 0, 1
        while i < len(answer):
            proposal = proposals[i - 1][:limit]
            advance = 1
            if proposal:
                kept = 0
                while kept < len(proposal) and proposal[kept] == answer[i + kept]:
                    kept += 1
                advance = min(kept + 1, len(answer) - i)
                steps.append((len(proposal), kept))
                covered += advance
            i += advance
        walks[limit] = (steps, covered)
    return walks
