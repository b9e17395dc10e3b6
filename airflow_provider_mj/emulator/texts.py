"""The emulator's describe and shorten answers: deterministic text, no state, no HTTP."""

from __future__ import annotations

import math
import random
import re

#: The numbers a describe or shorten answer puts before each prompt (as the models' parsers read them).
KEYCAPS = tuple(f"{n}\ufe0f\u20e3" for n in range(1, 10))

_SUBJECTS = ("a lighthouse on a windswept cliff", "a red fox sleeping in fresh snow",
             "a rainy city street at night", "an old library full of floating books",
             "a bowl of ramen on a wooden table", "a small sailboat on a calm lake",
             "a robot tending a rooftop garden", "a mountain village at dawn",
             "a portrait of an elderly fisherman", "a field of sunflowers under a storm")
_STYLES = ("watercolor illustration", "35mm film photograph", "oil painting, impasto",
           "isometric 3d render", "ukiyo-e woodblock print", "studio ghibli style",
           "cinematic still, anamorphic lens", "charcoal sketch")
_DETAILS = ("soft golden light", "muted pastel palette", "high contrast", "volumetric fog",
            "intricate details", "minimalist composition", "vivid neon colors", "shallow depth of field")


def describe_text(seed: str, ratio: tuple[int, int], prompt: str = "") -> str:
    """Four prompts, ``"1️⃣ ...\\n\\n2️⃣ ..."``, deterministic per image (``seed``).

    Built from ``prompt``, the words of the task that made the image (its ``--`` parameters
    dropped): each prompt keeps its first phrase (the subject), reorders or drops the other
    comma-separated phrases and adds one detail, the way a real describe rephrases what it sees.
    An image the emulator did not make (no prompt) gets prompts from a small vocabulary.
    """
    rnd = random.Random(seed)
    g = math.gcd(*ratio) or 1
    ar = f"--ar {ratio[0] // g}:{ratio[1] // g}"
    words = " ".join(w for w in re.sub(r"--\S+(\s+[^-\s]\S*)?", " ", prompt).split())
    phrases = [p.strip() for p in words.split(",") if p.strip()]
    details = rnd.sample(_DETAILS, 4)  # one each: the four prompts never repeat one another
    prompts = []
    for n in range(4):
        if phrases:
            rest = rnd.sample(phrases[1:], k=len(phrases) - 1)
            if n % 2 and rest:
                rest.pop()
            body = ", ".join([phrases[0], *rest, details[n]])
        else:
            body = f"{rnd.choice(_SUBJECTS)}, {rnd.choice(_STYLES)}, {details[n]}"
        prompts.append(f"{KEYCAPS[n]} {body} {ar}")
    return "\n\n".join(prompts)


_STOPWORDS = frozenset("a an the of in on at and with to for from by very is are my your its this that".split())


def shorten_text(prompt: str) -> str:
    """The /shorten answer: an IMPORTANT TOKENS part and five "Shortened prompts"."""
    words = prompt.split()
    params: list[str] = []
    tokens: list[str] = []
    i = 0
    while i < len(words):
        if words[i].startswith("--"):
            params.append(words[i])
            if i + 1 < len(words) and not words[i + 1].startswith("--"):
                params.append(words[i + 1])
                i += 1
        else:
            tokens.append(words[i])
        i += 1
    important = [t for t in tokens if t.strip(",.;:!").casefold() not in _STOPWORDS] or tokens or ["image"]
    marked = " ".join(f"**{t}**" if t in important else f"~~{t}~~" for t in tokens)
    suffix = (" " + " ".join(params)) if params else ""
    lines = []
    for n in range(5):
        keep = max(1, round(len(important) * (5 - n) / 5))
        lines.append(f"{KEYCAPS[n]} {' '.join(important[:keep]).strip(',')}{suffix}")
    return "**IMPORTANT TOKENS**\n" + marked + "\n\n**Shortened prompts**\n\n" + "\n\n".join(lines)
