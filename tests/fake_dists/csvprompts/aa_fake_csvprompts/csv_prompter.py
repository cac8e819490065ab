"""``csv``: the prompts of a CSV file of ``category,text`` rows, cycled to ``per_class`` each.

Its result depends on the file's contents, which no option shows: ``inputs`` declares them, so
editing the file makes the prompts again. ``loose``: the same, with an options model that allows
extra keys, as a plugin author may write one (the core refuses unknown keys all the same)."""

import csv
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from aa_core.api import AAError, Options, Prompt, Prompter, file_digest


class CSVOptions(Options):
    file: str = "prompts.csv"


class CSVPrompter(Prompter):
    Options = CSVOptions

    @classmethod
    def inputs(cls, options):
        return {"file": file_digest(options.file)}

    def prompts(self, categories, domain, per_class, seed):
        path = Path(self.options.file)
        if not path.is_file():
            raise AAError(f"prompts.file {path} does not exist; write a CSV of category,text rows there")
        rows = list(csv.reader(path.open()))
        out = []
        for category in categories:
            texts = [text for label, text in rows if label == category] or [f"a {domain} of {category}"]
            out += [Prompt(texts[i % len(texts)], category) for i in range(per_class)]
        return out


class LooseOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    file: str = "prompts.csv"


class LoosePrompter(CSVPrompter):
    Options = LooseOptions
