"""A recursive-descent parser for CQL 1.5, written from the grammar chapter of the CQL specification.

Expression precedence follows the specification's grammar (lowest first): ``union``/``intersect``/``except``/
``|``; ``implies``; ``or``/``xor``; ``and``; ``in``/``contains``; ``=``/``!=``/``~``/``!~``; timing phrases;
``<``/``<=``/``>``/``>=``; ``between``; the prefixes ``not``/``exists``/``cast``; the postfixes ``is``/``as``.
Expression terms: ``+``/``-``/``&``; ``*``/``/``/``div``/``mod``; ``^``; the unary term operators (``-x``,
``start of``, ``year from`` ...); then ``.`` member access and ``[ ]`` indexing.
"""

from __future__ import annotations

from typing import Any

from .ast import Node
from .lexer import CqlSyntaxError, Token, tokenize

PRECISIONS = {"year": "Year", "month": "Month", "week": "Week", "day": "Day", "hour": "Hour",
              "minute": "Minute", "second": "Second", "millisecond": "Millisecond"}
PLURALS = {p + "s": v for p, v in PRECISIONS.items()}
UNIT_WORDS = set(PRECISIONS) | set(PLURALS)
COMPONENTS = {**PRECISIONS, "date": "Date", "time": "Time", "timezoneoffset": "TimezoneOffset"}

# words that end an expression or begin a clause or operator: never an alias or a plain identifier term
STOP = {
    "and", "or", "xor", "implies", "not", "is", "as", "in", "contains", "where", "return", "sort", "by", "with",
    "without", "such", "that", "let", "from", "then", "else", "end", "when", "of", "between", "union",
    "intersect", "except", "during", "included", "includes", "properly", "starts", "ends", "occurs", "same",
    "before", "after", "overlaps", "meets", "within", "to", "per", "aggregate", "starting", "all", "asc",
    "ascending", "desc", "descending", "div", "mod", "on", "define", "function", "context", "called",
    "version", "display", "less", "more", "distinct", "collapse", "expand", "flatten", "cast", "convert",
    "exists", "if", "case", "null", "true", "false", "minimum", "maximum", "singleton", "point", "width",
    "successor", "predecessor", "duration", "difference",
}
TIMING_START = {"starts", "ends", "occurs", "same", "properly", "includes", "during", "included", "before",
                "after", "on", "within", "meets", "overlaps", "less", "more"}

SET_BP, IMPLIES_BP, OR_BP, AND_BP, MEMBER_BP, EQ_BP, TIMING_BP, INEQ_BP, BETWEEN_BP, PREFIX_BP, TYPE_BP = range(1, 12)


class Parser:
    """Parses one CQL library (``library()``) or one expression (``expression_only()``)."""

    def __init__(self, text: str) -> None:
        self.toks: list[Token] = tokenize(text)
        self.i = 0

    # ---- token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def at(self, *words: str) -> bool:
        t = self.tok
        return t.kind in ("ident", "op") and t.text in words

    def at_seq(self, *words: str) -> bool:
        for k, w in enumerate(words):
            t = self.peek(k)
            if t.kind not in ("ident", "op") or t.text != w:
                return False
        return True

    def accept(self, *words: str) -> Token | None:
        if self.at(*words):
            t = self.tok
            self.i += 1
            return t
        return None

    def expect(self, word: str) -> Token:
        t = self.accept(word)
        if t is None:
            self.fail(f"expected '{word}'")
        return t  # type: ignore[return-value]

    def fail(self, message: str, tok: Token | None = None) -> Any:
        t = tok or self.tok
        found = "end of input" if t.kind == "eof" else repr(t.text if t.kind != "string" else f"'{t.text}'")
        raise CqlSyntaxError(f"{message}, found {found}", t.line, t.col)

    def node(self, kind: str, tok: Token, **fields: Any) -> Node:
        return Node(kind, tok.line, tok.col, **fields)

    def identifier(self) -> str:
        t = self.tok
        if t.kind == "qident" or (t.kind == "ident" and t.text not in STOP):
            self.i += 1
            return t.text
        return self.fail("expected an identifier")

    def any_identifier(self) -> str:
        """An identifier where keywords are allowed too (after '.', tuple element names)."""
        t = self.tok
        if t.kind in ("ident", "qident"):
            self.i += 1
            return t.text
        return self.fail("expected an identifier")

    def is_identifier(self, t: Token | None = None) -> bool:
        t = t or self.tok
        return t.kind == "qident" or (t.kind == "ident" and t.text not in STOP)

    def string(self) -> str:
        t = self.tok
        if t.kind != "string":
            self.fail("expected a string")
        self.i += 1
        return t.text

    # ---- library
    def library(self) -> Node:
        start = self.tok
        lib = self.node("library", start, name=None, version=None, usings=[], includes=[], codesystems=[],
                        valuesets=[], codes=[], concepts=[], parameters=[], statements=[])
        if self.accept("library"):
            lib.f["name"] = self.qualified_name()
            if self.accept("version"):
                lib.f["version"] = self.string()
        while self.tok.kind != "eof":
            t = self.tok
            access = None
            if self.at("public", "private"):
                access = "Public" if self.tok.text == "public" else "Private"
                self.i += 1
            if self.accept("using"):
                name = self.any_identifier()
                ver = self.string() if self.accept("version") else None
                lib.usings.append(self.node("using", t, name=name, version=ver))
            elif self.accept("include"):
                path = self.qualified_name()
                ver = self.string() if self.accept("version") else None
                alias = self.identifier() if self.accept("called") else path.split(".")[-1]
                lib.includes.append(self.node("include", t, path=path, version=ver, alias=alias))
            elif self.accept("codesystem"):
                name = self.identifier()
                self.expect(":")
                url = self.string()
                ver = self.string() if self.accept("version") else None
                lib.codesystems.append(self.node("codesystem", t, name=name, id=url, version=ver, access=access))
            elif self.accept("valueset"):
                name = self.identifier()
                self.expect(":")
                url = self.string()
                ver = self.string() if self.accept("version") else None
                systems: list[str] = []
                if self.accept("codesystems"):
                    self.expect("{")
                    systems.append(self.qualified_name())
                    while self.accept(","):
                        systems.append(self.qualified_name())
                    self.expect("}")
                lib.valuesets.append(self.node("valueset", t, name=name, id=url, version=ver,
                                               codesystems=systems, access=access))
            elif self.accept("code"):
                name = self.identifier()
                self.expect(":")
                code = self.string()
                self.expect("from")
                system = self.qualified_name()
                display = self.string() if self.accept("display") else None
                lib.codes.append(self.node("codedef", t, name=name, code=code, system=system, display=display,
                                           access=access))
            elif self.accept("concept"):
                name = self.identifier()
                self.expect(":")
                self.expect("{")
                codes = [self.qualified_name()]
                while self.accept(","):
                    codes.append(self.qualified_name())
                self.expect("}")
                display = self.string() if self.accept("display") else None
                lib.concepts.append(self.node("conceptdef", t, name=name, codes=codes, display=display,
                                              access=access))
            elif self.accept("parameter"):
                name = self.identifier()
                spec = None
                if not self.at("default") and self.tok.kind != "eof" and not self.at_statement():
                    spec = self.type_specifier()
                default = self.expression() if self.accept("default") else None
                lib.parameters.append(self.node("parameter", t, name=name, type=spec, default=default,
                                                access=access))
            elif self.accept("context"):
                lib.statements.append(self.node("context", t, name=self.qualified_name()))
            elif self.accept("define"):
                lib.statements.append(self.define(t, access))
            else:
                self.fail("expected a library statement (using, include, define ...)")
        return lib

    def at_statement(self) -> bool:
        return self.at("define", "parameter", "context", "using", "include", "codesystem", "valueset", "code",
                       "concept", "public", "private")

    def qualified_name(self) -> str:
        parts = [self.any_identifier()]
        while self.at(".") and self.peek().kind in ("ident", "qident"):
            self.i += 1
            parts.append(self.any_identifier())
        return ".".join(parts)

    def define(self, start: Token, access: str | None) -> Node:
        access2 = None
        if self.at("public", "private"):
            access2 = "Public" if self.tok.text == "public" else "Private"
            self.i += 1
        access = access or access2 or "Public"
        fluent = bool(self.accept("fluent"))
        if self.accept("function"):
            name = self.any_identifier()
            self.expect("(")
            operands: list[tuple[str, Any]] = []
            if not self.at(")"):
                while True:
                    oname = self.any_identifier()
                    operands.append((oname, self.type_specifier()))
                    if not self.accept(","):
                        break
            self.expect(")")
            rtype = self.type_specifier() if self.accept("returns") else None
            self.expect(":")
            body = None if self.accept("external") else self.expression()
            return self.node("function", start, name=name, operands=operands, returns=rtype, body=body,
                             access=access, fluent=fluent)
        name = self.any_identifier()
        self.expect(":")
        return self.node("define", start, name=name, body=self.expression(), access=access)

    def expression_only(self) -> Node:
        e = self.expression()
        if self.tok.kind != "eof":
            self.fail("unexpected text after the expression")
        return e

    # ---- type specifiers
    def type_specifier(self) -> Any:
        t = self.tok
        if self.accept("List"):
            self.expect("<")
            inner = self.type_specifier()
            self.expect(">")
            return ("list", inner)
        if self.accept("Interval"):
            self.expect("<")
            inner = self.type_specifier()
            self.expect(">")
            return ("interval", inner)
        if self.accept("Tuple"):
            self.expect("{")
            elems = []
            while not self.at("}"):
                n = self.any_identifier()
                elems.append((n, self.type_specifier()))
                if not self.accept(","):
                    break
            self.expect("}")
            return ("tuple", elems)
        if self.accept("Choice"):
            self.expect("<")
            opts = [self.type_specifier()]
            while self.accept(","):
                opts.append(self.type_specifier())
            self.expect(">")
            return ("choice", opts)
        if t.kind not in ("ident", "qident"):
            self.fail("expected a type")
        return ("named", self.qualified_name())

    # ---- expressions
    def expression(self, min_bp: int = 0) -> Node:
        left = self.prefix_expression()
        while True:
            t = self.tok
            if t.kind not in ("ident", "op"):
                if t.kind == "number" and min_bp <= TIMING_BP and self.at_timing():
                    phrase = self.timing_phrase()
                    left = self.node("timing", t, phrase=phrase, left=left, right=self.expression(TIMING_BP + 1))
                    continue
                break
            w = t.text
            if w in ("union", "|") and min_bp <= SET_BP:
                # a chain of unions grouped as the reference translator groups it: neighbours in pairs,
                # the pairs from left to right ((A | B) | (C | D)) | E (union is associative: same result)
                operands = [left]
                while self.tok.text in ("union", "|"):
                    self.i += 1
                    operands.append(self.expression(SET_BP + 1))
                pairs = [operands[i] if i + 1 == len(operands) else
                         self.node("binary", t, op="Union", left=operands[i], right=operands[i + 1])
                         for i in range(0, len(operands), 2)]
                left = pairs[0]
                for right in pairs[1:]:
                    left = self.node("binary", t, op="Union", left=left, right=right)
            elif w in ("intersect", "except") and min_bp <= SET_BP:
                self.i += 1
                op = {"intersect": "Intersect", "except": "Except"}[w]
                left = self.node("binary", t, op=op, left=left, right=self.expression(SET_BP + 1))
            elif w == "implies" and min_bp <= IMPLIES_BP:
                self.i += 1
                left = self.node("binary", t, op="Implies", left=left, right=self.expression(IMPLIES_BP + 1))
            elif w in ("or", "xor") and min_bp <= OR_BP and not self.at_seq("or", "before") \
                    and not self.at_seq("or", "after") and not self.at_seq("or", "on"):
                self.i += 1
                left = self.node("binary", t, op="Or" if w == "or" else "Xor", left=left,
                                 right=self.expression(OR_BP + 1))
            elif w == "and" and min_bp <= AND_BP:
                self.i += 1
                left = self.node("binary", t, op="And", left=left, right=self.expression(AND_BP + 1))
            elif w in ("in", "contains") and min_bp <= MEMBER_BP:
                self.i += 1
                precision = self.precision_of()
                left = self.node("membership", t, op=w, precision=precision, left=left,
                                 right=self.expression(MEMBER_BP + 1))
            elif w in ("=", "!=", "~", "!~") and min_bp <= EQ_BP:
                self.i += 1
                left = self.node("binary", t, op=w, left=left, right=self.expression(EQ_BP + 1))
            elif min_bp <= TIMING_BP and self.at_timing():
                phrase = self.timing_phrase()
                left = self.node("timing", t, phrase=phrase, left=left, right=self.expression(TIMING_BP + 1))
            elif w in ("<", "<=", ">", ">=") and min_bp <= INEQ_BP:
                self.i += 1
                left = self.node("binary", t, op=w, left=left, right=self.expression(INEQ_BP + 1))
            elif (w == "between" or self.at_seq("properly", "between")) and min_bp <= BETWEEN_BP:
                properly = bool(self.accept("properly"))
                self.expect("between")
                low = self.term_expression()
                self.expect("and")
                high = self.term_expression()
                left = self.node("between", t, operand=left, low=low, high=high, properly=properly)
            elif w == "is" and min_bp <= TYPE_BP:
                self.i += 1
                neg = bool(self.accept("not"))
                if self.at("null", "true", "false"):
                    what = self.tok.text
                    self.i += 1
                    left = self.node("isbool", t, operand=left, what=what, neg=neg)
                else:
                    if neg:
                        self.fail("expected null, true or false after 'is not'")
                    left = self.node("is", t, operand=left, type=self.type_specifier())
            elif w == "as" and min_bp <= TYPE_BP:
                self.i += 1
                left = self.node("as", t, operand=left, type=self.type_specifier())
            else:
                break
        return left

    def precision_of(self) -> str | None:
        """``dateTimePrecision 'of'`` where it follows: the precision, else None."""
        t = self.tok
        if t.kind == "ident" and t.text in PRECISIONS and self.peek().text == "of":
            self.i += 2
            return PRECISIONS[t.text]
        return None

    def at_timing(self) -> bool:
        t = self.tok
        if t.kind == "ident" and t.text in TIMING_START:
            if t.text == "properly":
                return not self.at_seq("properly", "between")
            if t.text in ("less", "more"):
                return self.peek().text == "than"
            if t.text == "on":
                return self.peek().text == "or"
            return True
        if t.kind == "number":  # a quantity offset: 3 days before
            k = 1
            if self.peek(1).kind in ("string",) or self.peek(1).text in UNIT_WORDS:
                k = 2
            nxt = self.peek(k)
            return nxt.text in ("before", "after", "or", "on") or (nxt.text == "or" and self.peek(k + 1).text in (
                "more", "less"))
        return False

    def timing_phrase(self) -> dict[str, Any]:
        p: dict[str, Any] = {"left": None, "right": None, "precision": None, "properly": False}
        if self.at("starts", "ends", "occurs"):
            w = self.tok.text
            nxt = self.peek().text
            if w == "starts" and nxt not in ("same", "properly", "during", "included", "before", "after", "on",
                                             "within", "less", "more") and self.peek().kind != "number":
                self.i += 1
                return {**p, "kind": "starts", "precision": self.precision_of()}
            if w == "ends" and nxt not in ("same", "properly", "during", "included", "before", "after", "on",
                                           "within", "less", "more") and self.peek().kind != "number":
                self.i += 1
                return {**p, "kind": "ends", "precision": self.precision_of()}
            self.i += 1
            p["left"] = {"starts": "start", "ends": "end", "occurs": None}[w]
        if self.accept("same"):
            p["kind"] = "same"
            if self.tok.text in PRECISIONS:
                p["precision"] = PRECISIONS[self.tok.text]
                self.i += 1
            if self.accept("as"):
                p["rel"] = "as"
            elif self.accept("or"):
                w = self.tok.text
                if w not in ("before", "after"):
                    self.fail("expected 'before' or 'after'")
                self.i += 1
                p["rel"] = "or " + w
            else:
                self.fail("expected 'as', 'or before' or 'or after'")
            if self.at("start", "end") and self.peek().text != "of":
                p["right"] = self.tok.text
                self.i += 1
            return p
        if self.at("properly") and self.peek().text == "includes" or self.at("includes"):
            p["properly"] = bool(self.accept("properly"))
            self.expect("includes")
            p["kind"] = "includes"
            p["precision"] = self.precision_of()
            if self.at("start", "end") and self.peek().text != "of":
                p["right"] = self.tok.text
                self.i += 1
            return p
        p["properly"] = bool(self.accept("properly"))
        if self.accept("during"):
            p["kind"] = "during"
            p["precision"] = self.precision_of()
            return p
        if self.accept("included"):
            self.expect("in")
            p["kind"] = "during"
            p["precision"] = self.precision_of()
            return p
        if self.accept("within"):
            p["kind"] = "within"
            p["quantity"] = self.quantity_literal()
            self.expect("of")
            if self.at("start", "end") and self.peek().text != "of":
                p["right"] = self.tok.text
                self.i += 1
            return p
        if self.accept("meets"):
            p["kind"] = "meets"
            d = self.accept("before", "after")
            p["dir"] = d.text if d else None
            p["precision"] = self.precision_of()
            return p
        if self.accept("overlaps"):
            p["kind"] = "overlaps"
            d = self.accept("before", "after")
            p["dir"] = d.text if d else None
            p["precision"] = self.precision_of()
            return p
        # before / after, optionally with a quantity offset
        offset = None
        if self.at("less", "more"):
            w = self.tok.text
            self.i += 1
            self.expect("than")
            offset = {"q": self.quantity_literal(), "qual": w + " than"}
        elif self.tok.kind == "number":
            q = self.quantity_literal()
            qual = None
            if self.at_seq("or", "more") or self.at_seq("or", "less"):
                qual = "or " + self.peek().text
                self.i += 2
            offset = {"q": q, "qual": qual}
        on_or = False
        if self.at_seq("on", "or"):
            self.i += 2
            on_or = True
        if not self.at("before", "after"):
            self.fail("expected a timing phrase")
        p["kind"] = self.tok.text
        self.i += 1
        if self.at_seq("or", "on"):
            self.i += 2
            on_or = True
        p["on_or"] = on_or
        p["offset"] = offset
        p["precision"] = self.precision_of()
        if self.at("start", "end") and self.peek().text != "of":
            p["right"] = self.tok.text
            self.i += 1
        return p

    def quantity_literal(self) -> Node:
        t = self.tok
        if t.kind != "number":
            self.fail("expected a quantity")
        self.i += 1
        unit = "1"
        if self.tok.kind == "string" or self.tok.kind == "ident" and self.tok.text in UNIT_WORDS:
            unit = self.tok.text
            self.i += 1
        return self.node("quantity", t, value=t.text, unit=unit)

    def prefix_expression(self) -> Node:
        t = self.tok
        if t.kind == "ident":
            w = t.text
            if w == "not":
                self.i += 1
                return self.node("unary", t, op="Not", operand=self.expression(PREFIX_BP))
            if w == "exists":
                self.i += 1
                return self.node("unary", t, op="Exists", operand=self.expression(PREFIX_BP))
            if w == "cast":
                self.i += 1
                operand = self.expression(TYPE_BP + 1)
                self.expect("as")
                return self.node("cast", t, operand=operand, type=self.type_specifier())
            if w in ("duration", "difference") and self.peek().text == "in" and self.peek(2).text in PLURALS \
                    and self.peek(3).text == "between":
                self.i += 3
                return self.between_duration(t, w == "difference", PLURALS[self.peek(-1).text])
            if w in PLURALS and self.peek().text == "between":
                self.i += 1
                return self.between_duration(t, False, PLURALS[w])
            if w == "from" or self.query_ahead():
                return self.query()
        elif (t.kind in ("qident",) or t.text in ("(", "[")) and self.query_ahead():
            return self.query()
        return self.term_expression()

    def between_duration(self, t: Token, difference: bool, precision: str) -> Node:
        self.expect("between")
        low = self.term_expression()
        self.expect("and")
        high = self.term_expression()
        return self.node("durbetween", t, difference=difference, precision=precision, low=low, high=high)

    # ---- queries
    def query_ahead(self) -> bool:
        """Is a query source followed by an alias here? Tried by parsing, then the position is restored."""
        save = self.i
        try:
            if self.tok.text == "from":
                return True
            self.query_source()
            return self.is_identifier() and not self.at_timing()
        except CqlSyntaxError:
            return False
        finally:
            self.i = save

    def query_source(self) -> Node:
        t = self.tok
        if self.at("["):
            return self.retrieve()
        if self.accept("("):
            e = self.expression()
            self.expect(")")
            return e
        if not self.is_identifier():
            self.fail("expected a query source")
        name = self.identifier()
        n = self.node("ident", t, name=name)
        while self.at(".") and self.peek().kind in ("ident", "qident") and self.peek(2).text != "(":
            self.i += 1
            nt = self.tok
            n = self.node("member", nt, source=n, name=self.any_identifier())
        return n

    def aliased_source(self) -> tuple[str, Node]:
        src = self.query_source()
        return self.identifier(), src

    def query(self) -> Node:
        t = self.tok
        self.accept("from")
        sources = [self.aliased_source()]
        while self.accept(","):
            sources.append(self.aliased_source())
        lets: list[tuple[str, Node]] = []
        if self.accept("let"):
            while True:
                name = self.identifier()
                self.expect(":")
                lets.append((name, self.expression()))
                if not self.accept(","):
                    break
        inclusions: list[tuple[str, str, Node, Node]] = []
        while self.at("with", "without"):
            kind = self.tok.text
            self.i += 1
            alias, src = self.aliased_source()
            self.expect("such")
            self.expect("that")
            inclusions.append((kind, alias, src, self.expression()))
        where = self.expression() if self.accept("where") else None
        ret = agg = None
        if self.accept("return"):
            m = self.accept("all", "distinct")
            mode = m.text if m else None
            ret = (mode, self.expression())
        elif self.accept("aggregate"):
            m = self.accept("all", "distinct")
            mode = m.text if m else None
            name = self.identifier()
            starting = None
            if self.accept("starting"):
                if self.accept("("):
                    starting = self.expression()
                    self.expect(")")
                else:
                    starting = self.simple_literal_or_quantity()
            self.expect(":")
            agg = (mode, name, starting, self.expression())
        sort = None
        if self.accept("sort"):
            if self.accept("by"):
                items = []
                while True:
                    st = self.tok
                    e = self.term_expression()
                    d = self.sort_direction() or "asc"
                    items.append((d, e, st))
                    if not self.accept(","):
                        break
                sort = ("by", items)
            else:
                sort = ("dir", self.sort_direction() or "asc")
        return self.node("query", t, sources=sources, lets=lets, inclusions=inclusions, where=where, ret=ret,
                         agg=agg, sort=sort)

    def sort_direction(self) -> str | None:
        if self.accept("asc", "ascending"):
            return "asc"
        if self.accept("desc", "descending"):
            return "desc"
        return None

    def simple_literal_or_quantity(self) -> Node:
        t = self.tok
        if t.kind == "number" and (self.peek().kind == "string" or self.peek().text in UNIT_WORDS):
            return self.quantity_literal()
        return self.term()

    def retrieve(self) -> Node:
        t = self.expect("[")
        context = None
        first = self.qualified_name()
        if self.accept("->"):  # pragma: no cover - the lexer has no '->' token; context retrieves are rare
            context, first = first, self.qualified_name()
        codepath = terminology = None
        comparator = None
        if self.accept(":"):
            if self.is_identifier() and self.peek().text in ("in", "=", "~", "contains") \
                    or (self.is_identifier() and self.peek().text == "." and False):
                codepath = self.identifier()
                comparator = self.tok.text
                self.i += 1
            terminology = self.expression()
        self.expect("]")
        return self.node("retrieve", t, type=first, codepath=codepath, comparator=comparator,
                         terminology=terminology, context=context)

    # ---- expression terms
    def term_expression(self, min_bp: int = 0) -> Node:
        left = self.prefix_term()
        while True:
            t = self.tok
            w = t.text if t.kind in ("op", "ident") else None
            if w in ("+", "-", "&") and min_bp <= 1:
                self.i += 1
                op = {"+": "Add", "-": "Subtract", "&": "Concat"}[w]
                left = self.node("binary", t, op=op, left=left, right=self.term_expression(2))
            elif w in ("*", "/", "div", "mod") and min_bp <= 2:
                self.i += 1
                op = {"*": "Multiply", "/": "Divide", "div": "TruncatedDivide", "mod": "Modulo"}[w]
                left = self.node("binary", t, op=op, left=left, right=self.term_expression(3))
            elif w == "^" and min_bp <= 3:
                self.i += 1
                left = self.node("binary", t, op="Power", left=left, right=self.term_expression(4))
            else:
                break
        return left

    def prefix_term(self) -> Node:
        t = self.tok
        w = t.text if t.kind in ("ident", "op") else None
        if w in ("+", "-"):
            self.i += 1
            operand = self.term_expression(4)
            return operand if w == "+" else self.node("unary", t, op="Negate", operand=operand)
        if t.kind == "ident":
            nxt = self.peek().text
            if w in ("start", "end") and nxt == "of":
                self.i += 2
                return self.node("unary", t, op="Start" if w == "start" else "End", operand=self.term_expression(4))
            if w in COMPONENTS and nxt == "from":
                self.i += 2
                return self.node("component", t, component=COMPONENTS[w], operand=self.term_expression(4))
            if w in ("duration", "difference") and nxt == "in" and self.peek(2).text in PLURALS \
                    and self.peek(3).text == "of":
                self.i += 4
                return self.node("durof", t, difference=w == "difference", precision=PLURALS[self.peek(-2).text],
                                 operand=self.term_expression(4))
            if w in ("width", "successor", "predecessor") and nxt == "of":
                self.i += 2
                op = {"width": "Width", "successor": "Successor", "predecessor": "Predecessor"}[w]
                return self.node("unary", t, op=op, operand=self.term_expression(4))
            if w in ("singleton", "point") and nxt == "from":
                self.i += 2
                op = "SingletonFrom" if w == "singleton" else "PointFrom"
                return self.node("unary", t, op=op, operand=self.term_expression(4))
            if w in ("minimum", "maximum"):
                self.i += 1
                return self.node("minmax", t, op="MinValue" if w == "minimum" else "MaxValue",
                                 type=self.type_specifier())
            if w == "if":
                self.i += 1
                cond = self.expression()
                self.expect("then")
                then = self.expression()
                self.expect("else")
                return self.node("if", t, cond=cond, then=then, els=self.expression())
            if w == "case":
                self.i += 1
                comparand = None if self.at("when") else self.expression()
                items = []
                while self.accept("when"):
                    when = self.expression()
                    self.expect("then")
                    items.append((when, self.expression()))
                if not items:
                    self.fail("expected 'when'")
                self.expect("else")
                els = self.expression()
                self.expect("end")
                return self.node("case", t, comparand=comparand, items=items, els=els)
            if w in ("distinct", "flatten"):
                self.i += 1
                return self.node("unary", t, op="Distinct" if w == "distinct" else "Flatten",
                                 operand=self.expression())
            if w in ("expand", "collapse"):
                self.i += 1
                operand = self.expression()
                per = None
                if self.accept("per"):
                    if self.tok.text in PRECISIONS and self.peek().kind != "op" or self.tok.text in PRECISIONS:
                        pt = self.tok
                        self.i += 1
                        per = self.node("quantity", pt, value="1.0", unit=pt.text)
                    else:
                        per = self.expression()
                return self.node("setagg", t, op="Expand" if w == "expand" else "Collapse", operand=operand, per=per)
            if w == "convert":
                self.i += 1
                operand = self.expression()
                self.expect("to")
                if self.tok.kind == "string":
                    return self.node("convertunit", t, operand=operand, unit=self.string())
                if self.tok.kind == "ident" and self.tok.text in UNIT_WORDS:
                    unit = self.tok.text
                    self.i += 1
                    return self.node("convertunit", t, operand=operand, unit=unit)
                return self.node("convert", t, operand=operand, type=self.type_specifier())
        return self.postfix(self.term())

    def postfix(self, e: Node) -> Node:
        while True:
            t = self.tok
            if self.at("."):
                self.i += 1
                name = self.any_identifier()
                if self.at("("):
                    args = self.arguments()
                    e = self.node("call", t, name=name, args=args, source=e)
                else:
                    e = self.node("member", t, source=e, name=name)
            elif self.at("{") and e.kind in ("ident", "member") and (
                    self.peek().text == "}" or (self.peek().kind in ("ident", "qident") and self.peek(2).text == ":")):
                e = self.instance_selector(t, _dotted(e))
            elif self.at("["):
                self.i += 1
                idx = self.expression()
                self.expect("]")
                e = self.node("index", t, source=e, index=idx)
            else:
                return e

    def arguments(self) -> list[Node]:
        self.expect("(")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expression())
            while self.accept(","):
                args.append(self.expression())
        self.expect(")")
        return args

    def term(self) -> Node:
        t = self.tok
        k = t.kind
        if k == "number":
            if self.peek().kind == "string" or (self.peek().kind == "ident" and self.peek().text in UNIT_WORDS):
                q = self.quantity_literal()
                if self.at(":") and self.peek().kind == "number":
                    self.i += 1
                    return self.node("ratio", t, num=q, den=self.quantity_literal())
                return q
            self.i += 1
            if self.at(":") and self.peek().kind == "number":
                self.i += 1
                q = self.node("quantity", t, value=t.text, unit="1")
                return self.node("ratio", t, num=q, den=self.quantity_literal())
            return self.node("literal", t, vtype="Decimal" if "." in t.text else "Integer", value=t.text)
        if k == "long":
            self.i += 1
            return self.node("literal", t, vtype="Long", value=t.text)
        if k == "string":
            self.i += 1
            return self.node("literal", t, vtype="String", value=t.text)
        if k == "date":
            self.i += 1
            return self.node("datelit", t, text=t.text)
        if k == "op":
            if t.text == "(":
                self.i += 1
                e = self.expression()
                self.expect(")")
                return e
            if t.text == "{":
                return self.brace_selector(t, None)
            if t.text == "%":
                self.i += 1
                return self.node("extconst", t, name=self.any_identifier())
            if t.text == "[":
                return self.retrieve()
            return self.fail("expected an expression")
        if k == "qident":
            self.i += 1
            if self.at("("):
                return self.node("call", t, name=t.text, args=self.arguments(), source=None)
            return self.node("ident", t, name=t.text)
        if k == "ident":
            w = t.text
            if w in ("true", "false"):
                self.i += 1
                return self.node("literal", t, vtype="Boolean", value=w)
            if w == "null":
                self.i += 1
                return self.node("null", t)
            if w == "Interval" and self.peek().text in ("[", "("):
                self.i += 1
                low_closed = self.tok.text == "["
                self.i += 1
                low = self.expression()
                self.expect(",")
                high = self.expression()
                if not self.at("]", ")"):
                    self.fail("expected ']' or ')'")
                high_closed = self.tok.text == "]"
                self.i += 1
                return self.node("interval", t, low=low, high=high, low_closed=low_closed, high_closed=high_closed)
            if w == "Tuple" and self.peek().text == "{":
                self.i += 1
                return self.tuple_selector(t)
            if w == "List" and self.peek().text in ("<", "{"):
                self.i += 1
                spec = None
                if self.accept("<"):
                    spec = self.type_specifier()
                    self.expect(">")
                return self.brace_selector(self.tok, spec, list_only=True)
            if w == "Code" and self.peek().kind == "string":
                self.i += 1
                code = self.string()
                self.expect("from")
                system = self.qualified_name()
                display = self.string() if self.accept("display") else None
                return self.node("codesel", t, code=code, system=system, display=display)
            if w == "Concept" and self.peek().text == "{" and self.peek(2).text == "Code":
                self.i += 2
                codes = [self.term()]
                while self.accept(","):
                    codes.append(self.term())
                self.expect("}")
                display = self.string() if self.accept("display") else None
                return self.node("conceptsel", t, codes=codes, display=display)
            if w in STOP:
                return self.fail("expected an expression")
            self.i += 1
            if self.at("("):
                return self.node("call", t, name=w, args=self.arguments(), source=None)
            if self.at("{") and (self.peek().text == "}" or (self.peek().kind in ("ident", "qident")
                                                             and self.peek(2).text == ":")):
                return self.instance_selector(t, w)
            return self.node("ident", t, name=w)
        return self.fail("expected an expression")

    def brace_selector(self, t: Token, spec: Any, list_only: bool = False) -> Node:
        self.expect("{")
        if not list_only:
            if self.at(":") and self.peek().text == "}":
                self.i += 2
                return self.node("tuple", t, elements=[])
            if self.tok.kind in ("ident", "qident") and self.peek().text == ":":
                self.i -= 1
                return self.tuple_selector(t)
        elems: list[Node] = []
        if not self.at("}"):
            elems.append(self.expression())
            while self.accept(","):
                elems.append(self.expression())
        self.expect("}")
        return self.node("list", t, elements=elems, type=spec)

    def tuple_selector(self, t: Token) -> Node:
        self.expect("{")
        elems: list[tuple[str, Node]] = []
        if self.at(":"):
            self.i += 1
        else:
            while not self.at("}"):
                name = self.any_identifier()
                self.expect(":")
                elems.append((name, self.expression()))
                if not self.accept(","):
                    break
        self.expect("}")
        return self.node("tuple", t, elements=elems)

    def instance_selector(self, t: Token, name: str) -> Node:
        self.expect("{")
        elems: list[tuple[str, Node]] = []
        while not self.at("}"):
            n = self.any_identifier()
            self.expect(":")
            elems.append((n, self.expression()))
            if not self.accept(","):
                break
        self.expect("}")
        return self.node("instance", t, type=name, elements=elems)


def _dotted(e: Node) -> str:
    if e.kind == "ident":
        return str(e.name)
    return f"{_dotted(e.source)}.{e.name}"


def parse_library(text: str) -> Node:
    """The syntax tree of a CQL library; raises CqlSyntaxError with the line and column of the first error."""
    return Parser(text).library()


def parse_expression(text: str) -> Node:
    """The syntax tree of one CQL expression."""
    return Parser(text).expression_only()
