"""Read sed scripts and awk programs to find the parts that write or run commands.

Both are small languages: a read-only check may filter text with them, but a
sed ``w`` command or an awk ``print > "file"`` writes, and sed ``e`` or awk
``system()`` runs a shell. The scripts are tokenized (not searched for
substrings), so ``/slow request/p`` or ``$3 > 50`` is read for what it is, and
anything not understood is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from runbook.safety.options import Syntax
from runbook.safety.options import split_options
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word

_SED = Syntax(
    "sed",
    flags="nErsuzb",
    values="efl",
    optional="i",
    long_flags=frozenset(
        "--quiet --silent --regexp-extended --separate --unbuffered --null-data --posix "
        "--debug --sandbox --follow-symlinks --binary --help --version".split()
    ),
    long_values=frozenset({"--expression", "--file", "--line-length"}),
    long_optional=frozenset({"--in-place"}),
)
_AWK = Syntax(
    "awk",
    flags="bcCghMnNOPrsStVk",
    values="FvfeilEW",
    optional="LopdD",
    long_flags=frozenset(
        "--characters-as-bytes --traditional --copyright --gen-pot --help --bignum "
        "--non-decimal-data --use-lc-numeric --optimize --posix --re-interval --no-optimize "
        "--sandbox --lint-old --version --csv".split()
    ),
    long_values=frozenset(
        "--field-separator --assign --file --source --include --load --exec".split()
    ),
    long_optional=frozenset("--lint --pretty-print --profile --dump-variables --debug".split()),
)
_AWK_REFUSED = {
    "-f": "awk -f reads its program from a file the guard cannot check",
    "--file": "awk -f reads its program from a file the guard cannot check",
    "-i": "awk -i loads a library (-i inplace edits files)",
    "--include": "awk -i loads a library (-i inplace edits files)",
    "-l": "awk -l loads an extension",
    "--load": "awk -l loads an extension",
    "-E": "awk -E runs a program from a file",
    "--exec": "awk -E runs a program from a file",
    "-W": "awk -W options cannot be checked",
}
_AWK_WRITES = ("-o", "-p", "-d", "-D", "--pretty-print", "--profile", "--dump-variables")

_SED_ADDRESS = re.compile(r"\s*(?:\d+(?:~\d+)?|\$)")
_SED_SECOND = re.compile(r"\s*(?:[+~]?\d+|\$)")
_SED_SIMPLE = frozenset("=dDgGhHnNpPxzF")
_AWK_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#.*)|(?P<string>"(?:[^"\\]|\\.)*")
    |(?P<number>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>\|\||&&|[<>!=]=|>>|\+\+|--|[-+*/%^]=|[|&<>(){}\[\];,?:!~$=+\-*/%^])""",
    re.VERBOSE,
)
#: After these words an operand follows: a / starts a regex (gawk, mawk and busybox agree).
_AWK_KEYWORDS_BEFORE_OPERAND = frozenset(
    {"print", "printf", "return", "exit", "in", "case", "do", "else"}
)
#: Keywords and built-in functions after which a / is read as a division by some awks and
#: as a regex by others (mawk: a regex after `length`; gawk: a division), or is invalid.
#: A / there is refused: read the wrong way, a regex would hide code from the guard.
_AWK_AMBIGUOUS = frozenset(
    """
    BEGIN END BEGINFILE ENDFILE function func if while for switch default break continue
    next nextfile delete getline length atan2 cos exp int log rand sin sqrt srand gensub gsub
    index match split sprintf sub substr tolower toupper close fflush system mktime strftime
    systime and or xor compl lshift rshift asort asorti isarray typeof patsplit strtonum
    bindtextdomain dcgettext dcngettext
    """.split()
)


def check_sed(args: Sequence[Word]) -> None:
    """Refuse sed -i, -f, and scripts with the w, W or e commands or s///w, s///e flags."""
    options, operands = split_options(_SED, args)
    scripts: list[Word] = []
    for option in options:
        if option.flag in ("-i", "--in-place"):
            raise Refused("sed -i edits files in place")
        if option.flag in ("-f", "--file"):
            raise Refused("sed -f reads its script from a file the guard cannot check")
        if option.flag in ("-e", "--expression") and option.value is not None:
            scripts.append(option.value)
    if not scripts and operands:
        scripts.append(operands[0])
    for script in scripts:
        if not script.is_literal:
            raise Refused(f"the sed script {script.text!r} is only known after {script.expansion}")
        _SedScript(script.text).check()


class _SedScript:
    """A GNU sed script, read command by command."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0

    def check(self) -> None:
        text = self.text
        while True:
            while self.index < len(text) and (
                text[self.index].isspace() or text[self.index] in ";}"
            ):
                self.index += 1
            if self.index >= len(text) or text[self.index] == "#":
                return
            self._address()
            if self.text.startswith(",", self.index):
                self.index += 1
                if not self._address(second=True):
                    raise Refused(f"sed script {text!r}: missing second address")
            while self.index < len(text) and (
                text[self.index].isspace() or text[self.index] == "!"
            ):
                self.index += 1
            if self._command():
                return

    def _address(self, *, second: bool = False) -> bool:
        text, index = self.text, self.index
        while index < len(text) and text[index].isspace():
            index += 1
        if text.startswith("/", index) or text.startswith("\\", index):
            start = index + 1 if text[index] == "/" else index + 2
            if start > len(text):
                raise Refused(f"sed script {text!r}: missing address delimiter after \\")
            self.index = regex_end(text, start, text[start - 1]) + 1
            while self.index < len(text) and text[self.index] in "IM":
                self.index += 1
            return True
        match = (_SED_SECOND if second else _SED_ADDRESS).match(text, index)
        if match:
            self.index = match.end()
        return bool(match)

    def _command(self) -> bool:
        """Read one command; return True when it consumes the rest of the script."""
        text = self.text
        if self.index >= len(text):
            raise Refused(f"sed script {text!r}: missing command")
        command = text[self.index]
        self.index += 1
        if command in "wW":
            raise Refused(f"sed {command} writes to a file")
        if command == "e":
            raise Refused("sed e runs a command")
        if command in "aicrR":
            return True  # text to add, or a file to read: the rest of the script
        if command in _SED_SIMPLE or command == "{":
            return False
        if command in "qQlLbtTv:":
            # An exit code, line length, label or version: one word, then the command ends.
            # (POSIX seds read a label to the end of the line; GNU stops at ';'.)
            self._skip_spaces()
            while self.index < len(text) and text[self.index] not in ";} \t":
                self.index += 1
            self._skip_spaces()
            if self.index < len(text) and text[self.index] not in ";}":
                raise Refused(f"sed script {text!r}: unexpected {text[self.index :]!r}")
            return False
        if command in "sy":
            if self.index >= len(text) or text[self.index] in "\\\n":
                raise Refused(f"sed script {text!r}: bad {command} delimiter")
            delimiter = text[self.index]
            middle = regex_end(text, self.index + 1, delimiter, brackets=command == "s")
            self.index = regex_end(text, middle + 1, delimiter, brackets=False) + 1
            if command == "s":
                self._substitute_flags()
            return False
        raise Refused(f"sed command {command!r} is not known to be read-only")

    def _skip_spaces(self) -> None:
        while self.index < len(self.text) and self.text[self.index] in " \t":
            self.index += 1

    def _substitute_flags(self) -> None:
        text = self.text
        while (
            self.index < len(text)
            and text[self.index] not in ";}"
            and not text[self.index].isspace()
        ):
            flag = text[self.index]
            if flag == "w":
                raise Refused("sed s///w writes to a file")
            if flag == "e":
                raise Refused("sed s///e runs the pattern space as a command")
            if flag not in "gpiImM0123456789":
                raise Refused(f"sed s/// flag {flag!r} is not known to be read-only")
            self.index += 1


def check_awk(args: Sequence[Word]) -> None:
    """Refuse awk options that load code or write, and programs that run or write."""
    options, operands = split_options(_AWK, args)
    programs: list[Word] = []
    for option in options:
        if option.flag in _AWK_REFUSED:
            raise Refused(_AWK_REFUSED[option.flag])
        if option.flag in _AWK_WRITES:
            raise Refused(f"awk {option.flag} writes a file")
        if option.flag in ("-e", "--source") and option.value is not None:
            programs.append(option.value)
    if not programs and operands:
        programs.append(operands[0])
    for program in programs:
        if not program.is_literal:
            raise Refused(
                f"the awk program {program.text!r} is only known after {program.expansion}"
            )
        _check_awk_program(program.text)


def _check_awk_program(program: str) -> None:
    """Tokenize ``program`` as awk does and refuse system(), pipes and print redirection."""
    index = 0
    depth = 0  # parentheses and brackets
    print_depth: int | None = None  # the depth of the print statement being read
    expect_operand = True  # a / here starts a regex, not a division
    previous = ""  # the name just read, if the last token was a name
    while index < len(program):
        if program[index] == "/" and expect_operand:
            index = regex_end(program, index + 1, "/") + 1
            expect_operand, previous = False, ""
            continue
        if program[index] == "/" and previous in _AWK_AMBIGUOUS:
            raise Refused(
                f"awk program: a / after {previous!r} is a division or a regex depending on "
                "the awk; add parentheses"
            )
        if program[index] == "@":
            raise Refused("awk @ directives (@include, @load) and indirect calls are refused")
        match = _AWK_TOKEN.match(program, index)
        if match is None:
            raise Refused(f"awk program: cannot read {program[index : index + 20]!r}")
        index = match.end()
        kind, token = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "comment":
            # A comment runs to the end of the program: read the wrong way, a / or a
            # string before it would leave code the guard takes for a comment.
            raise Refused("awk program: comments are not allowed in read-only checks")
        previous = token if kind == "name" else ""
        if kind == "name":
            if token == "system":
                raise Refused("awk system() runs a command")
            if token in ("print", "printf") and print_depth is None:
                print_depth = depth
            expect_operand = token in _AWK_KEYWORDS_BEFORE_OPERAND
            continue
        if kind in ("string", "number"):
            expect_operand = False
            continue
        if token == "|":
            raise Refused("awk '|' pipes to or from a command")
        if token in ("(", "["):
            depth += 1
        elif token in (")", "]"):
            depth -= 1
        elif token in (";", "{", "}"):
            print_depth = None
        elif token in (">", ">>", ">=") and print_depth == depth:
            raise Refused("awk print > FILE writes to a file")
        expect_operand = token not in (")", "]", "++", "--")


def regex_end(text: str, index: int, delimiter: str, *, brackets: bool = True) -> int:
    """Return the index of the ``delimiter`` that ends a regex starting at ``index``.

    Implementations disagree on a delimiter inside a bracket expression (GNU sed and
    gawk read ``/[/]/`` as one regex, others end it at the second ``/``) and on a
    backslash there; a regex they would end at different places is refused.
    """
    conventions = ("none", "literal", "escape") if brackets else ("none",)
    ends = {_scan_regex(text, index, delimiter, convention) for convention in conventions}
    if len(ends) > 1:
        raise Refused(
            f"{text!r}: {delimiter!r} or '\\' inside [...] is read differently by sed/awk versions"
        )
    end = ends.pop()
    if end < 0:
        raise Refused(f"{text!r}: unterminated {delimiter!r}")
    return end


def _scan_regex(text: str, index: int, delimiter: str, brackets: str) -> int:
    """Find the end of a regex; ``brackets`` is how bracket expressions are read, if at all."""
    in_bracket = False
    while index < len(text):
        char = text[index]
        if in_bracket:
            if char == "\\" and brackets == "escape":
                index += 2
                continue
            if char == "[" and text[index + 1 : index + 2] in (":", ".", "="):
                close = text.find(text[index + 1] + "]", index + 2)
                if close < 0:
                    return -1
                index = close + 2
                continue
            in_bracket = char != "]"
            index += 1
        elif char == "\\":
            index += 2
        elif char == delimiter:
            return index
        elif char == "[" and brackets != "none":
            in_bracket = True
            index += 1
            index += text.startswith("^", index)
            index += text.startswith("]", index)
        else:
            index += 1
    return -1
