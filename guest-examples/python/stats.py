"""stats: a Sandstep step component written in Python.

Input:  {"values": [3, 1.5, ...]}  or  {"records": [{...}], "field": "total"}
Output: {"count", "sum", "min", "max", "mean", "median", "stdev"}

Summary statistics of a list of numbers, or of one numeric field of a list of
records. Bad input fails with a non-retryable error naming what is wrong.
`simulate_failure: {"message", "retryable"}` fails on purpose.
"""

import json
import statistics

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types


def invalid(message: str) -> Err:
    return Err(types.StepError(message=message, retryable=False))


def numbers(request: dict) -> list[float]:
    if "records" in request:
        field = request.get("field")
        if not isinstance(field, str):
            raise invalid("field must be a string naming a numeric field of each record")
        records = request["records"]
        if not isinstance(records, list):
            raise invalid("records must be a list")
        values = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or field not in record:
                raise invalid(f"records[{i}] has no field {field!r}")
            values.append(record[field])
        where = f"records[].{field}"
    else:
        values = request.get("values")
        if not isinstance(values, list):
            raise invalid("values must be a list of numbers (or give records and field)")
        where = "values"
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"{where}[{i}] is not a number: {json.dumps(value)}")
    return values


class WitWorld(wit_world.WitWorld):
    def run(self, ctx: types.Context, input: str) -> str:
        try:
            request = json.loads(input)
        except json.JSONDecodeError as e:
            raise invalid(f"input is not JSON: {e}")
        if not isinstance(request, dict):
            raise invalid("input must be an object")
        simulate = request.get("simulate_failure")
        if simulate:
            raise Err(types.StepError(message=str(simulate.get("message")), retryable=simulate.get("retryable") is True))

        values = numbers(request)
        if not values:
            raise invalid("there are no values to summarise")
        host.log(host.Level.INFO, f"attempt {ctx.attempt}: summarising {len(values)} values")
        result = {
            "count": len(values),
            "sum": round(sum(values), 6),
            "min": min(values),
            "max": max(values),
            "mean": round(statistics.fmean(values), 6),
            "median": statistics.median(values),
            "stdev": round(statistics.stdev(values), 6) if len(values) > 1 else 0.0,
        }
        return json.dumps(result)
