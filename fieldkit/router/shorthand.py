"""Texting shorthand in a question, written out before it is embedded and its words counted.

A technician typing on a phone writes "n" for "and", "thru", "b4", "tmrw", "whats". The
embedder reads "n" as nothing and "thru" as a stranger; the shared-words score counts
"thru" as a word no passage holds; the rule that splits a question at its second ask
(fieldkit.router.ranking) sees no "and". The router and retrieval read the question as
written out (`written_out`), and so do they the texts in the users' voice they compare it
with (the passages' phrasings, the everyday questions); the model is given it written out
too (fieldkit.answering.ground); the person sees it as typed.

Only tokens standing alone, typed in lower case (or a word of letters with a capital
first, "Dont"), are written out: "B4" or "R" in capitals is more likely a code, a grade or
a currency than shorthand, and a letter after a number ("5 u", "2 n") is a unit. The list
holds common texting shorthand, none of it a word of its own or a term of the trade ("im"
is also intramuscular, so it is not there).
"""

from __future__ import annotations

import re

SHORTHAND: dict[str, str] = {
    # joining words
    "n": "and",
    "&": "and",
    "w/": "with",
    "w/o": "without",
    "thru": "through",
    "abt": "about",
    "b4": "before",
    "bc": "because",
    "bcoz": "because",
    "becoz": "because",
    "coz": "because",
    "cuz": "because",
    "tho": "though",
    # people and asking
    "u": "you",
    "ur": "your",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "ppl": "people",
    "wat": "what",
    "wht": "what",
    "wen": "when",
    "shd": "should",
    "cld": "could",
    "wd": "would",
    "sth": "something",
    "smth": "something",
    "info": "information",
    "msg": "message",
    "govt": "government",
    "qty": "quantity",
    "approx": "approximately",
    "gonna": "going to",
    "wanna": "want to",
    # apostrophes left out
    "whats": "what is",
    "wats": "what is",
    "hows": "how is",
    "wheres": "where is",
    "thats": "that is",
    "theres": "there is",
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "cant": "cannot",
    "wont": "will not",
    "isnt": "is not",
    "arent": "are not",
    "wasnt": "was not",
    "havent": "have not",
    "hasnt": "has not",
    "shouldnt": "should not",
    "itll": "it will",
    "ive": "I have",
    # time
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "tmoro": "tomorrow",
    "2day": "today",
    "2nite": "tonight",
    "nite": "night",
    "yday": "yesterday",
    "hr": "hour",
    "hrs": "hours",
    "mins": "minutes",
    "wk": "week",
    "wks": "weeks",
    "yr": "year",
    "yrs": "years",
    # the trade's own
    "temp": "temperature",
    "temps": "temperatures",
    "vax": "vaccine",
    "vaxx": "vaccine",
}
_ONE_LETTER = frozenset(k for k in SHORTHAND if len(k) == 1 and k.isalpha())
# a token standing alone: letters and digits, and "/" and "&" as in "w/o" and "&"
_TOKEN = re.compile(r"(?<![\w/&'-])[A-Za-z0-9/&]+(?![\w/&'-])")
_AFTER_A_NUMBER = re.compile(r"\d\s*$")


def written_out(question: str) -> str:
    """Return the question with its texting shorthand written out ("n" -> "and", "b4" ->
    "before"); a question without any is returned as it is."""

    def expand(match: re.Match[str]) -> str:
        token = match.group()
        lower = token.lower()
        if lower not in SHORTHAND:
            return token
        if token != lower and not (token[1:] == lower[1:] and token[1:].isalpha()):
            return token  # "B4", "R", "TEMP": a code, a grade, a heading
        if lower in _ONE_LETTER and _AFTER_A_NUMBER.search(question[: match.start()]):
            return token  # "2 n" is two newtons, not "2 and"
        full = SHORTHAND[lower]
        return full[0].upper() + full[1:] if token != lower else full

    return _TOKEN.sub(expand, question)
