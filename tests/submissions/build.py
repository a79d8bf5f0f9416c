"""The corpus of hostile submissions: what each one does and the marks it must get.

Every notebook in this folder is a chapter 00 submission made from the reference notebook with some
solution cells replaced and some cells added, as a learner might. `python -m tests.submissions.build`
rewrites them (after the reference changes); `tests/test_submissions.py` fails when they are stale
and grades the whole folder, expecting exactly the marks and messages in `SUBMISSIONS`.

Grade them yourself: `python -m utils.grade tests/submissions/ --timeout 10`.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "solutions" / "00_transformerlens_warmup.ipynb"
# Seconds per exercise when the corpus is graded. Not 10: on a loaded machine (the other test worker running
# a notebook, the page cache just dropped) the memory bomb took longer than 10 s to fill 3.6 GB and was
# reported as an endless loop (seen in CI); the endless loop itself then costs 30 s of one grading job.
TIME_LIMIT = 30


@dataclass
class Submission:
    """A learner's notebook: solution cells replaced, cells added after the setup cells.

    ``expected`` maps each exercise that loses its points to a fragment of its message; every other
    exercise must get full marks.
    """

    replace: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    empty: bool = False


SUBMISSIONS: dict[str, Submission] = {
    "00_crashes": Submission(
        replace={
            "single_token_names": """
                def single_token_names(model, names):
                    while True:  # an endless loop
                        pass
            """,
            "residual_norms": """
                raise RuntimeError("boom at import time")

                def residual_norms(model, tokens):
                    return None
            """,
            "attention_pattern": """
                import os

                def attention_pattern(q, k):
                    os._exit(1)  # kills the kernel
            """,
            "logit_lens": """
                import sys

                def logit_lens(model, tokens):
                    sys.exit("done")
            """,
            "previous_token_scores": """
                def previous_token_scores(patterns):
                    return patterns[:, :, 1:, 0:-1].diagonal(dim1=-2, dim2=-1).mean(-1)[5]  # an IndexError
            """,
        },
        added=[
            """
            import sys

            sys.exit()  # a learner's cell that exits at the top level
            """,
        ],
        expected={
            "single_token_names": "took too long",
            "residual_norms": "the cell defining `residual_norms` failed: it raised RuntimeError: boom at import time",
            "attention_pattern": "stopped the kernel",
            "logit_lens": "called sys.exit()",
            "previous_token_scores": "raised IndexError",
        },
    ),
    "00_wrong_values": Submission(
        replace={
            "single_token_names": """
                def single_token_name(model, names):  # renamed
                    return [name for name in names if len(model.to_tokens(" " + name, prepend_bos=False)[0]) == 1]
            """,
            "residual_norms": """
                def residual_norms(model, tokens):
                    _, cache = model.run_with_cache(tokens)
                    resid = cache.accumulated_resid()
                    return resid.norm(dim=-1).mean(dim=1).double()  # float64
            """,
            "attention_pattern": """
                def attention_pattern(q, k):
                    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
                    scores = einops.einsum(q, k, "q h d, k h d -> q h k") / q.shape[-1] ** 0.5  # heads in the middle
                    future = torch.triu(torch.ones(q.shape[0], k.shape[0], dtype=torch.bool), 1)[:, None]
                    return scores.masked_fill(future, float("-inf")).softmax(-1)
            """,
            "logit_lens": """
                def logit_lens(model, tokens):
                    return torch.full((model.cfg.n_layers + 1,), float("inf"))
            """,
            "previous_token_scores": """
                def previous_token_scores(patterns):
                    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1).tolist()  # a list, not a tensor
            """,
            "induction_scores": "",  # the learner deleted the function
            "full_ov_circuit": """
                def full_ov_circuit(model, layer, head):  # a dense block of rows, not the factored circuit
                    return model.W_E[:1000] @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U
            """,
            "copying_score": """
                def copying_score(circuit):
                    eigenvalues = circuit.eigenvalues
                    return eigenvalues.sum() / eigenvalues.abs().sum()  # a complex tensor, not a float
            """,
            "positional_scores": """
                def positional_scores(model, layer, head, resid, max_offset):
                    attn = model.blocks[layer].attn
                    x = model.blocks[layer].ln1(resid)
                    q = attn.apply_rotary((x @ attn.W_Q[head]).expand(1, max_offset + 1, 1, -1).clone())[0, -1, 0]
                    k = attn.apply_rotary((x @ attn.W_K[head]).expand(1, max_offset + 1, 1, -1).clone())[0, :, 0]
                    return (k @ q / attn.attn_scale).flip(0).double()  # float64
            """,
            "ablated_loss": """
                def ablated_loss(model, tokens, layer, head):
                    return torch.tensor(float("nan"), device="meta")  # a tensor with no values
            """,
        },
        expected={
            "single_token_names": "the notebook defines `single_token_name`: a typo?",
            "residual_norms": "expected dtype torch.float32",
            "attention_pattern": "expected shape",
            "logit_lens": "NaN or infinite",
            "previous_token_scores": "expected a torch.Tensor",
            "induction_scores": "`induction_scores` is not defined",
            "ablated_loss": "meta device",
            "full_ov_circuit": "expected True at ['is a FactoredMatrix'], got False",
            "copying_score": "expected a number",
            "positional_scores": "expected dtype torch.float32",
        },
    ),
    "00_global_state": Submission(
        replace={
            "ablated_loss": """
                def ablated_loss(model, tokens, layer, head):
                    model.blocks[layer].attn.W_O.data[head] = 0.0  # edits the weights instead of hooking
                    return model(tokens, return_type="loss").item()
            """,
        },
        added=[
            """
            # changes global state and tries to fool the checks
            import numpy
            import torch

            import utils.chapter00
            import utils.grading.engine

            torch.set_default_dtype(torch.float64)
            torch.set_grad_enabled(False)
            torch.manual_seed(1234)
            numpy.random.seed(1234)
            torch.Tensor.softmax = lambda self, *args, **kwargs: self
            torch.nn.functional.softmax = lambda x, *args, **kwargs: x
            utils.chapter00.single_token_names = lambda *args: []
            utils.grading.engine.match = lambda *args, **kwargs: None
            check = None
            """,
            """
            for i in range(200_000):  # a flood of output
                print("spam", i)
            """,
        ],
        expected={"ablated_loss": "changed the model's weights in place"},
    ),
    "00_delegates": Submission(  # uses the answers instead of writing them
        replace={
            "single_token_names": """
                from utils.references.chapter00 import single_token_names as reference

                def single_token_names(model, names):
                    return reference(model, names)
            """,
            "previous_token_scores": """
                import utils

                def previous_token_scores(patterns):
                    namespace = {}
                    exec(open(utils.__path__[0] + "/references/chapter00.py").read(), namespace)  # no import statement
                    return namespace["previous_token_scores"](patterns)
            """,
            "induction_scores": """
                import importlib

                def induction_scores(patterns, seq_len):
                    return importlib.import_module("utils.references." + "chapter00").induction_scores(patterns, seq_len)
            """,
            "composition_scores": """
                def composition_scores(model, layer1, head1, layer2, head2):
                    references = __import__("utils.references.chapter00", fromlist=["composition_scores"])
                    return references.composition_scores(model, layer1, head1, layer2, head2)
            """,
            "logit_lens": """
                import sys

                def logit_lens(model, tokens):
                    sys.meta_path[:] = [f for f in sys.meta_path if "Withhold" not in type(f).__name__]
                    sys.modules.pop("utils.references.chapter00", None)
                    import utils.references.chapter00 as real  # the file itself, now that nothing intercepts

                    return real.logit_lens(model, tokens)
            """,
        },
        expected={
            "single_token_names": "uses the course's reference implementation `utils.references.chapter00.single_token_names`",
            "previous_token_scores": "Permission denied",
            "induction_scores": "uses the course's reference implementation `utils.references.chapter00.induction_scores`",
            "logit_lens": "raised",
            "composition_scores": "uses the course's reference implementation `utils.references.chapter00.composition_scores`",
        },
    ),
    "00_tampers": Submission(  # tries to change the course, its caches and the grade of whoever comes next
        replace={
            "attention_pattern": """
                import utils.chapter00

                def attention_pattern(q, k):
                    with open(utils.chapter00.__file__, "a") as module:
                        module.write("\\nEXERCISES = []\\n")
                    return None
            """,
            "residual_norms": """
                from utils.paths import cache_dir

                def residual_norms(model, tokens):
                    (cache_dir() / "planted.txt").write_text("the next learner's grade")
                    return None
            """,
            "ablated_loss": """
                import glob
                import os

                def ablated_loss(model, tokens, layer, head):
                    for path in glob.glob(os.environ["COURSE_CACHE_DIR"] + "/smollm2-135m-*/model.safetensors"):
                        os.remove(path)
                    return 0.0
            """,
            "full_ov_circuit": """
                import utils.chapter00

                def full_ov_circuit(model, layer, head):
                    # tries to make the check compare no entries at all, then returns the wrong circuit
                    utils.chapter00.circuit_sample = lambda d_vocab: (torch.zeros(0, dtype=torch.long),) * 2
                    return model.W_E @ model.blocks[layer].attn.QK[head] @ model.W_E.T
            """,
        },
        added=[
            """
            # at import time: fails quietly, leaving the correct exercises to be graded as usual
            import pathlib

            import utils

            for target in [pathlib.Path(utils.__path__[0]) / "grading" / "engine.py", pathlib.Path.home() / "notes.txt"]:
                try:
                    target.write_text("tampered")
                except OSError:
                    pass
            """,
        ],
        expected={
            "attention_pattern": "Read-only file system",
            "residual_norms": "Read-only file system",
            "ablated_loss": "Read-only file system",
            "full_ov_circuit": "This is what you get when the QK circuit W_E W_QK W_E^T",
        },
    ),
    "00_snoops": Submission(  # reads what it must not: another submission, the system, the network
        replace={
            "residual_norms": """
                import pathlib

                import utils

                def residual_norms(model, tokens):
                    other = pathlib.Path(utils.__path__[0]).parent / "tests" / "submissions" / "00_crashes.ipynb"
                    raise ValueError(other.read_text()[:200])  # the contents would land in the report
            """,
            "single_token_names": """
                def single_token_names(model, names):
                    return [open("/etc/shadow").read()[:20]]
            """,
            "logit_lens": """
                import socket

                def logit_lens(model, tokens):
                    socket.create_connection(("127.0.0.1", 8888), timeout=2)
                    return None
            """,
        },
        expected={
            "residual_norms": "raised FileNotFoundError",
            "single_token_names": "raised FileNotFoundError",
            "logit_lens": "raised",
        },
    ),
    "00_bombs": Submission(  # exhausts the machine
        replace={
            "induction_scores": """
                import torch

                def induction_scores(patterns, seq_len):
                    hoard = []
                    while True:  # ~256 MB a step, until something stops it
                        hoard.append(torch.ones(64, 1024, 1024))
            """,
            "ablated_loss": """
                import os

                def ablated_loss(model, tokens, layer, head):
                    while True:  # a fork bomb
                        try:
                            os.fork()
                        except OSError:
                            pass
            """,
        },
        expected={
            "induction_scores": "used more than the 4 GB of memory a kernel may use",
            "ablated_loss": "processes, so the kernel was stopped",
        },
    ),
    "00_empty": Submission(
        empty=True,
        expected={
            name: f"`{name}` is not defined"
            for name in [
                "single_token_names",
                "residual_norms",
                "attention_pattern",
                "logit_lens",
                "previous_token_scores",
                "induction_scores",
                "full_ov_circuit",
                "copying_score",
                "positional_scores",
                "composition_scores",
                "ablated_loss",
            ]
        },
    ),
}

# Files that are not notebooks at all: grading exits with status 2 and names them.
UNREADABLE = {"00_not_json.ipynb": "{ this is not json", "00_not_a_notebook.ipynb": "[1, 2, 3]"}


def notebook(submission: Submission) -> nbformat.NotebookNode:
    if submission.empty:
        return nbformat.v4.new_notebook()
    nb = nbformat.read(REFERENCE, as_version=4)
    for cell in nb.cells:
        grader = cell.metadata.get("nbgrader", {})
        if grader.get("solution") and grader.get("grade_id") in submission.replace:
            cell.source = textwrap.dedent(submission.replace[grader["grade_id"]]).strip()
    setup = max(i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", []))
    for offset, source in enumerate(submission.added, start=1):
        nb.cells.insert(setup + offset, nbformat.v4.new_code_cell(textwrap.dedent(source).strip()))
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"  # stable files
    return nb


def files() -> dict[str, str]:
    """Every corpus file's name and text, built from the current reference notebook."""
    built = {f"{name}.ipynb": nbformat.writes(notebook(s)) + "\n" for name, s in SUBMISSIONS.items()}
    return {**built, **UNREADABLE}


def main() -> None:
    for name, text in files().items():
        (HERE / name).write_text(text)
        print(f"wrote tests/submissions/{name}")


if __name__ == "__main__":
    main()
