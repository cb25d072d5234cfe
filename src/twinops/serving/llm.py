"""The twin LLM as a kserve model: V1 ``:predict``, V2 infer (REST and gRPC) and OpenAI chat/completions.

``python -m twinops.serving.llm --model_name twin-llm [--model_dir DIR | --model_uri URI]`` serves
``twin-llm@champion`` by default (the base model when the registry has none). GPTQ folders run on
GPTQ kernels; when the kernels cannot load one, the server does not start and says why in one line
(it never serves the float copy in the GPTQ model's name). Concurrent requests are batched
continuously (``engine``): a request joins the running batch at the next decoding step.

``--twins all`` (or ``--twins ada,twin-llm-bo``) serves many twins from one base: the base
(``--model_dir``/``--model_uri``, default ``TWINOPS_BASE_MODEL``) is loaded once, answering as
``--base_name``, and each twin's champion LoRA adapter beside it, answering as the twin's registered
name (``twin-llm-<author>``; ``/openai/v1/models`` lists them). Requests for different twins share the
same decoding steps (``serving.adapters``), and each twin follows its champion in the registry every
``--poll_seconds``: a new champion serves new requests without a restart (``serving.twins``).

V2 tensors: input ``text_input`` (BYTES, [-1], one prompt per element, the chat template applied
as a single user turn), output ``text_output`` (BYTES, [-1]). Request parameters ``max_tokens``
and ``temperature`` apply to every prompt of the request. V1: ``{"instances": ["prompt", ...]}``
or ``[{"prompt": ..., "max_tokens": ...}]`` → ``{"predictions": ["answer", ...]}``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kserve import InferRequest, Model

from twinops.errors import ConfigError
from twinops.serving.adapters import MixedAdapterModel
from twinops.serving.engine import GenerationEngine
from twinops.serving.protocol import v2
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.models import ChatModel
from twinops.serving.protocol.openai.types import ChatCompletionRequest
from twinops.serving.protocol.types import SamplingParams, TextDelta

log = logging.getLogger("twinops.serving")

LLM_REGISTRY_NAME = "twin-llm"
TEXT_INPUT = v2.TensorSpec(name="text_input", datatype="BYTES", shape=[-1])
TEXT_OUTPUT = v2.TensorSpec(name="text_output", datatype="BYTES", shape=[-1])


class TwinLLM(Model, ChatModel):
    """A causal LM behind the continuous batcher."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        *,
        label: str | None = None,
        max_batch_size: int = 8,
        batch_window_ms: float = 10.0,
        kv_cache_tokens: int = 4096,
        max_tokens_limit: int = 512,
        default_max_tokens: int = 128,
        mixed_adapters: bool = False,
    ):
        super().__init__(name)
        self.model_dir = model_dir
        self.label = label or model_dir
        self.max_batch_size = max_batch_size
        self.batch_window_ms = batch_window_ms
        self.kv_cache_tokens = kv_cache_tokens
        self.max_tokens_limit = max_tokens_limit
        # A request that names no max_tokens must not be refused for a limit it never asked past.
        self.default_max_tokens = min(default_max_tokens, max_tokens_limit)
        self.engine: GenerationEngine | None = None
        self.backend = ""
        self.context_length = 0
        # With mixed_adapters, the base of many twins: their LoRA adapters load into ``mixed``.
        self.mixed_adapters = mixed_adapters
        self.mixed: MixedAdapterModel | None = None

    def load(self) -> bool:
        from twinops.models.loaders import load_generation_model

        loaded = load_generation_model(self.model_dir)
        loaded.model.eval()
        self.backend = loaded.backend
        config = loaded.model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", 0) or loaded.tokenizer.model_max_length
        )
        if self.mixed_adapters:
            if loaded.backend != "float":
                raise ConfigError(
                    f"{self.model_dir} is a {loaded.backend} model: LoRA adapters of many twins apply to a "
                    "float base; pass the float base model with --model_dir",
                    setting="--model_dir",
                )
            self.mixed = MixedAdapterModel(loaded.model, self.model_dir)
        self.engine = GenerationEngine(
            loaded.model,
            loaded.tokenizer,
            model_name=self.name,
            max_batch_size=self.max_batch_size,
            batch_window_ms=self.batch_window_ms,
            kv_cache_tokens=self.kv_cache_tokens,
            adapters=self.mixed,
        )
        self.ready = True
        return self.ready

    def adapter(self) -> str | None:
        """The adapter this model's next request runs on (None: the model itself)."""
        return None

    def stop_engine(self) -> None:
        # kserve calls this when the server stops: the scheduler's loop is a thread that would hold the exit.
        if self.engine is not None:
            self.engine.shutdown()
        super().stop_engine()

    @property
    def tokenizer(self):
        assert self.engine is not None
        return self.engine.tokenizer

    # --- prompts ------------------------------------------------------------------------------
    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` through the tokenizer's own chat template."""
        tokenizer = self.tokenizer
        if tokenizer.chat_template:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            return list(ids)
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return self.prompt_ids(text)

    def prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def check(self, prompt_ids: list[int], params: SamplingParams, *, param: str = "messages") -> None:
        """Bad lengths are the client's to fix: one line naming the limit."""
        if not prompt_ids:
            raise BadRequest("the prompt is empty: send some text", param=param)
        if params.max_tokens > self.max_tokens_limit:
            raise BadRequest(
                f"max_tokens {params.max_tokens} is over this server's limit of {self.max_tokens_limit}",
                param="max_tokens",
            )
        if len(prompt_ids) + params.max_tokens > self.context_length:
            raise BadRequest(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: together "
                f"they exceed the model's context of {self.context_length} tokens; shorten the prompt",
                param=param,
            )
        if len(prompt_ids) + params.max_tokens > self.kv_cache_tokens:
            raise BadRequest(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: together "
                f"they exceed this server's KV cache of {self.kv_cache_tokens} tokens (--kv_cache_tokens); "
                "shorten the prompt or lower max_tokens",
                param=param,
            )

    async def _stream(
        self, prompt_ids: list[int], params: SamplingParams, *, param: str = "messages"
    ) -> AsyncIterator[TextDelta]:
        self.check(prompt_ids, params, param=param)
        assert self.engine is not None
        async for delta in self.engine.stream(prompt_ids, params, adapter=self.adapter()):
            yield delta

    # --- OpenAI -------------------------------------------------------------------------------
    def chat(self, request: ChatCompletionRequest, params: SamplingParams) -> AsyncIterator[TextDelta]:
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        return self._stream(self.chat_ids(messages), params)

    def complete(self, prompt: str, params: SamplingParams) -> AsyncIterator[TextDelta]:
        return self._stream(self.prompt_ids(prompt), params, param="prompt")

    # --- V1 / V2 ------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict]:
        return [TEXT_INPUT.metadata()]

    def get_output_types(self) -> list[dict]:
        return [TEXT_OUTPUT.metadata()]

    async def _answer_all(self, prompts: list[tuple[str, SamplingParams]]) -> list[str]:
        """Each prompt as a single user turn; all of them at once, so they share batches."""

        async def one(prompt: str, params: SamplingParams) -> str:
            ids = self.chat_ids([{"role": "user", "content": prompt}])
            self.check(ids, params)
            assert self.engine is not None
            return (await self.engine.generate(ids, params, adapter=self.adapter())).text

        return list(await asyncio.gather(*(one(p, s) for p, s in prompts)))

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            v2.check_inputs(payload, [TEXT_INPUT])
            params = v2.sampling_params(v2.request_parameters(payload), self.default_max_tokens)
            prompts = v2.texts(payload, TEXT_INPUT) or []
            answers = await self._answer_all([(p, params) for p in prompts])
            return v2.response(payload, self.name, [v2.bytes_output(TEXT_OUTPUT.name, answers)])
        prompts = []
        for instance in v2.v1_instances(payload):
            if isinstance(instance, str):
                prompts.append((instance, v2.sampling_params({}, self.default_max_tokens)))
            elif isinstance(instance, dict) and isinstance(instance.get("prompt"), str):
                prompts.append((instance["prompt"], v2.sampling_params(instance, self.default_max_tokens)))
            else:
                raise BadRequest('each instance is a prompt string or {"prompt": "...", "max_tokens": N}')
        return {"predictions": await self._answer_all(prompts)}


class TwinOnBase(TwinLLM):
    """One twin of a many-twin server: the base's engine, the twin's champion adapter."""

    def __init__(self, name: str, base: TwinLLM, twins: Any):
        super().__init__(
            name,
            base.model_dir,
            label=name,
            max_batch_size=base.max_batch_size,
            batch_window_ms=base.batch_window_ms,
            kv_cache_tokens=base.kv_cache_tokens,
            max_tokens_limit=base.max_tokens_limit,
            default_max_tokens=base.default_max_tokens,
        )
        self.base = base
        self.twins = twins  # a serving.twins.TwinAdapters

    def load(self) -> bool:
        self.engine, self.backend, self.context_length = self.base.engine, "lora", self.base.context_length
        self.ready = True
        return self.ready

    def adapter(self) -> str | None:
        return self.twins.adapter_for(self.name)  # read once per request: a switch applies to the next

    def stop_engine(self) -> None:
        self.twins.stop()  # the base stops the shared engine
        Model.stop_engine(self)


def build_llm(args, settings) -> TwinLLM:
    from twinops.models.resolve import resolve_model
    from twinops.serving.sources import resolve_source

    source = resolve_source(
        args,
        settings,
        registry_name=LLM_REGISTRY_NAME,
        fallback=settings.base_model,
        fallback_setting="TWINOPS_BASE_MODEL",
    )
    assert source is not None  # the base model is always a fallback
    model_dir = resolve_model(source.model_dir, settings, setting="--model_dir")
    return TwinLLM(
        args.model_name,
        model_dir,
        label=source.label,
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        kv_cache_tokens=args.kv_cache_tokens,
        max_tokens_limit=args.max_tokens_limit,
    )


def build_twins(args, settings) -> list[TwinLLM]:
    """The base (``--model_dir``/``--model_uri`` or ``TWINOPS_BASE_MODEL``) loaded once as
    ``--base_name``, and a model per twin of ``--twins`` on its champion adapter; loaded and
    following the registry. A twin that cannot serve stops the start with one line."""
    from twinops.models.resolve import resolve_model
    from twinops.serving.server import load_model
    from twinops.serving.sources import resolve_source
    from twinops.serving.twins import TwinAdapters, twin_names, twin_pins

    names = twin_names(args.twins, settings)
    if args.base_name in names:
        raise ConfigError(
            f"--base_name {args.base_name!r} is also a twin's name: pick another name for the base",
            setting="--base_name",
        )
    fallback = {"fallback": settings.base_model, "fallback_setting": "TWINOPS_BASE_MODEL"}
    source = resolve_source(args, settings, registry_name=None, **fallback)
    assert source is not None  # the base model is always a fallback
    base = TwinLLM(
        args.base_name,
        resolve_model(source.model_dir, settings, setting="--model_dir"),
        label=f"{source.label} (the base of {', '.join(names)})",
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        kv_cache_tokens=args.kv_cache_tokens,
        max_tokens_limit=args.max_tokens_limit,
        mixed_adapters=True,
    )
    load_model(base, what="causal LM")
    assert base.mixed is not None and base.engine is not None
    twins = TwinAdapters(
        base.mixed,
        settings,
        names,
        in_use=base.engine.adapter_in_use,
        poll_seconds=args.poll_seconds,
        pinned=twin_pins(args.twins),
    )
    twins.load_champions()
    models: list[TwinLLM] = [base]
    for name in names:
        twin = TwinOnBase(name, base, twins)
        twin.load()
        models.append(twin)
    twins.follow()
    return models


def add_engine_flags(parser) -> None:
    parser.add_argument(
        "--max_batch_size", type=int, default=8, help="Most requests decoding together (continuous batching)."
    )
    parser.add_argument(
        "--batch_window_ms",
        type=float,
        default=10.0,
        help="How long an idle server waits for company before the first step; a busy one admits at once.",
    )
    parser.add_argument(
        "--kv_cache_tokens",
        type=int,
        default=4096,
        help="Paged KV cache in tokens, shared by the requests of one sampling mode (greedy or sampled; "
        "each mode's cache is allocated at its first request).",
    )
    parser.add_argument("--max_tokens_limit", type=int, default=512, help="Largest max_tokens accepted.")


def add_twin_flags(parser) -> None:
    from twinops.serving.twins import BASE_NAME, DEFAULT_POLL_SECONDS

    parser.add_argument(
        "--twins",
        default=None,
        help="Serve many twins on one base: `all` (every LLM twin with a champion) or a comma list of twin "
        "names or authors, each serving its champion (followed live), or of pinned versions "
        "(models:/twin-llm-<author>/VERSION: that version, not followed; what a cluster's spec lists); "
        "each answers by its registered name (twin-llm-<author>).",
    )
    parser.add_argument(
        "--base_name", default=BASE_NAME, help="With --twins: the name the base (no adapter) answers as."
    )
    parser.add_argument(
        "--poll_seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="With --twins: how often each twin's champion is read from the registry (0: never).",
    )


def main(argv: Sequence[str] | None = None) -> None:
    from twinops.serving.server import add_model_source, build_parser, load_model, parse_args, serve
    from twinops.settings import get_settings

    parser = build_parser(
        "python -m twinops.serving.llm",
        "Serve the twin LLM over KServe V1/V2 (REST, gRPC) and the OpenAI API.",
        model_name=LLM_REGISTRY_NAME,
    )
    add_model_source(parser, what="causal LM (HF folder, GPTQ included)", registry_name=LLM_REGISTRY_NAME)
    add_engine_flags(parser)
    add_twin_flags(parser)
    args = parse_args(parser, argv)
    if args.twins is not None:
        models = build_twins(args, get_settings())
        for model in models:
            log.info("serving %s as %s", model.label, model.name)
        serve(models, args)
        return
    model = build_llm(args, get_settings())
    load_model(model, what="causal LM")
    log.info("serving %s as %s (%s)", model.label, model.name, model.backend)
    serve([model], args)


if __name__ == "__main__":
    from twinops.serving.server import run_main

    sys.exit(run_main(main))
