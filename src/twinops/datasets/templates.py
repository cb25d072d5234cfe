"""Instructions and generic answers built from the author's passage by fixed templates.

When the generator writes no usable request for a passage (see ``requests.request_problem``), when
its time budget is spent, or for the views only templates make, the instruction comes from here.
Every template asks a question or makes a request, and each view rotates through its templates by
a hash of the chunk (and view), so the same chunk always gets the same instruction.

Views: what part of the author's text a row answers with (one chunk gives several rows):

- ``passage``: the whole chunk, cleaned. The generator's back-translated request, else one of
  ``PASSAGE_TEMPLATES`` over the chunk's key phrases (``text.key_phrases``, weighed by how often the
  document repeats them) and its document title.
- ``paragraph``: each paragraph of a chunk of two or more (``paragraph_words`` words or more), with
  one of ``PARAGRAPH_TEMPLATES`` over that paragraph's key phrase.
- ``continuation``: the chunk after its first sentence, asked for by ``CONTINUATION_TEMPLATE``
  with that first sentence (the author's opening, to go on in their voice), when the two share a
  content word.
- ``document``: a training document's whole text (trimmed), asked for by ``DOCUMENT_TEMPLATES``
  with its title; one row per document, not per chunk.

``generic_answer`` is the cheap stand-in for the base model's answer, the rejected side of a
preference pair when the generator gave none: an assistant-style paragraph that names the topic
and commits to nothing (``GENERIC_ANSWERS``, rotated the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from twinops.datasets.requests import content_words
from twinops.datasets.text import key_phrases, sentences, words
from twinops.domain.hashing import content_hash

View = Literal["passage", "paragraph", "continuation", "document"]
VIEWS: tuple[View, ...] = ("passage", "paragraph", "continuation", "document")

# {first} and {second}: the two best key phrases of the text; {title}: its document's title.
PASSAGE_TEMPLATES = (
    "Write a paragraph, in your own voice, about {first} and {second}.",
    "What do you think about {first}, and where does {second} come in?",
    "Explain {first} the way you would in your post “{title}”.",
    "How do you approach {first} and {second}?",
    "Share your experience with {first}: what have you learned about {second}?",
    "Why does {first} matter, in your experience?",
)
PARAGRAPH_TEMPLATES = (
    "Write a short paragraph about {first}.",
    "What is your take on {first}?",
    "Describe, in a few sentences, how you think about {first}.",
    "In your post “{title}”, what do you say about {first}?",
)
CONTINUATION_TEMPLATE = "Continue this in your own voice: “{opening}”"
DOCUMENT_TEMPLATES = (
    "Write a blog post titled “{title}”.",
    "Write your post “{title}”, in your own voice.",
)
# Assistant prose with no opinion and no experience: what DPO should move the twin away from.
GENERIC_ANSWERS = (
    "That is a great question. {First} is a broad topic with many aspects to consider. In general, "
    "it is important to understand the context, weigh the pros and cons, and follow established best "
    "practices. Different teams may have different needs, so it is always a good idea to do further "
    "research. In conclusion, the right approach to {first} depends on your goals.",
    "There are several factors to consider when it comes to {first}. First, you should define your "
    "requirements clearly. Second, you should evaluate the available options, including {second}. "
    "Finally, you should monitor the results and adjust as needed. Overall, {first} can provide "
    "significant benefits when implemented correctly.",
    "{First} and {second} are important concepts in modern technology. They can help organizations "
    "improve efficiency, reduce costs, and achieve better outcomes. However, it is essential to "
    "consider the potential challenges and limitations. By following best practices, you can make "
    "the most of {first}.",
)
# Shortest opening sentence worth continuing from, and longest one quoted in an instruction.
OPENING_WORDS = (5, 40)


def rotation(options: Sequence[str], *key: object) -> str:
    """The option a hash of ``key`` picks: the same chunk always gets the same template."""
    return options[int(content_hash("template", *key)[:8], 16) % len(options)]


def _phrases(text: str, title: str, context: str = "") -> tuple[str, str]:
    found = key_phrases(text, 2, context=context)
    fallback = title or "this subject"
    first = found[0] if found else fallback
    second = found[1] if len(found) > 1 else fallback
    return first, second


def passage_instruction(text: str, title: str, key: str, context: str = "") -> str:
    """``context``: the whole document, whose repeated phrases make the better topics."""
    first, second = _phrases(text, title, context)
    template = rotation(PASSAGE_TEMPLATES, key, "passage") if title else PASSAGE_TEMPLATES[0]
    return template.format(first=first, second=second, title=title)


def paragraph_instruction(text: str, title: str, key: str, context: str = "") -> str:
    first, _ = _phrases(text, title, context)
    options = PARAGRAPH_TEMPLATES if title else PARAGRAPH_TEMPLATES[:3]
    return rotation(options, key, "paragraph").format(first=first, title=title)


def document_instruction(title: str, key: str) -> str:
    return rotation(DOCUMENT_TEMPLATES, key, "document").format(title=title)


def continuation(text: str) -> tuple[str, str] | None:
    """(instruction, the rest of ``text``) when its first sentence is a fair opening, else None.

    A fair opening is ``OPENING_WORDS`` long and shares a content word with the rest (one that
    does not lead into it teaches nothing about going on in the author's voice).
    """
    parts = sentences(text)
    if len(parts) < 2:
        return None
    opening = parts[0]
    if not OPENING_WORDS[0] <= len(words(opening)) <= OPENING_WORDS[1]:
        return None
    rest = text[text.index(opening) + len(opening) :].strip()
    if not content_words(opening) & content_words(rest):
        return None
    opening = " ".join(opening.split())
    return CONTINUATION_TEMPLATE.format(opening=opening), rest


def generic_answer(text: str, title: str, key: str, context: str = "") -> str:
    """A generic assistant answer on the topic of ``text``: the cheap rejected side of a pair."""
    first, second = _phrases(text, title, context)
    template = rotation(GENERIC_ANSWERS, key, "answer")
    return template.format(first=first, second=second, First=first[:1].upper() + first[1:])
