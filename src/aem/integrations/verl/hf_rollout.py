"""A Hugging Face rollout backend for verl 0.9.1: ``actor_rollout_ref.rollout.name=hf``.

verl samples through an inference server (vLLM, SGLang or TensorRT-LLM), all GPU-only. This
backend stands in for vLLM on a CPU with the same three pieces verl expects of a backend, each
registered in verl's own registries on import:

- :class:`HFRolloutServer`, a Ray actor holding a ``transformers`` causal LM: token in, token out
  (``generate(prompt_ids, sampling_params, request_id) -> TokenOutput``, what verl's
  ``LLMServerClient`` calls), sampling with temperature / top-k / top-p and a KV cache, one
  request at a time, seeded by ``rollout.seed``;
- :class:`HFReplica` (``RolloutReplicaRegistry``): launches one server per replica;
- :class:`HFServerAdapter` (``_ROLLOUT_REGISTRY[("hf", "async")]``): lives in the actor
  worker and pushes the trained weights to the server after every update (verl's ``naive``
  colocated weight sync), the step where vLLM would receive them over CUDA IPC.

It serves small models for tests and CPU experiments; no batching across requests, no
prefix cache, no LoRA adapters.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import ray
import torch
from omegaconf import DictConfig
from torch import Tensor
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput

from aem.integrations.verl.cpu_settings import ROLLOUT_NAME

__all__ = ["ROLLOUT_NAME", "HFReplica", "HFRolloutServer", "HFServerAdapter", "server_name"]


def server_name(replica_rank: int, suffix: str = "") -> str:
    """The Ray actor name of a replica's server (the adapter finds it by name)."""
    return f"aem_hf_rollout_server_{replica_rank}{suffix}"


def _model_config(model_config: Any) -> HFModelConfig:
    if isinstance(model_config, HFModelConfig):
        return model_config
    return omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)


def _rollout_config(config: Any) -> RolloutConfig:
    return config if isinstance(config, RolloutConfig) else omega_conf_to_dataclass(config)


def _eos_token_ids(model_config: HFModelConfig) -> set[int]:
    ids: set[int] = set()
    for source in (model_config.generation_config, model_config.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, list | tuple) else [value])
    return ids


def _filtered_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Temperature, top-k (<= 0: off) and top-p (>= 1: off) applied to one row of logits."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= top_p  # keeps the first token
        logits = logits.masked_fill(torch.empty_like(drop).scatter_(0, order, drop), float("-inf"))
    return logits


class HFRolloutServer:
    """One replica's sampler (run as a Ray actor). The methods verl's replica and client call on
    a server are all here; those that manage GPU memory are no-ops."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int) -> None:
        from transformers import AutoModelForCausalLM

        self.config = _rollout_config(config)
        self.model_config = _model_config(model_config)
        self.replica_rank = replica_rank
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_config.local_path, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.eos_token_ids = _eos_token_ids(self.model_config)
        self.generator = torch.Generator().manual_seed(int(self.config.seed) + replica_rank)
        self.processed_log_probs = str(self.config.logprobs_mode).startswith("processed")
        self.global_steps: int | None = None
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- token in, token out

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data or audio_data:
            raise ValueError("the hf rollout backend serves text only (got multimodal inputs)")
        params = dict(sampling_params)
        budget = self.config.prompt_length + self.config.response_length - len(prompt_ids)
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(self.config.response_length, budget)
        max_tokens = max(1, int(max_tokens))
        async with self._lock:
            token_ids, log_probs = await asyncio.to_thread(
                self._sample, list(prompt_ids), params, max_tokens
            )
        finished = bool(token_ids) and token_ids[-1] in self.eos_token_ids
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs if params.get("logprobs") else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={
                "global_steps": self.global_steps,
                "finish_reason": "stop" if finished else "length",
            },
        )

    @torch.no_grad()
    def _sample(
        self, prompt_ids: list[int], params: dict[str, Any], max_tokens: int
    ) -> tuple[list[int], list[float]]:
        """Sample up to ``max_tokens`` tokens; also the log-prob of each, under the sampling
        distribution (after temperature, top-k, top-p) for ``rollout.logprobs_mode`` =
        ``processed_logprobs`` (verl's default), under the model's own otherwise."""
        temperature = float(params.get("temperature", 1.0))
        top_k = int(params.get("top_k", -1) or -1)
        top_p = float(params.get("top_p", 1.0))
        ignore_eos = bool(params.get("ignore_eos", False))
        inputs = torch.tensor([prompt_ids], dtype=torch.long)
        cache = None
        token_ids: list[int] = []
        log_probs: list[float] = []
        for _ in range(max_tokens):
            output = self.model(input_ids=inputs, past_key_values=cache, use_cache=True)
            cache = output.past_key_values
            logits = output.logits[0, -1].float()
            if temperature <= 0.0:
                token = int(torch.argmax(logits))
                sampled = logits
            else:
                sampled = _filtered_logits(logits, temperature, top_k, top_p)
                probabilities = torch.softmax(sampled, dim=-1)
                token = int(torch.multinomial(probabilities, 1, generator=self.generator))
            token_ids.append(token)
            scored = sampled if self.processed_log_probs else logits
            log_probs.append(float(torch.log_softmax(scored, dim=-1)[token]))
            if token in self.eos_token_ids and not ignore_eos:
                break
            inputs = torch.tensor([[token]], dtype=torch.long)
        return token_ids, log_probs

    # ---------------------------------------------------------------- weights from the actor

    async def update_weights(self, state: dict[str, Tensor], global_steps: int | None) -> None:
        async with self._lock:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            tied = {"lm_head.weight"} if self.model.config.tie_word_embeddings else set()
            if unexpected or set(missing) - tied:
                raise ValueError(
                    f"weights pushed to the hf rollout do not match its model: missing "
                    f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}"
                )
            self.global_steps = global_steps

    async def get_global_steps(self) -> int | None:
        return self.global_steps

    # ---------------------------------------------------------------- memory control: no-ops

    async def wake_up(self) -> None: ...

    async def sleep(self) -> None: ...

    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        return {}

    async def resume_generation(self) -> None: ...

    async def clear_kv_cache(self) -> None: ...

    async def release_kv_cache(self) -> None: ...

    async def resume_kv_cache(self) -> None: ...

    async def start_profile(self, **kwargs: Any) -> None: ...

    async def stop_profile(self) -> None: ...


class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica, on the node of its first worker."""

    async def launch_servers(self) -> None:
        name = server_name(self.replica_rank, self.name_suffix)
        self._server_handle = (
            ray.remote(HFRolloutServer)
            .options(name=name, num_cpus=1, max_concurrency=self.max_concurrency)
            .remote(self.config, self.model_config, self.replica_rank)
        )
        self.servers = [self._server_handle]
        self._server_address = name
        await self._server_handle.get_global_steps.remote()  # wait until the model is loaded

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFServerAdapter(BaseRollout):
    """The rollout end of verl's weight sync, in the actor worker: collects the actor's weights
    (full tensors, Hugging Face names) and pushes them to its replica's server."""

    def __init__(
        self,
        config: RolloutConfig | DictConfig,
        model_config: HFModelConfig | DictConfig,
        device_mesh: Any,
        replica_rank: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader_rank = rank % world == 0
        self.sleep_level = 1

    async def resume(self, tags: list[str]) -> None: ...

    async def release(self) -> None: ...

    async def update_weights(
        self,
        weights: Iterable[tuple[str, Tensor]],
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        global_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors" or peft_config is not None:
            raise ValueError(
                f"the hf rollout takes full named tensors only, got wire_format={wire_format!r} "
                f"and peft_config={peft_config!r}"
            )
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu", copy=True)
        if self.is_leader_rank:
            server = ray.get_actor(server_name(self.replica_rank))
            await server.update_weights.remote(state, global_steps)


def register() -> None:
    """Register the backend in verl's rollout registries (idempotent)."""
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = (
        f"{HFServerAdapter.__module__}.{HFServerAdapter.__qualname__}"
    )
    RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)


register()
