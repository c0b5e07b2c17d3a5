"""The next-step commands a CLI output prints, ready to run as printed (the rule: every one must work).

Examples:
    >>> printed_commands("`fpn-zoo info m --weights 'a b'` shows it.\\nUse it: fpn-zoo predict --model m  # go")
    [['info', 'm', '--weights', 'a b'], ['predict', '--model', 'm']]
"""

from __future__ import annotations

import re
import shlex

# `fpn-zoo ...` in backticks anywhere, or fpn-zoo ... closing a line after "Label: " (a trailing # comment is fine).
_COMMAND = re.compile(r"`(fpn-zoo [^`]+)`|(?:^|: )(fpn-zoo [^`\n]+)$", re.M)


def printed_commands(text: str) -> list[list[str]]:
    """Each ``fpn-zoo`` command printed in ``text``, as the argv ``fpn_zoo.cli.main`` takes (program name dropped)."""
    found = []
    for match in _COMMAND.finditer(text):
        argv = shlex.split(match[1] or match[2], comments=True)
        found.append(argv[1:])
    return found
