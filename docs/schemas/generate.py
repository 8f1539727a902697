"""Write the JSON Schemas of the event contract from the pydantic models in ``streams.events``.

Run ``python docs/schemas/generate.py`` after changing a model and commit the result; the unit
tests fail while a committed schema differs from what this script would write.
"""

import json
from pathlib import Path

from pydantic import BaseModel

from streams import topics
from streams.events import Feedback, Product, SearchQuery

HERE = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# file name -> model; topic files are named after their topic.
MODELS: dict[str, type[BaseModel]] = {
    f"{topics.QUERIES}.schema.json": SearchQuery,
    f"{topics.FEEDBACK}.schema.json": Feedback,
    "catalog.schema.json": Product,
}


def render() -> dict[str, str]:
    """File name -> file text, exactly as committed."""
    out = {}
    for name, model in MODELS.items():
        schema = {"$schema": DRAFT, **model.model_json_schema(mode="validation")}
        out[name] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return out


def main() -> None:
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
