"""List item markers at the start of a line ("- ", "12. ", "b) ", "iv. ", "(a) "), for the
segmenter's block rules (core/segmenter.py): a line break before one ends a sentence. Pure."""

from __future__ import annotations

BULLETS = frozenset("-*\u2022\u2043")
ROMAN = frozenset("ivxIVX")


def list_marker_at(buf: str, at: int) -> bool | None:
    """Is there a list item marker at ``at``: a bullet ("- "), a number, letter or roman numeral
    with "." or ")" ("12. ", "b) ", "iv. ", "1.) "), or one in parentheses ("(a) ")?
    None: not known yet."""
    n = len(buf)
    if at >= n:
        return None
    if buf[at] in BULLETS:
        return None if at + 1 >= n else buf[at + 1] == " "
    paren = buf[at] == "("
    start = end = at + 1 if paren else at
    while end < n and end - start < 5 and buf[end].isascii() and buf[end].isalnum():
        end += 1
    token = buf[start:end]
    if end >= n:
        return None if not token or marker_token(token) else False
    if not marker_token(token):
        return False
    if paren:
        closers = ")"
    elif buf[end] == "." and end + 1 < n and buf[end + 1] == ")":
        end += 1  # "1.)"
        closers = ")"
    else:
        closers = ".)"
    if buf[end] not in closers:
        return False
    return None if end + 1 >= n else buf[end + 1].isspace()


def marker_token(token: str) -> bool:
    """A list marker's number (up to three digits), letter, or roman numeral (up to four)."""
    if token.isdigit():
        return len(token) <= 3
    if len(token) == 1:
        return token.isalpha()
    return len(token) <= 4 and set(token) <= ROMAN and (token.islower() or token.isupper())
