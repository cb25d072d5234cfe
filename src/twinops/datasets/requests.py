"""What counts as an instruction a person would give: a question or a request, never chatter.

A small generator often answers the back-translation prompt with a remark about the passage ("I'm
glad you're happy with the golden set."), a summary of it, or a copy of its first sentence. None of
these is something a reader would type, so ``request_problem`` names what is wrong with a candidate
instruction, or returns None when it is usable:

- ``instruction_length``: fewer than ``min_words`` or more than ``max_words`` words;
- ``chatter``: first-person remarks, greetings and thanks ("I'm glad…", "Thank you…", "Great…");
- ``refusal`` and ``boilerplate``: refusals, and talk about "the passage" or "the text";
- ``not_a_request``: it neither ends with a question mark ("How…?", "Should…?") nor starts with a
  request verb ("Explain…", "Write…", "Please describe…");
- ``copies_passage``: half or more of its word 5-grams come straight from the passage it asks for;
- ``off_topic``: it shares no content word (three letters or more, not a stop word, not one of the
  ``GENERIC_WORDS`` every question has) with the passage: "What's the story behind the story?"
  or "What's the most effective way to fix a leaky faucet?" could be asked of anything.

The generator's instructions, the golden questions and the templates' output all pass through it.
"""

from __future__ import annotations

import re

from twinops.datasets.text import is_boilerplate, is_refusal, stop_words, word_ngrams, words

# The first word of a request (imperative), as readers write them.
REQUEST_VERBS = frozenset(
    (  # noqa: SIM905 - prose reads better than a list literal
        "explain describe write tell give list share summarize compare contrast discuss outline draft "
        "suggest recommend argue walk show help teach convince propose name define continue make create "
        "sketch compose rewrite review evaluate assess analyze analyse justify defend critique imagine "
        "design plan advise offer present recount reflect elaborate clarify illustrate demonstrate "
        "identify detail break"
    ).split()
)
_POLITE = frozenset({"please", "kindly", "now"})
# Remarks about the conversation, not requests: they open in the first person, with thanks, praise
# or agreement (a question may still open so), or say these things anywhere.
_CHATTER_OPENING = re.compile(
    r"^(i|i'm|im|i've|i'd|i'll|we|we're|we've|my|our|me|thank|thanks|glad|great|awesome|wonderful|"
    r"nice|yes|no|ok|okay|sure|absolutely|of course|congratulations|hello|hi|hey|welcome|wow)\b",
    re.IGNORECASE,
)
_CHATTER_ANYWHERE = re.compile(
    r"\b(i'm glad|i am glad|i'm happy|i am happy|happy to help|glad to help|i hope|hope this helps|"
    r"you're welcome|great job|well done|thank you|thanks for)\b",
    re.IGNORECASE,
)
# Words any question may share with any passage ("What's the most effective way to fix a leaky
# faucet?"): sharing only these is not being on topic.
GENERIC_WORDS = frozenset(
    (  # noqa: SIM905 - prose reads better than a list literal
        "thing way best most important interesting effective good great time people make keep use "
        "work lot really like fix help need want know think mind try trying tell say new big "
        "kind sort part case example idea question answer problem"
    ).split()
)
COPY_NGRAM = 5
COPY_SHARE = 0.5


def is_question_or_request(text: str) -> bool:
    """A question (opens with an interrogative, or ends with '?') that ends with '?', or a request:
    opens (after a polite word) with a request verb. "What has been a success:" is neither."""
    stripped = text.strip().strip("\"'`“”").strip()
    if stripped.endswith("?"):
        return True
    tokens = words(stripped)
    while tokens and tokens[0] in _POLITE:
        tokens = tokens[1:]
    return bool(tokens) and tokens[0] in REQUEST_VERBS


def copies_passage(instruction: str, passage: str) -> bool:
    """Half or more of the instruction's word 5-grams occur in the passage (too short: never)."""
    grams = word_ngrams(instruction, COPY_NGRAM)
    if len(words(instruction)) < COPY_NGRAM or not grams:
        return False
    return len(grams & word_ngrams(passage, COPY_NGRAM)) / len(grams) >= COPY_SHARE


def request_problem(  # noqa: PLR0911 - one return per named problem
    instruction: str, passage: str = "", *, min_words: int, max_words: int
) -> str | None:
    """Why ``instruction`` is not something a reader would ask for ``passage``; None when it is."""
    count = len(words(instruction))
    if count < min_words or count > max_words:
        return "instruction_length"
    if is_refusal(instruction):
        return "refusal"
    text = instruction.strip()
    if _CHATTER_ANYWHERE.search(text) or (_CHATTER_OPENING.search(text) and not text.endswith("?")):
        return "chatter"
    if is_boilerplate(instruction):
        return "boilerplate"
    if not is_question_or_request(instruction):
        return "not_a_request"
    if passage and copies_passage(instruction, passage):
        return "copies_passage"
    if passage and not (content_words(instruction) & content_words(passage)) - GENERIC_WORDS:
        return "off_topic"
    return None


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry its topic (three letters or more, not stop words nor
    contractions), with a plural's final s dropped so "outliers" meets "outlier"."""
    stop = stop_words()
    return {
        word.removesuffix("s")
        for word in words(text)
        if len(word) >= 3 and word not in stop and "'" not in word and "\u2019" not in word
    }
