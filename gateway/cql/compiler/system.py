"""The System library's operators and functions as the translator resolves them: for each CQL name, the ELM
node it becomes, the shape of that node's operands, and its overloads (operand types and result type, with
``T`` a type variable), from the CQL specification's operator chapters and the ELM schema.

Shapes: ``u`` one ``operand``; ``n`` an ``operand`` list; ``s`` one ``source``; a tuple of field names for
nodes with named operands (``Substring``: ``stringToSub``, ``startIndex``, ``length``); ``0`` no operands.
"""

from __future__ import annotations

from typing import Any

NUM = ["Integer", "Long", "Decimal", "Quantity"]
TEMPORAL = ["Date", "DateTime", "Time"]


def _t(text: str) -> Any:
    text = text.strip()
    if text.startswith("List<"):
        return ("List", _t(text[5:-1]))
    if text.startswith("Interval<"):
        return ("Interval", _t(text[9:-1]))
    return text


def _sigs(*texts: str) -> list[tuple[list[Any], Any]]:
    out = []
    for text in texts:
        params, result = text.rsplit(":", 1)
        out.append(([_t(p) for p in params.split(",")] if params else [], _t(result)))
    return out


def _same(types: list[str], arity: int) -> list[str]:
    return [",".join([t] * arity) + ":" + t for t in types]


CMP = _sigs("T,T:Boolean")
INTERVAL_REL = _sigs("Interval<T>,Interval<T>:Boolean", "T,T:Boolean", "T,Interval<T>:Boolean", "Interval<T>,T:Boolean")

# name -> (ELM type, shape, overloads)
SYSTEM: dict[str, tuple[str, Any, list[tuple[list[Any], Any]]]] = {
    # arithmetic
    "Add": ("Add", "n", _sigs(*_same(NUM, 2), "Date,Quantity:Date", "DateTime,Quantity:DateTime",
                              "Time,Quantity:Time")),
    "Subtract": ("Subtract", "n", _sigs(*_same(NUM, 2), "Date,Quantity:Date", "DateTime,Quantity:DateTime",
                                        "Time,Quantity:Time")),
    "Multiply": ("Multiply", "n", _sigs(*_same(NUM, 2))),
    "Divide": ("Divide", "n", _sigs("Decimal,Decimal:Decimal", "Quantity,Quantity:Quantity")),
    "TruncatedDivide": ("TruncatedDivide", "n", _sigs(*_same(NUM, 2))),
    "Modulo": ("Modulo", "n", _sigs(*_same(NUM, 2))),
    "Power": ("Power", "n", _sigs(*_same(["Integer", "Long", "Decimal"], 2))),
    "Negate": ("Negate", "u", _sigs(*_same(NUM, 1))),
    "Abs": ("Abs", "u", _sigs(*_same(NUM, 1))),
    "Ceiling": ("Ceiling", "u", _sigs("Decimal:Integer")),
    "Floor": ("Floor", "u", _sigs("Decimal:Integer")),
    "Truncate": ("Truncate", "u", _sigs("Decimal:Integer")),
    "Exp": ("Exp", "u", _sigs("Decimal:Decimal")),
    "Ln": ("Ln", "u", _sigs("Decimal:Decimal")),
    "Log": ("Log", "n", _sigs("Decimal,Decimal:Decimal")),
    "Round": ("Round", ("operand", "precision"), _sigs("Decimal:Decimal", "Decimal,Integer:Decimal")),
    "Precision": ("Precision", "u", _sigs("Decimal:Integer", "Date:Integer", "DateTime:Integer", "Time:Integer")),
    "LowBoundary": ("LowBoundary", "n", _sigs("Decimal,Integer:Decimal", "Date,Integer:Date",
                                              "DateTime,Integer:DateTime", "Time,Integer:Time")),
    "HighBoundary": ("HighBoundary", "n", _sigs("Decimal,Integer:Decimal", "Date,Integer:Date",
                                                "DateTime,Integer:DateTime", "Time,Integer:Time")),
    "Successor": ("Successor", "u", _sigs(*_same(NUM + TEMPORAL, 1))),
    "Predecessor": ("Predecessor", "u", _sigs(*_same(NUM + TEMPORAL, 1))),
    # comparison and logic
    "Equal": ("Equal", "n", CMP), "Equivalent": ("Equivalent", "n", CMP),
    "Less": ("Less", "n", CMP), "Greater": ("Greater", "n", CMP),
    "LessOrEqual": ("LessOrEqual", "n", CMP), "GreaterOrEqual": ("GreaterOrEqual", "n", CMP),
    "And": ("And", "n", _sigs("Boolean,Boolean:Boolean")), "Or": ("Or", "n", _sigs("Boolean,Boolean:Boolean")),
    "Xor": ("Xor", "n", _sigs("Boolean,Boolean:Boolean")),
    "Implies": ("Implies", "n", _sigs("Boolean,Boolean:Boolean")),
    "Not": ("Not", "u", _sigs("Boolean:Boolean")),
    "IsNull": ("IsNull", "u", _sigs("Any:Boolean")),
    "IsTrue": ("IsTrue", "u", _sigs("Boolean:Boolean")), "IsFalse": ("IsFalse", "u", _sigs("Boolean:Boolean")),
    "Coalesce": ("Coalesce", "n", _sigs("List<T>:T", "T,T:T", "T,T,T:T", "T,T,T,T:T", "T,T,T,T,T:T")),
    # strings
    "Concatenate": ("Concatenate", "n", _sigs(*[",".join(["String"] * k) + ":String" for k in range(2, 9)])),
    "Combine": ("Combine", ("source", "separator"), _sigs("List<String>:String", "List<String>,String:String")),
    "Split": ("Split", ("stringToSplit", "separator"), _sigs("String,String:List<String>")),
    "SplitOnMatches": ("SplitOnMatches", ("stringToSplit", "separatorPattern"), _sigs("String,String:List<String>")),
    "Length": ("Length", "u", _sigs("String:Integer", "List<T>:Integer")),
    "Upper": ("Upper", "u", _sigs("String:String")), "Lower": ("Lower", "u", _sigs("String:String")),
    "Indexer": ("Indexer", "n", _sigs("String,Integer:String", "List<T>,Integer:T")),
    "PositionOf": ("PositionOf", ("pattern", "string"), _sigs("String,String:Integer")),
    "LastPositionOf": ("LastPositionOf", ("pattern", "string"), _sigs("String,String:Integer")),
    "Substring": ("Substring", ("stringToSub", "startIndex", "length"),
                  _sigs("String,Integer:String", "String,Integer,Integer:String")),
    "StartsWith": ("StartsWith", "n", _sigs("String,String:Boolean")),
    "EndsWith": ("EndsWith", "n", _sigs("String,String:Boolean")),
    "Matches": ("Matches", "n", _sigs("String,String:Boolean")),
    "ReplaceMatches": ("ReplaceMatches", "n", _sigs("String,String,String:String")),
    # date and time
    "Date": ("Date", ("year", "month", "day"), _sigs("Integer:Date", "Integer,Integer:Date",
                                                     "Integer,Integer,Integer:Date")),
    "DateTime": ("DateTime", ("year", "month", "day", "hour", "minute", "second", "millisecond", "timezoneOffset"),
                 _sigs(*[",".join(["Integer"] * k) + ":DateTime" for k in range(1, 8)],
                       ",".join(["Integer"] * 7) + ",Decimal:DateTime")),
    "Time": ("Time", ("hour", "minute", "second", "millisecond"),
             _sigs(*[",".join(["Integer"] * k) + ":Time" for k in range(1, 5)])),
    "Now": ("Now", "0", _sigs(":DateTime")), "Today": ("Today", "0", _sigs(":Date")),
    "TimeOfDay": ("TimeOfDay", "0", _sigs(":Time")),
    # type conversion
    "ToBoolean": ("ToBoolean", "u", _sigs("Any:Boolean")), "ToInteger": ("ToInteger", "u", _sigs("Any:Integer")),
    "ToLong": ("ToLong", "u", _sigs("Any:Long")), "ToDecimal": ("ToDecimal", "u", _sigs("Any:Decimal")),
    "ToString": ("ToString", "u", _sigs("Any:String")), "ToDate": ("ToDate", "u", _sigs("Any:Date")),
    "ToDateTime": ("ToDateTime", "u", _sigs("Any:DateTime")), "ToTime": ("ToTime", "u", _sigs("Any:Time")),
    "ToQuantity": ("ToQuantity", "u", _sigs("Any:Quantity")), "ToRatio": ("ToRatio", "u", _sigs("Any:Ratio")),
    "ToConcept": ("ToConcept", "u", _sigs("Code:Concept", "List<Code>:Concept")),
    "ToChars": ("ToChars", "u", _sigs("String:List<String>")),
    "ConvertsToBoolean": ("ConvertsToBoolean", "u", _sigs("Any:Boolean")),
    "ConvertsToInteger": ("ConvertsToInteger", "u", _sigs("Any:Boolean")),
    "ConvertsToLong": ("ConvertsToLong", "u", _sigs("Any:Boolean")),
    "ConvertsToDecimal": ("ConvertsToDecimal", "u", _sigs("Any:Boolean")),
    "ConvertsToString": ("ConvertsToString", "u", _sigs("Any:Boolean")),
    "ConvertsToDate": ("ConvertsToDate", "u", _sigs("Any:Boolean")),
    "ConvertsToDateTime": ("ConvertsToDateTime", "u", _sigs("Any:Boolean")),
    "ConvertsToTime": ("ConvertsToTime", "u", _sigs("Any:Boolean")),
    "ConvertsToQuantity": ("ConvertsToQuantity", "u", _sigs("Any:Boolean")),
    "ConvertsToRatio": ("ConvertsToRatio", "u", _sigs("Any:Boolean")),
    "ConvertQuantity": ("ConvertQuantity", "n", _sigs("Quantity,String:Quantity")),
    "CanConvertQuantity": ("CanConvertQuantity", "n", _sigs("Quantity,String:Boolean")),
    # aggregates
    "Count": ("Count", "s", _sigs("List<T>:Integer")),
    "Sum": ("Sum", "s", _sigs(*[f"List<{t}>:{t}" for t in NUM])),
    "Product": ("Product", "s", _sigs(*[f"List<{t}>:{t}" for t in NUM])),
    "Min": ("Min", "s", _sigs("List<T>:T")), "Max": ("Max", "s", _sigs("List<T>:T")),
    "Mode": ("Mode", "s", _sigs("List<T>:T")),
    "Avg": ("Avg", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "Median": ("Median", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "Variance": ("Variance", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "PopulationVariance": ("PopulationVariance", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "StdDev": ("StdDev", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "PopulationStdDev": ("PopulationStdDev", "s", _sigs("List<Decimal>:Decimal", "List<Quantity>:Quantity")),
    "GeometricMean": ("GeometricMean", "s", _sigs("List<Decimal>:Decimal")),
    "AllTrue": ("AllTrue", "s", _sigs("List<Boolean>:Boolean")),
    "AnyTrue": ("AnyTrue", "s", _sigs("List<Boolean>:Boolean")),
    # lists
    "First": ("First", "s", _sigs("List<T>:T")), "Last": ("Last", "s", _sigs("List<T>:T")),
    "IndexOf": ("IndexOf", ("source", "element"), _sigs("List<T>,T:Integer")),
    "Exists": ("Exists", "u", _sigs("List<T>:Boolean")),
    "Distinct": ("Distinct", "u", _sigs("List<T>:List<T>")),
    "Flatten": ("Flatten", "u", _sigs("List<List<T>>:List<T>")),
    "SingletonFrom": ("SingletonFrom", "u", _sigs("List<T>:T")),
    "Union": ("Union", "n", _sigs("List<T>,List<T>:List<T>", "Interval<T>,Interval<T>:Interval<T>")),
    "Intersect": ("Intersect", "n", _sigs("List<T>,List<T>:List<T>", "Interval<T>,Interval<T>:Interval<T>")),
    "Except": ("Except", "n", _sigs("List<T>,List<T>:List<T>", "Interval<T>,Interval<T>:Interval<T>")),
    "Contains": ("Contains", "n", _sigs("List<T>,T:Boolean", "Interval<T>,T:Boolean")),
    "In": ("In", "n", _sigs("T,List<T>:Boolean", "T,Interval<T>:Boolean")),
    "ProperContains": ("ProperContains", "n", _sigs("List<T>,T:Boolean", "Interval<T>,T:Boolean")),
    "ProperIn": ("ProperIn", "n", _sigs("T,List<T>:Boolean", "T,Interval<T>:Boolean")),
    "Includes": ("Includes", "n", _sigs("List<T>,List<T>:Boolean", "Interval<T>,Interval<T>:Boolean")),
    "IncludedIn": ("IncludedIn", "n", _sigs("List<T>,List<T>:Boolean", "Interval<T>,Interval<T>:Boolean")),
    "ProperIncludes": ("ProperIncludes", "n", _sigs("List<T>,List<T>:Boolean", "Interval<T>,Interval<T>:Boolean")),
    "ProperIncludedIn": ("ProperIncludedIn", "n", _sigs("List<T>,List<T>:Boolean",
                                                         "Interval<T>,Interval<T>:Boolean")),
    # intervals
    "Start": ("Start", "u", _sigs("Interval<T>:T")), "End": ("End", "u", _sigs("Interval<T>:T")),
    "Width": ("Width", "u", _sigs("Interval<T>:T")), "Size": ("Size", "u", _sigs("Interval<T>:T")),
    "PointFrom": ("PointFrom", "u", _sigs("Interval<T>:T")),
    "Overlaps": ("Overlaps", "n", INTERVAL_REL), "OverlapsBefore": ("OverlapsBefore", "n", INTERVAL_REL),
    "OverlapsAfter": ("OverlapsAfter", "n", INTERVAL_REL),
    "Meets": ("Meets", "n", INTERVAL_REL), "MeetsBefore": ("MeetsBefore", "n", INTERVAL_REL),
    "MeetsAfter": ("MeetsAfter", "n", INTERVAL_REL),
    "Before": ("Before", "n", INTERVAL_REL), "After": ("After", "n", INTERVAL_REL),
    "SameAs": ("SameAs", "n", INTERVAL_REL), "SameOrBefore": ("SameOrBefore", "n", INTERVAL_REL),
    "SameOrAfter": ("SameOrAfter", "n", INTERVAL_REL),
    "Starts": ("Starts", "n", _sigs("Interval<T>,Interval<T>:Boolean")),
    "Ends": ("Ends", "n", _sigs("Interval<T>,Interval<T>:Boolean")),
    "Collapse": ("Collapse", "n", _sigs("List<Interval<T>>,Quantity:List<Interval<T>>")),
    "Expand": ("Expand", "n", _sigs("List<Interval<T>>,Quantity:List<Interval<T>>", "Interval<T>,Quantity:List<T>")),
    # errors and messages
    "Message": ("Message", ("source", "condition", "code", "severity", "message"),
                _sigs("T,Boolean,String,String,String:T")),
    # clinical
    "CalculateAgeInYears": ("CalculateAge", "u", _sigs("Date:Integer", "DateTime:Integer")),
    "CalculateAgeInMonths": ("CalculateAge", "u", _sigs("Date:Integer", "DateTime:Integer")),
    "CalculateAgeInWeeks": ("CalculateAge", "u", _sigs("Date:Integer", "DateTime:Integer")),
    "CalculateAgeInDays": ("CalculateAge", "u", _sigs("Date:Integer", "DateTime:Integer")),
    "CalculateAgeInHours": ("CalculateAge", "u", _sigs("DateTime:Integer")),
    "CalculateAgeInMinutes": ("CalculateAge", "u", _sigs("DateTime:Integer")),
    "CalculateAgeInSeconds": ("CalculateAge", "u", _sigs("DateTime:Integer")),
    "CalculateAgeInYearsAt": ("CalculateAgeAt", "n", _sigs("Date,Date:Integer", "DateTime,DateTime:Integer")),
    "CalculateAgeInMonthsAt": ("CalculateAgeAt", "n", _sigs("Date,Date:Integer", "DateTime,DateTime:Integer")),
    "CalculateAgeInWeeksAt": ("CalculateAgeAt", "n", _sigs("Date,Date:Integer", "DateTime,DateTime:Integer")),
    "CalculateAgeInDaysAt": ("CalculateAgeAt", "n", _sigs("Date,Date:Integer", "DateTime,DateTime:Integer")),
    "CalculateAgeInHoursAt": ("CalculateAgeAt", "n", _sigs("DateTime,DateTime:Integer")),
    "CalculateAgeInMinutesAt": ("CalculateAgeAt", "n", _sigs("DateTime,DateTime:Integer")),
    "CalculateAgeInSecondsAt": ("CalculateAgeAt", "n", _sigs("DateTime,DateTime:Integer")),
    "Children": ("Children", "s", _sigs("Any:List<Any>")),
    "Descendents": ("Descendents", "s", _sigs("Any:List<Any>")),
}
