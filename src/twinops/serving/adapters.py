"""Many LoRA adapters on one base model, mixed request by request inside one continuous batch.

The LLM server loads the base once and each twin's adapter beside it, unmerged (PEFT's
``load_adapter``): memory is one base plus the adapters. PEFT mixes adapters in one batch through
``adapter_names``, one name per batch row (``LoraLayer._mixed_batch_forward``), by running each
LoRA layer once per adapter present on its rows: on a CPU and a small base, those small gathers,
products and scatters on every linear layer cost 40% of the tokens/s of the base alone with 4
twins in the batch. Here PEFT keeps the adapters (loading, checking, memory) and runs the base
layer; the adapters' part of a routed step is two matrix products per layer whatever the number
of adapters (``_Stack``, the segmented form of Punica's and S-LoRA's multi-LoRA kernels): every
adapter's down-projection of every token at once, a mask keeping each token's own adapter's
columns, and the stacked up-projections (scaling folded in). The result is PEFT's own arithmetic,
summed in another order (``tests/serving/test_twin_adapters.py`` checks the answers equal those
of each adapter alone). transformers' continuous batching packs every request of a step into a
single row of tokens: each LoRA layer's input ``[1, tokens, features]`` is viewed as
``[tokens, features]`` with one adapter per token, and its output viewed back. LoRA acts on each
position alone, so this is the arithmetic of a padded batch without the padding. Which request
(and so which adapter) each token belongs to is set per decoding step by ``routing``; a forward
outside ``routing`` runs the base alone.

An adapter is checked before anything is loaded: its folder and weights exist, it is a plain
LoRA (no DoRA, no extra trained modules, which mixed batches cannot carry), it was trained on this
server's base, and every weight fits the base layer it names at the rank its config says. A bad
adapter is refused with one ``AdapterRefused`` line and the adapters already loaded keep serving.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twinops.errors import ConfigError
from twinops.infra.memory import return_freed_memory

# PEFT's name for "no adapter" in a mixed batch: the base model's own answer.
BASE_ADAPTER = "__base__"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT's prefix on every key of a saved LoRA model's weights, before the base model's module path.
_SAVED_PREFIX = "base_model.model."


class AdapterRefused(ConfigError):
    """An adapter that cannot serve on this base; nothing of it was loaded."""


def adapter_config(adapter_dir: Path, label: str) -> dict[str, Any]:
    """The folder's ``adapter_config.json``, refused in one line when it or the weights are missing."""
    if not adapter_dir.is_dir():
        raise AdapterRefused(f"{label}: adapter folder {adapter_dir} does not exist: copy the adapter there")
    for needed in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (adapter_dir / needed).is_file():
            raise AdapterRefused(
                f"{label}: {adapter_dir} has no {needed}: register the adapter/ folder a LoRA run saved"
            )
    try:
        return json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    except ValueError as error:
        raise AdapterRefused(f"{label}: {adapter_dir / ADAPTER_CONFIG} is not JSON ({error})") from error


def same_base(recorded: str, base_dir: str) -> bool:
    """Whether the base an adapter records is this server's base folder.

    The same folder, or a folder of the same name (a cluster serves the base from /mnt/models or a
    volume, not from the path training saw); the weights' shapes are checked apart from this.
    """
    if not recorded:
        return False
    served = Path(base_dir).expanduser().resolve()
    named = Path(recorded.removeprefix("bundled:")).expanduser()
    return named.resolve() == served or named.name == served.name


class _Stack:
    """One LoRA layer's adapters side by side: ``down_t`` [in, sum of ranks] (every adapter's A,
    transposed), ``up_t`` [sum of ranks, out] (every B, transposed), which adapter owns each rank
    column and its scaling.

    Stored transposed and contiguous: a step multiplies ``x @ down_t`` and ``h @ up_t``, and read
    from memory (a step streams the whole model through the caches) the two products take 12% less
    time in that layout than through transposed views of A and B (measured on the 135M base).

    Built when a step first needs it after the adapters changed. The adapters' own weights then
    become views into it, so the layer holds each adapter once (the copy PEFT loaded, and the
    previous stack, are freed once nothing points at them)."""

    def __init__(self, layer: Any, names: tuple[str, ...]) -> None:
        import torch

        with torch.no_grad():
            self.names = names
            downs = [layer.lora_A[name].weight for name in names]
            self.down_t = torch.cat(downs).T.contiguous()
            self.up_t = torch.cat([layer.lora_B[name].weight for name in names], dim=1).T.contiguous()
            ranks = [down.shape[0] for down in downs]
            self.owner = torch.cat([torch.full((rank,), position) for position, rank in enumerate(ranks)])
            self.scale = torch.cat(
                [
                    torch.full((rank,), float(layer.scaling[name]))
                    for name, rank in zip(names, ranks, strict=True)
                ]
            ).to(self.down_t.dtype)
            start = 0
            for name, rank in zip(names, ranks, strict=True):
                layer.lora_A[name].weight.data = self.down_t[:, start : start + rank].T
                layer.lora_B[name].weight.data = self.up_t[start : start + rank].T
                start += rank


class MixedAdapterModel:
    """A base causal LM with named LoRA adapters loaded beside it, mixed per token in each forward.

    ``load`` and ``unload`` change the adapters; ``routing`` runs one forward step with an adapter
    name per token. Both hold one lock, so an adapter never changes under a running step.
    """

    def __init__(self, model: Any, base_dir: str):
        self.model = model  # PEFT injects the LoRA layers into it in place
        self.base_dir = base_dir
        self.peft_model: Any = None
        self.lock = threading.RLock()
        self._route = threading.local()
        self._hooked: set[int] = set()
        self.adapters: dict[str, str] = {}  # adapter name -> folder
        self._stacks: dict[int, _Stack] = {}  # id(LoRA layer) -> its adapters stacked (see _Stack)

    # --- checks -------------------------------------------------------------------------------
    def check(self, adapter_dir: Path, *, label: str, base_model: str = "") -> dict[str, Any]:
        """Refuse, in one line, an adapter this base cannot serve; its config when it can."""
        config = adapter_config(adapter_dir, label)
        kind = str(config.get("peft_type", "")).upper()
        if kind != "LORA":
            raise AdapterRefused(f"{label}: {adapter_dir} is a {kind or 'unknown'} adapter, not LoRA")
        if config.get("use_dora") or config.get("modules_to_save") or config.get("trainable_token_indices"):
            raise AdapterRefused(
                f"{label}: {adapter_dir} uses DoRA or trains whole modules, which mixed-adapter batches "
                "cannot serve: train a plain LoRA adapter"
            )
        # The registry's word (``base_model``) and the adapter's own record must both name this base.
        records = [r for r in (base_model, str(config.get("base_model_name_or_path") or "")) if r]
        for recorded in records or [""]:
            if not same_base(recorded, self.base_dir):
                raise AdapterRefused(
                    f"{label}: adapter {adapter_dir} was trained on {recorded or 'an unnamed base'}, but "
                    f"this server's base is {self.base_dir}: train the adapter on the shared base"
                )
        self._check_shapes(adapter_dir, config, label)
        return config

    def _check_shapes(self, adapter_dir: Path, config: dict[str, Any], label: str) -> None:
        from safetensors import safe_open

        rank = int(config.get("r", 0))
        patterned = bool(config.get("rank_pattern"))
        shapes: dict[str, dict[str, tuple[int, ...]]] = {}
        try:
            with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                    module, _, part = key.removeprefix(_SAVED_PREFIX).rpartition(".lora_")
                    if part in ("A.weight", "B.weight"):
                        shapes.setdefault(module, {})[part[0]] = tuple(weights.get_slice(key).get_shape())
        except Exception as error:  # a truncated or foreign file: safetensors' own error says which
            weights_file = adapter_dir / ADAPTER_WEIGHTS
            raise AdapterRefused(f"{label}: {weights_file} cannot be read ({error})") from error
        if not shapes:
            raise AdapterRefused(f"{label}: {adapter_dir / ADAPTER_WEIGHTS} holds no LoRA weights")
        for module_name, pair in sorted(shapes.items()):
            layer = self._base_linear(module_name)
            if layer is None:
                raise AdapterRefused(
                    f"{label}: adapter layer {module_name} is not a linear layer of the base "
                    f"{self.base_dir}: train the adapter on the shared base"
                )
            a_shape, b_shape = pair.get("A"), pair.get("B")
            in_features, out_features = layer.weight.shape[1], layer.weight.shape[0]
            expected_rank = (a_shape or (0,))[0] if patterned else rank
            if a_shape != (expected_rank, in_features) or b_shape != (out_features, expected_rank):
                raise AdapterRefused(
                    f"{label}: {module_name} needs LoRA A {[expected_rank, in_features]} and B "
                    f"{[out_features, expected_rank]} (rank {expected_rank} on this base), the file has "
                    f"A {list(a_shape or [])} and B {list(b_shape or [])}: the adapter's rank or base is "
                    "wrong"
                )

    def _base_linear(self, module_name: str) -> Any:
        import torch

        try:
            module = self.model.get_submodule(module_name)
        except AttributeError:
            return None
        module = getattr(module, "base_layer", module)  # already wrapped by an earlier adapter
        return module if isinstance(module, torch.nn.Linear) else None

    # --- loading ------------------------------------------------------------------------------
    def load(self, name: str, adapter_dir: Path, *, label: str, base_model: str = "") -> None:
        """Check and load ``adapter_dir`` as adapter ``name``; on any failure nothing of it stays."""
        from peft import PeftModel

        self.check(adapter_dir, label=label, base_model=base_model)
        with self.lock:
            if name in self.adapters:
                raise ValueError(f"adapter {name!r} is loaded already")
            try:
                if self.peft_model is None:
                    self.peft_model = PeftModel.from_pretrained(
                        self.model, str(adapter_dir), adapter_name=name, is_trainable=False
                    )
                else:
                    self.peft_model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
            except Exception as error:  # what the checks could not see: nothing half loaded stays
                self._drop(name)
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
                raise AdapterRefused(f"{label}: PEFT could not load {adapter_dir} ({first})") from error
            self.adapters[name] = str(adapter_dir)
            self._stacks.clear()
            self._hook_new_layers()
            self.model.eval()

    def unload(self, name: str) -> None:
        """Free adapter ``name`` (no running request may still use it)."""
        with self.lock:
            if self.adapters.pop(name, None) is not None:
                self._stacks.clear()
                self._drop(name)

    def _drop(self, name: str) -> None:
        if self.peft_model is None:
            return
        from peft.tuners.lora import LoraLayer

        if any(name in layer.lora_A for layer in self.model.modules() if isinstance(layer, LoraLayer)):
            with contextlib.suppress(ValueError):
                self.peft_model.delete_adapter(name)

    def adapter_bytes(self, name: str) -> int:
        """Memory the adapter's weights take."""
        from peft.tuners.lora import LoraLayer

        total = 0
        for layer in self.model.modules():
            if isinstance(layer, LoraLayer) and name in layer.lora_A:
                for part in (layer.lora_A[name], layer.lora_B[name]):
                    total += sum(p.numel() * p.element_size() for p in part.parameters())
        return total

    # --- mixed forward ------------------------------------------------------------------------
    @contextlib.contextmanager
    def routing(self, names_per_token: list[str]) -> Iterator[None]:
        """Forward passes inside run token ``i`` through adapter ``names_per_token[i]``."""
        with self.lock:
            self._route.names = names_per_token
            self._route.adapted = any(name != BASE_ADAPTER for name in names_per_token)
            self._route.masks = {}  # per adapter layout: which rank columns each token keeps
            self._route.stacked = False
            try:
                yield
            finally:
                self._route.names = None
                self._route.adapted = False
                self._route.masks = {}
                if self._route.stacked:
                    # The copies PEFT loaded were freed for the stacks; glibc keeps freed small blocks,
                    # so without this the adapters' weights would count twice in the server's resident
                    # memory (measured: 122 MB instead of 62 for 3 twins).
                    return_freed_memory()

    def _hook_new_layers(self) -> None:
        """PEFT's own forward runs the base layer alone on every LoRA layer (adapters disabled, so a
        forward outside ``routing`` is the base, never whichever adapter PEFT has active); the hook
        adds a routed step's adapters. Again after each load: loading may enable them."""
        from peft.tuners.lora import LoraLayer

        for layer in self.model.modules():
            if not isinstance(layer, LoraLayer):
                continue
            layer.enable_adapters(False)
            if id(layer) not in self._hooked:
                layer.register_forward_hook(self._after_lora)
                self._hooked.add(id(layer))

    def _after_lora(self, layer: Any, args: tuple, output: Any) -> Any:
        if not getattr(self._route, "adapted", False):  # outside routing, or every token on the base
            return output
        x = args[0]
        # The packed row [1, tokens, features] as one position per token (LoRA acts on each alone):
        # each token's adapter's down-projection (masked: its own columns, times its scaling), then
        # the up-projections added into the base's output in the same product.
        flat_x = x.reshape(-1, x.shape[-1])
        stack, mask = self._stack_and_mask(layer, len(flat_x))
        output.view(-1, output.shape[-1]).addmm_((flat_x @ stack.down_t).mul_(mask), stack.up_t)
        return output

    def _stack_and_mask(self, layer: Any, tokens: int) -> tuple[_Stack, Any]:
        """The layer's adapters stacked (``_Stack``) and, for this step, which of their rank columns
        each token keeps (its adapter's, times its scaling; none for the base and padding)."""
        stack = self._stacks.get(id(layer))
        if stack is None:
            loaded = tuple(name for name in layer.lora_A if name in self.adapters)
            stack = self._stacks[id(layer)] = _Stack(layer, loaded)
            self._route.stacked = True
        mask = self._route.masks.get(stack.names)
        if mask is None:
            import torch

            names = self._route.names
            position = {name: index for index, name in enumerate(stack.names)}
            # Padded positions (static shapes) and base requests (-1) keep no column: the base alone.
            owners = torch.tensor([position.get(name, -1) for name in names] + [-1] * (tokens - len(names)))
            kept = (owners[:, None] == stack.owner[None, :]).to(stack.down_t.dtype)
            mask = self._route.masks[stack.names] = kept * stack.scale[None, :]
        return stack, mask
