"""Preflight: every problem the planned stages would hit, found before any work, each with its exact text."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synthvlm import pipeline
from synthvlm.config import RunConfig, load_config, parse_config
from synthvlm.core import layout
from synthvlm.core.errors import UserError
from synthvlm.models import registry
from synthvlm.preflight import Report, preflight

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "synthvlm-paper.yaml"
DEMO = REPO / "configs" / "demo.yaml"
RECIPE_FIX = "fix the path or glob (relative paths in a recipe are relative to the recipe file)"
NOTE_NONE = (
    "curate.recipe synthvlm runs the paper's rule filters; of the paper's model steps, configured: none; "
    "skipped: perplexity, alignment, judge "
    "(set curate.perplexity, curate.alignment, curate.judge to run them)"
)
FOLDER_FIX = (
    "point it at a complete model folder (what `save_pretrained` writes, or "
    "`hf download REPO --local-dir DIR`)"
)


@pytest.fixture(autouse=True)
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache (offline, as tests/conftest.py sets): nothing is cached."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    # huggingface_hub reads HF_HOME when imported, so in-process the cache path is set where it keeps it.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text('{"caption": "a red bus parked on a quiet street"}\n{"caption": "a dog on a beach"}\n')
    return path


def _config(data: dict[str, Any]) -> RunConfig:
    return parse_config(data, origin="test")


def _check(
    config: RunConfig, stages: list[str], tmp_path: Path, *, run_dir: Any = None, executor: str = "local"
) -> Report:
    return preflight(config, run_dir=run_dir or tmp_path / "run", stages=stages, executor=executor)


def _problems(*args: Any, **kwargs: Any) -> list[str]:
    return [str(p) for p in _check(*args, **kwargs).problems]


def _try(field: str, tiny: str) -> str:
    return f"`{field}: builtin:{tiny}` for an offline try"


def _miss(field: str, name: str, hub: Path, fix: str) -> str:
    return (
        f"{field} {name!r} is not a local folder nor in the Hugging Face cache ({hub}), and offline mode is "
        f"on: {fix}"
    )


def test_paper_recipe_offline_lists_every_missing_model(tmp_path, hub):
    from synthvlm.cli import app

    result = CliRunner().invoke(app, ["check", str(PAPER), "--run", str(tmp_path / "run")])
    assert result.exit_code == 2
    sdxl, refiner = "stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"
    clip = "openai/clip-vit-base-patch32"
    assert result.stdout.splitlines() == [
        f"note: {NOTE_NONE}",
        "4 problem(s) before any work:",
        f"  - ingest.inputs: {REPO}/configs/../data/captions.jsonl: no such file: {RECIPE_FIX}",
        "  - "
        + _miss(
            "generate.model",
            sdxl,
            hub,
            f"`hf download {sdxl}`, or `generate.model: builtin:tiny-sdxl` for an offline try",
        ),
        "  - "
        + _miss(
            "generate.refiner",
            refiner,
            hub,
            f"`hf download {refiner}`, or `generate.refiner: builtin:tiny-sdxl-refiner` for an offline try",
        ),
        "  - "
        + _miss(
            "score.clip_model",
            clip,
            hub,
            f"`hf download {clip}`, or `score.clip_model: builtin:tiny-clip` for an offline try",
        ),
    ]

    as_json = CliRunner().invoke(app, ["check", str(PAPER), "--run", str(tmp_path / "run"), "--json"])
    assert as_json.exit_code == 2
    report = json.loads(as_json.stdout)
    assert report["notes"] == [NOTE_NONE]
    assert [p["what"].split(" ")[0] for p in report["problems"]] == [
        "ingest.inputs:",
        "generate.model",
        "generate.refiner",
        "score.clip_model",
    ]


def test_demo_recipe_is_clean(tmp_path):
    from synthvlm.cli import app

    result = CliRunner().invoke(app, ["check", str(DEMO), "--run", str(tmp_path / "run")])
    assert (result.exit_code, result.stdout) == (
        0,
        f"note: {NOTE_NONE}\nok: nothing missing for ingest, curate, generate, score, select, export\n",
    )
    config = load_config(DEMO)
    for executor in ("local", "ray"):
        report = _check(config, pipeline.default_stages(config), tmp_path, executor=executor)
        assert report.problems == ()


def test_only_the_given_stages_are_checked(tmp_path, hub):
    config = load_config(PAPER)
    assert _problems(config, ["select"], tmp_path) == []
    clip = "openai/clip-vit-base-patch32"
    assert _problems(config, ["score"], tmp_path) == [
        _miss(
            "score.clip_model",
            clip,
            hub,
            f"`hf download {clip}`, or `score.clip_model: builtin:tiny-clip` for an offline try",
        )
    ]


def test_pair_scorer_models_are_checked_with_their_builtin_stand_ins(tmp_path, hub):
    config = _config(
        {
            "score": {
                "clip_model": "builtin:tiny-clip",
                "scorers": {"siglip": {}, "pickscore": {}, "vqascore": {}, "nsfw": {}},
            },
            "select": {"strategy": "balanced"},
        }
    )
    expected = [
        ("score.scorers.siglip.model", "google/siglip-so400m-patch14-384", "tiny-siglip"),
        ("score.scorers.pickscore.model", "yuvalkirstain/PickScore_v1", "tiny-clip"),
        ("score.scorers.pickscore.processor", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "tiny-clip"),
        ("score.scorers.vqascore.model", "llava-hf/llava-1.5-7b-hf", "tiny-llava-hf"),
        ("score.scorers.nsfw.model", "CompVis/stable-diffusion-safety-checker", "tiny-safety-checker"),
    ]
    assert _problems(config, ["score", "select"], tmp_path) == [
        _miss(field, name, hub, f"`hf download {name}`, or {_try(field, tiny)}")
        for field, name, tiny in expected
    ]
    demo = load_config(REPO / "configs" / "demo-quality.yaml")
    assert _check(demo, pipeline.default_stages(demo), tmp_path).problems == ()


def test_unknown_builtin_names_every_valid_one(tmp_path):
    config = _config({"score": {"clip_model": "builtin:tiny-nope"}})
    assert _problems(config, ["score"], tmp_path) == [
        "score.clip_model: unknown builtin model 'builtin:tiny-nope'; valid: builtin:tiny-aesthetic, "
        "builtin:tiny-blip-caption, builtin:tiny-blip-itm, builtin:tiny-clip, builtin:tiny-flux1, "
        "builtin:tiny-flux2-klein, builtin:tiny-llava, builtin:tiny-llava-hf, builtin:tiny-lm, "
        "builtin:tiny-pixart-sigma, builtin:tiny-qwen-image, builtin:tiny-safety-checker, builtin:tiny-sana, "
        "builtin:tiny-sana-sprint, builtin:tiny-sd3, builtin:tiny-sdxl, builtin:tiny-sdxl-refiner, "
        "builtin:tiny-siglip, builtin:tiny-z-image: use one of the valid names"
    ]


def test_folders_that_save_pretrained_wrote_pass(tmp_path):
    sdxl = registry.resolve("builtin:tiny-sdxl", models_dir=tmp_path / "models").location
    lm = registry.resolve("builtin:tiny-lm", models_dir=tmp_path / "models").location
    config = _config(
        {
            "curate": {"perplexity": {"model": lm, "max_perplexity": 100}},
            "generate": {"preset": "tiny", "model": sdxl, "vae": str(Path(sdxl) / "vae")},
            "score": {"clip_model": "builtin:tiny-clip"},
        }
    )
    assert _problems(config, ["curate", "generate", "score"], tmp_path) == []


def test_folders_without_config_or_weights(tmp_path):
    def folder(name: str, files: dict[str, str]) -> str:
        for rel, text in files.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        (tmp_path / name).mkdir(exist_ok=True)
        return str(tmp_path / name)

    index = {"_class_name": "X", "scheduler": ["diffusers", "S"], "unet": ["diffusers", "U"]}
    index |= {"vae": ["diffusers", "V"], "image_encoder": [None, None]}
    shards = {
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    }
    base = folder(
        "base",
        {
            "model_index.json": json.dumps(index),
            "scheduler/scheduler_config.json": "{}",
            "unet/config.json": "{}",
        },
    )
    refiner = folder("refiner", {"unet/config.json": "{}"})
    vae = folder("vae", {"config.json": "{}", "diffusion_pytorch_model.bin": ""})
    lm = folder("lm", {})
    clip = folder(
        "clip",
        {
            "config.json": "{}",
            "model.safetensors.index.json": json.dumps(shards),
            "model-00001-of-00002.safetensors": "",
        },
    )
    config = _config(
        {
            "curate": {"perplexity": {"model": lm, "max_perplexity": 100}},
            "generate": {"preset": "tiny", "model": base, "refiner": refiner, "vae": vae},
            "score": {"clip_model": clip},
        }
    )
    assert _problems(config, ["curate", "generate", "score"], tmp_path) == [
        f"curate.perplexity.model folder {lm} has no config.json: {FOLDER_FIX}",
        f"generate.model folder {base} has no unet/*.safetensors, vae/: {FOLDER_FIX}",
        f"generate.refiner folder {refiner} has no model_index.json: {FOLDER_FIX}",
        f"generate.vae folder {vae} has no *.safetensors: {FOLDER_FIX}",
        f"score.clip_model folder {clip} has no model-00002-of-00002.safetensors: {FOLDER_FIX}",
    ]


def _cache(hub: Path, repo: str, files: dict[str, str], *, ref: str = "main", commit: str = "c0ffee") -> None:
    """A repo in the HF cache layout: refs/REF holds the commit, snapshots/COMMIT the files."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    for name, text in files.items():
        (root / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "snapshots" / commit / name).write_text(text)


def test_hub_ids_are_looked_up_in_the_cache(tmp_path, hub):
    _cache(hub, "org/clip", {"config.json": "{}", "model.safetensors": ""})
    _cache(hub, "org/lm", {"config.json": "{}"})
    _cache(hub, "org/pinned", {"config.json": "{}", "model.safetensors": ""}, ref="v1", commit="beef")
    ok = _config({"score": {"clip_model": "org/clip"}, "curate": {"alignment": {"clip_model": "org/pinned"}}})
    assert _problems(ok, ["score"], tmp_path) == []
    config = _config(
        {
            "curate": {
                "perplexity": {"model": "org/lm", "max_perplexity": 100},
                "alignment": {"clip_model": "/no/such/folder", "itm_model": None},
            },
            "score": {"clip_model": "org/pinned", "clip_revision": "v2"},
        }
    )
    assert _problems(config, ["curate", "score"], tmp_path) == [
        "curate.perplexity.model 'org/lm' is in the Hugging Face cache without *.safetensors or *.bin: "
        "`hf download org/lm` completes it",
        "curate.alignment.clip_model '/no/such/folder' is neither a folder nor a hub id: fix the folder path "
        "or hub id",
        _miss(
            "score.clip_model",
            "org/pinned",
            hub,
            "`hf download org/pinned --revision v2`, or " + _try("score.clip_model", "tiny-clip"),
        ),
    ]
    pinned = _config({"score": {"clip_model": "org/pinned", "clip_revision": "v1"}})
    assert _problems(pinned, ["score"], tmp_path) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server() -> Iterator[str]:
    """A local stand-in for the hub (HEAD on resolve URLs) and an OpenAI-compatible judge (/v1/models)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802
            repo = self.path.split("/resolve/")[0].lstrip("/")
            codes = {
                "org/missing": (404, "RepoNotFound"),
                "org/gated": (401, "GatedRepo"),
                "org/norev": (404, "RevisionNotFound"),
                "org/noentry": (404, "EntryNotFound"),
                "org/broken": (500, ""),
            }
            if repo in codes:
                status, code = codes[repo]
                self._reply(status, {"X-Error-Code": code} if code else {})
            else:
                self._reply(200, {"ETag": '"e"', "X-Repo-Commit": "c0ffee"})

        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Authorization") != "Bearer good":
                self._reply(401, {"Content-Type": "application/json"}, b'{"error": {"message": "bad key"}}')
            else:
                self._reply(200, {"Content-Type": "application/json"}, b'{"object": "list", "data": []}')

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _online(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )


def test_online_a_model_not_cached_is_asked_for_once(tmp_path, hub, server, monkeypatch):
    _online(monkeypatch, server)
    config = _config(
        {
            "curate": {
                "perplexity": {"model": "org/noentry", "max_perplexity": 100},
                "alignment": {"clip_model": "org/missing", "itm_model": "org/gated"},
                "judge": {"backend": "transformers", "model": "org/exists"},
            },
            "generate": {"preset": "tiny", "model": "org/broken"},
            "score": {"clip_model": "org/norev", "clip_revision": "v9"},
        }
    )
    where = f"is not a local folder nor in the Hugging Face cache ({hub}), and"
    assert _problems(config, ["curate", "generate", "score"], tmp_path) == [
        f"curate.perplexity.model 'org/noentry' {where} the repo has no config.json, which its loader needs: "
        "`hf download org/noentry`, or " + _try("curate.perplexity.model", "tiny-lm"),
        f"curate.alignment.clip_model 'org/missing' {where} the hub has no such repo (or it is private: "
        "log in with `hf auth login`): `hf download org/missing`, or "
        + _try("curate.alignment.clip_model", "tiny-clip"),
        f"curate.alignment.itm_model 'org/gated' {where} it is gated: accept its terms on the hub, then "
        "log in with `hf auth login`: `hf download org/gated`, or "
        + _try("curate.alignment.itm_model", "tiny-blip-itm"),
        f"generate.model 'org/broken' {where} the hub answered HTTP 500: `hf download org/broken`, or "
        + _try("generate.model", "tiny-sdxl"),
        f"score.clip_model 'org/norev' {where} the hub has no revision 'v9' of it: "
        "`hf download org/norev --revision v9`, or " + _try("score.clip_model", "tiny-clip"),
    ]


def test_online_a_weights_file_not_cached_is_asked_for_by_name(tmp_path, hub, server, monkeypatch):
    _online(monkeypatch, server)

    def problems(weights: str) -> list[str]:
        aesthetic = {"clip_model": "builtin:tiny-clip", "weights": weights}
        config = _config({"score": {"clip_model": "builtin:tiny-clip", "scorers": {"aesthetic": aesthetic}}})
        return _problems(config, ["score"], tmp_path)

    assert problems("org/exists/sub/aes.pth") == []
    assert problems("org/noentry/sub/aes.pth") == [
        f"score.scorers.aesthetic.weights 'org/noentry/sub/aes.pth' is not a local file nor in the Hugging "
        f"Face cache ({hub}), and the repo has no sub/aes.pth, which its loader needs: `hf download "
        "org/noentry sub/aes.pth`, or " + _try("score.scorers.aesthetic.weights", "tiny-aesthetic")
    ]


def test_online_a_silent_hub_is_asked_once(tmp_path, hub, monkeypatch):
    import synthvlm.preflight

    _online(monkeypatch, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    asked, ask = [], synthvlm.preflight._ask_hub
    monkeypatch.setattr(synthvlm.preflight, "_ask_hub", lambda *args: asked.append(args[0]) or ask(*args))
    config = _config({"generate": {"preset": "sdxl-base"}, "score": {"clip_model": "org/clip"}})
    where = f"is not a local folder nor in the Hugging Face cache ({hub}), and the hub did not answer"
    where += " (ConnectError)"
    sdxl = "stabilityai/stable-diffusion-xl-base-1.0"
    assert _problems(config, ["generate", "score"], tmp_path) == [
        f"generate.model {sdxl!r} {where}: `hf download {sdxl}`, or " + _try("generate.model", "tiny-sdxl"),
        f"score.clip_model 'org/clip' {where}: `hf download org/clip`, or "
        + _try("score.clip_model", "tiny-clip"),
    ]
    assert asked == [sdxl]  # no second request once the hub did not answer


def test_the_judge_endpoint_answers_one_request(tmp_path, server, monkeypatch):
    def judge(base_url: str, key_env: str) -> list[str]:
        config = _config({"curate": {"judge": {"model": "m", "base_url": base_url, "api_key_env": key_env}}})
        return _problems(config, ["curate"], tmp_path)

    monkeypatch.setenv("SYNTHVLM_TEST_GOOD_KEY", "good")
    monkeypatch.setenv("SYNTHVLM_TEST_BAD_KEY", "bad")
    monkeypatch.delenv("SYNTHVLM_TEST_NO_KEY", raising=False)
    assert judge(f"{server}/v1", "SYNTHVLM_TEST_GOOD_KEY") == []
    assert judge(f"{server}/v1", "SYNTHVLM_TEST_BAD_KEY") == [
        f"curate.judge endpoint {server}/v1 refused the key in SYNTHVLM_TEST_BAD_KEY (HTTP 401): set "
        "SYNTHVLM_TEST_BAD_KEY to a key the endpoint accepts"
    ]
    silent = f"http://127.0.0.1:{_free_port()}/v1"
    assert judge(silent, "SYNTHVLM_TEST_NO_KEY") == [
        "curate.judge: environment variable SYNTHVLM_TEST_NO_KEY is not set: set it to the endpoint's API "
        "key (any non-empty value for a server without authentication)",
        f"curate.judge endpoint {silent} did not answer (APIConnectionError): start the server (e.g. `vllm "
        "serve m`) or fix curate.judge.base_url",
    ]


def test_the_vqascore_endpoint_answers_one_request(tmp_path, server, monkeypatch):
    def vqa(base_url: str, key_env: str) -> list[str]:
        scorer = {"backend": "openai", "model": "m", "base_url": base_url, "api_key_env": key_env}
        config = _config({"score": {"clip_model": "builtin:tiny-clip", "scorers": {"vqascore": scorer}}})
        return _problems(config, ["score"], tmp_path)

    monkeypatch.setenv("SYNTHVLM_TEST_GOOD_KEY", "good")
    monkeypatch.delenv("SYNTHVLM_TEST_NO_KEY", raising=False)
    # The endpoint's model ("m") is not a hub model: only the endpoint is checked.
    assert vqa(f"{server}/v1", "SYNTHVLM_TEST_GOOD_KEY") == []
    silent = f"http://127.0.0.1:{_free_port()}/v1"
    assert vqa(silent, "SYNTHVLM_TEST_NO_KEY") == [
        "score.scorers.vqascore: environment variable SYNTHVLM_TEST_NO_KEY is not set: set it to the "
        "endpoint's API key (any non-empty value for a server without authentication)",
        f"score.scorers.vqascore endpoint {silent} did not answer (APIConnectionError): start the server "
        "(e.g. `vllm serve m`) or fix score.scorers.vqascore.base_url",
    ]


def test_missing_inputs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # not installed, whatever this machine has
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    (tmp_path / "adir").mkdir()
    (tmp_path / "no-placeholder.txt").write_text("Is this good? Answer Yes or No.")
    t = str(tmp_path)
    config = _config(
        {
            "caption": {"inputs": [f"{t}/no-images"], "model": "builtin:tiny-blip-caption"},
            "ingest": {"inputs": [f"{t}/nope.jsonl", f"{t}/*.nothing", f"{t}/adir"]},
            "curate": {
                "perplexity": {"backend": "kenlm", "model": f"{t}/en.arpa", "max_perplexity": 5500},
                "alignment": {
                    "clip_model": None,
                    "itm_model": "builtin:tiny-blip-itm",
                    "image_root": f"{t}/img",
                },
                "decontamination": {"eval_files": [f"{t}/eval.json"]},
                "judge": {"backend": "transformers", "model": "builtin:tiny-lm", "template": f"{t}/nope.txt"},
            },
        }
    )
    assert _problems(config, ["caption", "ingest", "curate"], tmp_path) == [
        f"caption.inputs: {t}/no-images: no such file or folder: {RECIPE_FIX}",
        f"ingest.inputs: {t}/nope.jsonl: no such file: {RECIPE_FIX}",
        f"ingest.inputs: {t}/*.nothing: no file matches this pattern: {RECIPE_FIX}",
        f"ingest.inputs: {t}/adir: is a directory; pass a glob such as {t}/adir/*.jsonl: {RECIPE_FIX}",
        "kenlm and sentencepiece are not installed (needed for curate.perplexity backend kenlm): "
        "`pip install 'synthvlm[kenlm]'`",
        f"curate.perplexity.model {t}/en.arpa: no such file: point it at the KenLM .arpa or .bin file",
        "curate.perplexity: the kenlm backend needs `tokenizer`: set curate.perplexity.tokenizer to the "
        "SentencePiece .model file",
        f"curate.alignment.image_root {t}/img: no such folder: {RECIPE_FIX}",
        f"curate.decontamination.eval_files: {t}/eval.json: no such file: {RECIPE_FIX}",
        f"curate.judge.template {t}/nope.txt: No such file or directory: {RECIPE_FIX}, or drop it for the "
        "bundled Yes/No question",
    ]
    assert _problems(_config({}), ["ingest"], tmp_path) == [
        "ingest.inputs is empty: list caption files in ingest.inputs, or pass them to `synthvlm ingest`"
    ]
    curate = config.curate.model_dump()
    curate["perplexity"]["tokenizer"] = f"{t}/en.sp.model"
    curate["judge"]["template"] = f"{t}/no-placeholder.txt"
    assert _problems(_config({"curate": curate}), ["curate"], tmp_path)[2:] == [
        f"curate.perplexity.tokenizer {t}/en.sp.model: no such file: point it at the SentencePiece .model "
        "file",
        f"curate.alignment.image_root {t}/img: no such folder: {RECIPE_FIX}",
        f"curate.decontamination.eval_files: {t}/eval.json: no such file: {RECIPE_FIX}",
        f"judge template {t}/no-placeholder.txt has no {{caption}} placeholder: put {{caption}} where the "
        "caption goes",
    ]


def test_missing_extras_name_their_pip_install(tmp_path, monkeypatch):
    for module in ("ray", "torchao", "openai", "datasketch", "torch", "diffusers", "s3fs", "gcsfs"):
        monkeypatch.setitem(sys.modules, module, None)  # what find_spec reports for a module not installed
    config = _config(
        {
            "curate": {"near_dup": {}, "judge": {"model": "m"}},
            "generate": {"preset": "tiny", "quantize": "fp8"},
            "export": {"out": "gs://bucket/export"},
        }
    )
    assert _problems(
        config, ["curate", "generate", "export"], tmp_path, run_dir="s3://bucket/run", executor="ray"
    ) == [
        "s3fs is not installed (needed for run directory s3://bucket/run): `pip install s3fs`",
        "ray is not installed (needed for --executor ray): `pip install 'synthvlm[ray]'`",
        "datasketch is not installed (needed for curate.near_dup): `pip install 'synthvlm[curate]'`",
        "openai is not installed (needed for curate.judge backend openai): `pip install 'synthvlm[curate]'`",
        "torchao is not installed (needed for generate.quantize fp8): `pip install 'synthvlm[fp8]'`",
        "gcsfs is not installed (needed for export.out gs://bucket/export): `pip install gcsfs`",
        "torch and diffusers are not installed (needed for the model stages generate): "
        "`pip install 'synthvlm[models]'`",
    ]


def test_destinations_must_be_writable_without_being_created(tmp_path, monkeypatch):
    a_file, locked = tmp_path / "a-file", tmp_path / "locked"
    a_file.write_text("")
    locked.mkdir()
    real_access = os.access
    # root may write anywhere, so the OS's answer for `locked` is given here
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    run_fix = "choose a run directory you can write to"

    def problems(run_dir: Any, out: str | None = None) -> list[str]:
        return _problems(_config({"export": {"out": out}}), ["export"], tmp_path, run_dir=run_dir)

    assert problems(a_file / "run") == [
        f"run directory {a_file}/run cannot be created: {a_file} is a file: {run_fix}"
    ]
    assert problems(a_file) == [f"run directory {a_file} is a file, not a folder: {run_fix}"]
    assert problems(locked / "run", str(locked)) == [
        f"run directory {locked}/run cannot be created: {locked} is not writable: {run_fix}",
        f"export.out {locked} is not writable: set export.out (or `synthvlm export --out`) to a folder you "
        "can write to",
    ]
    assert problems("nosuch://bucket/run") == [
        f"run directory nosuch://bucket/run: no fsspec filesystem handles nosuch://: {run_fix}"
    ]
    assert problems("memory://synthvlm-tests/preflight", str(tmp_path / "new" / "export")) == []
    assert not (tmp_path / "new").exists()


def test_recipe_note_says_which_paper_model_steps_run(tmp_path):
    def notes(curate: dict[str, Any]) -> tuple[str, ...]:
        return _check(_config({"curate": curate}), ["curate"], tmp_path).notes

    lm = {"model": "builtin:tiny-lm", "max_perplexity": 100}
    assert notes({"perplexity": lm}) == (
        "curate.recipe synthvlm runs the paper's rule filters; of the paper's model steps, configured: "
        "perplexity; skipped: alignment, judge (set curate.alignment, curate.judge to run them)",
    )
    every = {
        "perplexity": lm,
        "alignment": {"clip_model": "builtin:tiny-clip", "itm_model": "builtin:tiny-blip-itm"},
        "judge": {"backend": "transformers", "model": "builtin:tiny-lm"},
    }
    assert notes(every) == (
        "curate.recipe synthvlm runs the paper's rule filters; of the paper's model steps, configured: "
        "perplexity, alignment, judge; skipped: none",
    )
    assert notes({"recipe": "none"}) == ()


def test_run_refuses_every_problem_before_writing(tmp_path, hub, captions):
    run = tmp_path / "run"
    config = _config({"ingest": {"inputs": [str(captions)]}, "generate": {"preset": "sdxl-base"}})
    sdxl, clip = "stabilityai/stable-diffusion-xl-base-1.0", "openai/clip-vit-base-patch32"
    with pytest.raises(UserError) as info:
        pipeline.run(run, config, progress=False)
    assert str(info.value) == "\n".join(
        [
            "2 problem(s) before any work:",
            "  - "
            + _miss(
                "generate.model",
                sdxl,
                hub,
                f"`hf download {sdxl}`, or `generate.model: builtin:tiny-sdxl` for an offline try",
            ),
            "  - "
            + _miss(
                "score.clip_model",
                clip,
                hub,
                f"`hf download {clip}`, or `score.clip_model: builtin:tiny-clip` for an offline try",
            ),
        ]
    )
    assert not run.exists()
    with pytest.raises(UserError) as info:
        pipeline.run(run, config.updated("ingest", inputs=[str(tmp_path / "nope.jsonl")]), stages=["ingest"])
    assert str(info.value) == (  # one problem: one line, like every other user error
        f"1 problem(s) before any work: ingest.inputs: {tmp_path}/nope.jsonl: no such file: {RECIPE_FIX}"
    )
    assert not run.exists()


def test_finished_stages_are_not_checked_again(tmp_path, captions, monkeypatch):
    run = tmp_path / "run"
    config = _config({"ingest": {"inputs": [str(captions)]}, "curate": {"near_dup": {}}})
    pipeline.run(run, config, stages=["ingest", "curate"], progress=False)
    monkeypatch.setitem(sys.modules, "datasketch", None)  # finished work needs nothing it used
    funnels = pipeline.run(run, config, stages=["ingest", "curate"], progress=False)
    assert (funnels["curate"]["in"], funnels["curate"]["kept"]) == (2, 2)
    with pytest.raises(UserError) as info:
        pipeline.run(run, config, stages=["curate"], recompute_from="curate", progress=False)
    assert str(info.value) == (
        "1 problem(s) before any work: datasketch is not installed (needed for curate.near_dup): "
        "`pip install 'synthvlm[curate]'`"
    )
    assert layout.StageDir(run, "curate").complete.exists()  # refused before --from deleted anything
